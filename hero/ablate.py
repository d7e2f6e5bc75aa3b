"""`hero ablate`: the paper's Tables 1 and 2 in miniature, on the synthetic corpus, over several seeds.

* **Table 1** (pre-training tasks): a small HERO pre-trained with MLM; MLM+MNCE; +FOM; +VSM;
  +MFFR (the paper's rows 1–5), and no pre-training, each fine-tuned on the synthetic VCMR and QA
  tasks.
* **Table 2** (model design, §4.3): HERO, F-TRM (one flat Transformer over frames and all
  subtitle tokens; footnote 9) and H-TRM (max-pooled subtitle encodings added to the frames,
  then the Temporal Transformer; footnote 8), each without and with pre-training. F-TRM is
  pre-trained with MLM+MNCE (footnote 11: VSM and FOM do not apply); H-TRM and HERO with
  MLM+MNCE+FOM+VSM. F-TRM gets as many layers as HERO has in total (cross-modal + temporal).

Every (row, seed) is an ordinary pre-training and fine-tuning run under ``OUT/runs/``. The table
reports the mean and the sample standard deviation over seeds, so a difference can be told apart
from noise; ``results.json`` keeps every seed's value.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hero.experiments import Budget, fresh_dir, headline, mean_std, run_many, write_json
from hero.io import write_text_atomic

TABLE1_ROWS: dict[str, dict[str, float] | None] = {
    "none (scratch)": None,
    "MLM": {"mlm": 1.0},
    "MLM + MNCE": {"mlm": 1.0, "mfm-nce": 1.0},
    "MLM + MNCE + FOM": {"mlm": 2.0, "mfm-nce": 2.0, "fom": 1.0},
    "MLM + MNCE + FOM + VSM": {"mlm": 2.0, "mfm-nce": 2.0, "fom": 1.0, "vsm": 2.0},
    "MLM + MNCE + FOM + VSM + MFFR": {"mlm": 2.0, "mfm-nce": 2.0, "fom": 1.0, "vsm": 2.0, "mffr": 1.0},
}
FULL = "MLM + MNCE + FOM + VSM"

# (backbone, pre-training mix) of Table 2's pre-trained rows
TABLE2_MODELS: dict[str, tuple[str, dict[str, float]]] = {
    "F-TRM": ("f-trm", {"mlm": 1.0, "mfm-nce": 1.0}),
    "H-TRM": ("h-trm", TABLE1_ROWS[FULL]),
    "HERO": ("hero", TABLE1_ROWS[FULL]),
}
TASKS = ("vcmr", "video_qa")


def _backbone_overrides(budget: Budget, backbone: str, max_frames: int) -> Budget:
    """F-TRM: all of HERO's layers in its one Transformer, and a frame position for every frame."""
    if backbone != "f-trm":
        return budget
    from hero.config import HeroConfig

    base = HeroConfig.from_name(budget.preset, **budget.model_overrides)
    overrides = {**budget.model_overrides, "num_cross_layers": base.num_cross_layers + base.num_temporal_layers,
                 "max_frm_seq_len": max(base.max_frm_seq_len, max_frames)}
    return Budget(**{**budget.__dict__, "model_overrides": overrides})


def _slug(text: str) -> str:
    return text.lower().replace(" + ", "+").replace(" ", "-").replace("(", "").replace(")", "")


def plan(seeds: Sequence[int], tables: Sequence[int]) -> list[tuple[str, str, str, dict | None, str, int]]:
    """Every cell of the requested tables: ``(table row, backbone, mix name, mix, task, seed)``."""
    cells = []
    if 1 in tables:
        for name, mix in TABLE1_ROWS.items():
            cells += [(f"1|{name}", "hero", name, mix, task, seed) for task in TASKS for seed in seeds]
    if 2 in tables:
        for model_name, (backbone, mix) in TABLE2_MODELS.items():
            for pre in (False, True):
                mix_name = (FULL if backbone != "f-trm" else "MLM + MNCE") if pre else "none (scratch)"
                row = f"2|{model_name}, {'pre-trained' if pre else 'no pre-training'}"
                cells += [(row, backbone, mix_name, mix if pre else None, task, seed)
                          for task in TASKS for seed in seeds]
    return cells


