"""`hero quickstart`: the whole system on the embedded synthetic corpus, in a few minutes on a laptop.

1. generate the synthetic "TV show" corpus (`hero.data.synth`; nothing is downloaded);
2. pre-train a small HERO with all four objectives (MLM, MNCE, FOM, VSM mixed 2:2:1:2);
3. fine-tune and evaluate video corpus moment retrieval (TVR-style), multiple-choice QA
   (TVQA-style), video-language inference (VIOLIN-style) and captioning (TVC-style), each twice
   with the same budget:
   from the pre-trained weights and from scratch, next to a no-learning baseline (an untrained
   model; for captioning, the most frequent training caption);
4. print the results table and write, under the run folder: ``results.json`` (per task and
   metric, the pre-trained and scratch values), ``report.md`` (the table and the figures), the
   loss curves, a moment-prediction figure and Cross-modal attention maps, plus every run's
   logs, checkpoints and resolved config.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hero.experiments import Budget, baseline, finetune_many, fresh_dir, headline, pretrain, write_json
from hero.io import write_text_atomic

MIX = {"mlm": 2.0, "mfm-nce": 2.0, "fom": 1.0, "vsm": 2.0}


def quickstart_tasks() -> tuple[str, ...]:
    """The tasks the quickstart runs: registered tasks whose ``demo`` says ``quickstart``, in registry order."""
    from hero.experiments import demo_tasks

    return tuple(t.name for t in demo_tasks() if t.demo.quickstart)


def __getattr__(name: str) -> Any:
    if name == "TASKS":
        return quickstart_tasks()
    if name == "TASK_TITLES":
        from hero.experiments import demo_tasks

        return {t.name: t.demo.title for t in demo_tasks()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def results_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table: one row per task metric; pre-trained vs scratch, and the no-learning baseline."""
    lines = ["| task | metric | pre-trained | scratch | difference | baseline |", "|---|---|---:|---:|---:|---:|"]
    titles = __getattr__("TASK_TITLES")
    for task, metrics in results.items():
        for label, v in metrics.items():
            base = f"{v['baseline']:.2f}" if "baseline" in v else ""
            lines.append(f"| {titles.get(task, task)} | {label} | {v['pretrained']:.2f} | {v['scratch']:.2f} "
                         f"| {v['pretrained'] - v['scratch']:+.2f} | {base} |")
    return "\n".join(lines)


def _figures(out: Path, corpus: Path, pretrain_dir: Path, vcmr_dir: Path, log: Callable[..., None]) -> dict[str, str]:
    """Loss curves, a moment-prediction figure and attention maps; a failing figure is reported, not fatal."""
    from hero.data.corpus import Corpus
    from hero.viz.attention import attention_figure
    from hero.viz.curves import plot_loss_curves
    from hero.viz.models import load_any_model
    from hero.viz.moments import moments_figure

    figs = out / "figures"
    made: dict[str, str] = {}
    c = Corpus(corpus)
    jobs = {
        "loss_curves": lambda p: plot_loss_curves(pretrain_dir, p),
        "moments": lambda p: moments_figure(load_any_model(vcmr_dir / "model"), c, p, dataset="tvr", split="val"),
        "attention": lambda p: attention_figure(load_any_model(pretrain_dir / "model"), c, p),
    }
    for name, job in jobs.items():
        try:
            made[name] = str(job(figs / f"{name}.png").relative_to(out))
        except Exception as err:  # a figure must not cost the user the results of the run
            log(f"  figure {name} failed: {type(err).__name__}: {err}")
    return made


