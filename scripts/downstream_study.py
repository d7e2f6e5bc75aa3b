"""Every downstream task on the synthetic corpus: pre-trained vs scratch vs a no-learning baseline, over seeds.

For each seed: pre-train `hero-small` (MLM + MNCE + FOM + VSM, the quickstart's pre-training),
then fine-tune moment retrieval (tvr), video QA (tvqa), VIOLIN (violin) and captioning (tvc) from
the pre-trained weights and from scratch with the same budget (longer than the quickstart's),
and evaluate on the val split. The baseline is an untrained model (chance) or, for captioning,
the most frequent training caption. Writes ``OUT/results.json`` and ``OUT/downstream.md``.

    python scripts/downstream_study.py --out runs/downstream [--seeds 0,1,2] [--tasks vcmr,video_qa,violin,tvc]
        [--steps vcmr=600,video_qa=400] [--pretrain-steps 2000]
        [--pretrained 'runs/downstream/pretrain-seed{seed}/model']

``--steps`` overrides fine-tuning budgets (default: ``STEPS``). ``--pretrained`` reuses pre-trained
models (one per seed, ``{seed}`` is substituted), e.g. those of an earlier run of this script or of
`hero ablate`, whose pre-training is the same.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hero.experiments import Budget, fresh_dir, headline, mean_std, run_many, write_json
from hero.io import write_text_atomic

STEPS = {"vcmr": 1500, "video_qa": 800, "violin": 1200, "tvc": 600}
TITLES = {"vcmr": "moment retrieval (tvr)", "video_qa": "video QA (tvqa)", "violin": "VIOLIN (violin)",
          "tvc": "captioning (tvc)"}
MIX = {"mlm": 2.0, "mfm-nce": 2.0, "fom": 1.0, "vsm": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/downstream"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--tasks", default=",".join(STEPS))
    parser.add_argument("--steps", default="", help="fine-tuning steps per task, e.g. vcmr=600,video_qa=400")
    parser.add_argument("--pretrained", default=None, help="model directory pattern with {seed}")
    parser.add_argument("--pretrain-steps", type=int, default=None,
                        help="pre-training steps per seed (default: the quickstart's)")
    args = parser.parse_args()
    steps = dict(STEPS)
    for item in filter(None, args.steps.split(",")):
        task, _, n = item.partition("=")
        if task not in STEPS or not n.isdigit():
            parser.error(f"--steps: expected task=N with a task of {sorted(STEPS)}, got {item!r}")
        steps[task] = int(n)
    from hero.data.synth import SynthConfig, build

    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = [t for t in args.tasks.split(",") if t]
    budget = Budget(finetune_steps=steps)
    if args.pretrain_steps is not None:
        if args.pretrain_steps < 1:
            parser.error(f"--pretrain-steps must be >= 1, got {args.pretrain_steps}")
        budget.pretrain_steps = args.pretrain_steps
    out = fresh_dir(args.out, "downstream-study")
    t0 = time.perf_counter()
    corpus = build(SynthConfig(seed=0), out / "data", log=lambda *a: None)
    if args.pretrained:
        pre = [Path(args.pretrained.format(seed=s)) for s in seeds]
    else:
        pre = run_many("pretrain", [(out / f"pretrain-seed{s}", corpus, budget, {"mix": MIX, "seed": s})
                                    for s in seeds], budget.jobs)
    cells = [(task, init, s) for task in tasks for s in seeds for init in ("pretrained", "scratch")]
    jobs = [(out / f"{task}-{init}-seed{s}", corpus, budget,
             {"task": task, "init": pre[seeds.index(s)] if init == "pretrained" else None, "seed": s})
            for task, init, s in cells]
    metrics = run_many("finetune", jobs, budget.jobs)
    base = run_many("baseline", [(out, corpus, budget, {"task": t, "seed": 0}) for t in tasks], budget.jobs)
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    for (task, init, _), m in zip(cells, metrics):
        for label, v in headline(task, m).items():
            values.setdefault(task, {}).setdefault(label, {}).setdefault(init, []).append(v)
    for task, m in zip(tasks, base):
        for label, v in headline(task, m).items():
            values.setdefault(task, {}).setdefault(label, {})["baseline"] = [v]
    lines = ["| task | metric | pre-trained | scratch | baseline |", "|---|---|---:|---:|---:|"]
    for task, labels in values.items():
        for label, cols in labels.items():
            cell = {k: "{:.2f} ± {:.2f}".format(*mean_std(v)) for k, v in cols.items()}
            lines.append(f"| {TITLES[task]} | {label} | {cell.get('pretrained', '')} | {cell.get('scratch', '')} "
                         f"| {cols['baseline'][0]:.2f} |")
    seconds = time.perf_counter() - t0
    text = (f"Synthetic corpus (seed 0), hero-small pre-trained {budget.pretrain_steps} steps; fine-tuning steps "
            f"{ {t: steps[t] for t in tasks} }; seeds {seeds} (mean ± sample std); val split, in %. "
            f"{seconds / 60:.0f} min on 2 cores.\n\n"
            + "\n".join(lines) + "\n")
    write_json(out / "results.json",
               {"seeds": seeds, "steps": {t: steps[t] for t in tasks}, "values": values, "seconds": seconds,
                # every metric of every run (e.g. per-type QA and per-kind VIOLIN accuracies)
                "runs": {f"{task}-{init}-seed{s}": m for (task, init, s), m in zip(cells, metrics)}})
    write_text_atomic(out / "downstream.md", text)
    print(text)


if __name__ == "__main__":
    main()