def execute(out: Path, corpus: Path, budget: Budget, max_frames: int, cells: list, log: Callable[..., None]) -> dict:
    """Pre-train every distinct (backbone, mix, seed) once, then fine-tune every cell; both phases
    run ``budget.jobs`` processes at a time. Returns ``{(backbone, mix name, task, seed): headline}``."""
    pre_keys = sorted({(b, m, s) for _, b, m, mix, _, s in cells if mix is not None})
    mixes = {(b, m): mix for _, b, m, mix, _, _ in cells if mix is not None}
    t = time.perf_counter()
    log(f"  {len(pre_keys)} pre-training runs, {budget.jobs} at a time")
    jobs = [(out / "runs" / f"pretrain-{b}-{_slug(m)}-seed{s}", corpus,
             _backbone_overrides(budget, b, max_frames), {"mix": mixes[(b, m)], "seed": s, "backbone": b})
            for b, m, s in pre_keys]
    models = dict(zip(pre_keys, run_many("pretrain", jobs, budget.jobs)))
    log(f"  pre-training done ({time.perf_counter() - t:.0f} s)")
    t = time.perf_counter()
    ft_keys = sorted({(b, m, task, s) for _, b, m, _, task, s in cells})
    log(f"  {len(ft_keys)} fine-tuning runs, {budget.jobs} at a time")
    jobs = [(out / "runs" / f"finetune-{task}-{b}-{_slug(m)}-seed{s}", corpus,
             _backbone_overrides(budget, b, max_frames),
             {"task": task, "init": models.get((b, m, s)), "seed": s, "backbone": b})
            for b, m, task, s in ft_keys]
    metrics = run_many("finetune", jobs, budget.jobs)
    log(f"  fine-tuning done ({time.perf_counter() - t:.0f} s)")
    return {key: headline(key[2], m) for key, m in zip(ft_keys, metrics)}


def _cell(values: Sequence[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.2f} ± {std:.2f}"


def _table(rows: dict[str, dict[str, list[float]]], first: str) -> str:
    labels = list(next(iter(rows.values())))
    lines = [f"| {first} | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
    for name, cols in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(cols[label]) for label in labels) + " |")
    return "\n".join(lines)


def run(out_dir: str | Path = "runs/ablate", seeds: Sequence[int] = (0, 1, 2), budget: Budget | None = None,
        tables: Sequence[int] = (1, 2), log: Callable[..., None] = print) -> dict[str, Any]:
    """Run the grid into ``out_dir``; returns (and writes) ``results.json`` and ``ablations.md``."""
    from hero.data.synth import SynthConfig, build

    budget = budget or Budget()
    out = fresh_dir(Path(out_dir), "ablate")
    t0 = time.perf_counter()
    cfg = SynthConfig(seed=0)  # one corpus; seeds vary initialisation, masking and batch order
    corpus = build(cfg, out / "data", log=lambda *a: None)
    cells = plan(seeds, tables)
    scores = execute(out, corpus, budget, cfg.max_frames, cells, log)
    results: dict[str, Any] = {"seeds": list(seeds), "budget": budget.__dict__, "table1": {}, "table2": {}}
    for row, backbone, mix_name, _, task, seed in cells:
        table, name = row.split("|", 1)
        cols = results[f"table{table}"].setdefault(name, {})
        for label, v in scores[(backbone, mix_name, task, seed)].items():
            cols.setdefault(label, []).append(v)
    md = []
    if results["table1"]:
        md.append("### Table 1 in miniature: pre-training tasks (HERO)\n\n"
                  + _table(results["table1"], "pre-training tasks"))
    if results["table2"]:
        md.append("### Table 2 in miniature: model design\n\n" + _table(results["table2"], "model"))
    results["seconds"] = time.perf_counter() - t0
    header = (f"Synthetic corpus (seed 0), {budget.preset}, {budget.pretrain_steps} pre-training steps, fine-tuning "
              f"steps {budget.finetune_steps['vcmr']} (VCMR) / {budget.finetune_steps['video_qa']} (QA); seeds "
              f"{list(seeds)}: mean ± sample standard deviation over seeds. Val split, in %.\n")
    text = header + "\n" + "\n\n".join(md) + "\n"
    write_json(out / "results.json", results)
    write_text_atomic(out / "ablations.md", text)
    log("")
    log(text)
    log(f"done in {results['seconds']:.0f} s; tables in {out / 'ablations.md'}, every value in {out / 'results.json'}")
    return results