def write_report(out: Path, results: dict, figures: dict[str, str], seconds: dict[str, float], budget: Budget) -> Path:
    fig_md = "\n\n".join(f"![{name}]({path})" for name, path in figures.items())
    text = f"""# hero quickstart report

A {budget.preset} HERO pre-trained for {budget.pretrain_steps} steps on the synthetic corpus, then
fine-tuned on each task with the same budget from the pre-trained weights and from scratch.
Metrics are on the synthetic corpus's val split (R@k in %, accuracy in %). *Baseline* is what a
model gets without learning the task: an untrained model of the same size (chance), or for
captioning the most frequent training caption for every clip.

{results_table(results)}

Time: {', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())}.

{fig_md}
"""
    path = out / "report.md"
    write_text_atomic(path, text)
    return path


def run(out_dir: str | Path = "runs/quickstart", budget: Budget | None = None, seed: int = 0,
        tasks: Sequence[str] | None = None, log: Callable[..., None] = print) -> dict[str, Any]:
    """Run the quickstart into ``out_dir`` (an earlier quickstart output there is replaced; any other
    non-empty directory is refused, see `hero.io.claim_output_dir`); returns results.json."""
    from hero.data.synth import SynthConfig, build

    budget = budget or Budget()
    tasks = quickstart_tasks() if tasks is None else tasks
    out = fresh_dir(Path(out_dir), "quickstart")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    log(f"[1/4] synthetic corpus -> {out / 'data'}")
    corpus = build(SynthConfig(seed=seed), out / "data", log=lambda *a: None)
    seconds["corpus"] = time.perf_counter() - t0

    t = time.perf_counter()
    log(f"[2/4] pre-training {budget.preset} for {budget.pretrain_steps} steps (MLM:MNCE:FOM:VSM = 2:2:1:2)")
    pre_model = pretrain(out / "pretrain", corpus, budget, mix=MIX, seed=seed)
    seconds["pre-training"] = time.perf_counter() - t

    t = time.perf_counter()
    log(f"[3/4] fine-tuning {', '.join(tasks)}: pre-trained vs scratch, same budget, {budget.jobs} runs at a time")
    results: dict[str, dict[str, dict[str, float]]] = {}
    raw: dict[str, dict[str, Any]] = {}
    for task in tasks:
        inits = (("pretrained", pre_model), ("scratch", None))
        jobs = [(out / "finetune" / f"{task}-{name}", corpus, budget, {"task": task, "init": init, "seed": seed})
                for name, init in inits]
        per_init = {}
        for (name, _), metrics in zip(inits, finetune_many(jobs, budget.jobs)):
            raw.setdefault(task, {})[name] = metrics
            per_init[name] = headline(task, metrics)
            log(f"  {task:9s} {name:10s} " + ", ".join(f"{k} {v:.2f}" for k, v in per_init[name].items()))
        base = headline(task, baseline(corpus, budget, task=task, seed=seed))
        results[task] = {label: {"pretrained": per_init["pretrained"][label], "scratch": per_init["scratch"][label],
                                 "baseline": base[label]}
                         for label in per_init["pretrained"]}
    seconds["fine-tuning"] = time.perf_counter() - t

    log("[4/4] figures and report")
    figures = _figures(out, corpus, out / "pretrain", out / "finetune" / "vcmr-pretrained", log)
    seconds["total"] = time.perf_counter() - t0
    summary = {"results": results, "budget": budget.__dict__, "seed": seed, "seconds": seconds,
               "figures": figures, "raw_metrics": raw}
    write_json(out / "results.json", summary)
    report = write_report(out, results, figures, seconds, budget)

    log("")
    log(results_table(results))
    log("")
    log(f"done in {seconds['total']:.0f} s. Everything is in {out}:")
    log("  results.json       the table above (pre-trained and scratch values per task and metric)")
    log(f"  {report.relative_to(out)}          the table with the figures")
    log("  figures/           " + ", ".join(figures.values()))
    log("  pretrain/          pre-training run: log.jsonl, TensorBoard events, checkpoints, model/")
    log("  finetune/<task>-*  fine-tuning runs: metrics.json, predictions/, model/")
    log("  data/              the synthetic corpus (hero data info " + str(out / "data") + ")")
    return summary
