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

from hero.experiments import Budget, finetune, fresh_dir, headline, mean_std, pretrain, write_json

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


class Ablation:
    """Runs (and caches) pre-training and fine-tuning runs of the ablation grid."""

    def __init__(self, out: Path, corpus: Path, budget: Budget, max_frames: int, log: Callable[..., None]) -> None:
        self.out, self.corpus, self.budget, self.max_frames, self.log = out, corpus, budget, max_frames, log
        self.pretrained: dict[tuple[str, str, int], Path] = {}
        self.scores: dict[tuple[str, str, str, int], dict[str, float]] = {}

    def _slug(self, text: str) -> str:
        return text.lower().replace(" + ", "+").replace(" ", "-").replace("(", "").replace(")", "")

    def pretrained_model(self, backbone: str, mix_name: str, mix: dict[str, float], seed: int) -> Path:
        key = (backbone, mix_name, seed)
        if key not in self.pretrained:
            budget = _backbone_overrides(self.budget, backbone, self.max_frames)
            run = self.out / "runs" / f"pretrain-{backbone}-{self._slug(mix_name)}-seed{seed}"
            t = time.perf_counter()
            self.pretrained[key] = pretrain(run, self.corpus, budget, mix=mix, seed=seed, backbone=backbone)
            self.log(f"  pre-trained {backbone} with {mix_name}, seed {seed} ({time.perf_counter() - t:.0f} s)")
        return self.pretrained[key]

    def score(self, backbone: str, mix_name: str, mix: dict[str, float] | None, task: str, seed: int) -> dict:
        key = (backbone, mix_name, task, seed)
        if key not in self.scores:
            init = None if mix is None else self.pretrained_model(backbone, mix_name, mix, seed)
            budget = _backbone_overrides(self.budget, backbone, self.max_frames)
            run = self.out / "runs" / f"finetune-{task}-{backbone}-{self._slug(mix_name)}-seed{seed}"
            metrics = finetune(run, self.corpus, budget, task=task, init=init, seed=seed, backbone=backbone)
            self.scores[key] = headline(task, metrics)
            self.log(f"  {task} {backbone} [{mix_name}] seed {seed}: "
                     + ", ".join(f"{k} {v:.2f}" for k, v in self.scores[key].items()))
        return self.scores[key]


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
    out = fresh_dir(Path(out_dir))
    t0 = time.perf_counter()
    cfg = SynthConfig(seed=0)  # one corpus; seeds vary initialisation, masking and batch order
    corpus = build(cfg, out / "data", log=lambda *a: None)
    ab = Ablation(out, corpus, budget, cfg.max_frames, log)
    results: dict[str, Any] = {"seeds": list(seeds), "budget": budget.__dict__, "table1": {}, "table2": {}}
    md = []
    if 1 in tables:
        log("Table 1: pre-training tasks (HERO)")
        rows: dict[str, dict[str, list[float]]] = {}
        for name, mix in TABLE1_ROWS.items():
            cols: dict[str, list[float]] = {}
            for task in TASKS:
                for seed in seeds:
                    for label, v in ab.score("hero", name, mix, task, seed).items():
                        cols.setdefault(label, []).append(v)
            rows[name] = cols
        results["table1"] = rows
        md.append("### Table 1 in miniature: pre-training tasks\n\n" + _table(rows, "pre-training tasks"))
    if 2 in tables:
        log("Table 2: model design")
        rows = {}
        for model_name, (backbone, mix) in TABLE2_MODELS.items():
            for pre in (False, True):
                mix_name = (FULL if backbone != "f-trm" else "MLM + MNCE") if pre else "none (scratch)"
                cols = {}
                for task in TASKS:
                    for seed in seeds:
                        for label, v in ab.score(backbone, mix_name, mix if pre else None, task, seed).items():
                            cols.setdefault(label, []).append(v)
                rows[f"{model_name}, {'pre-trained' if pre else 'no pre-training'}"] = cols
        results["table2"] = rows
        md.append("### Table 2 in miniature: model design\n\n" + _table(rows, "model"))
    results["seconds"] = time.perf_counter() - t0
    header = (f"Synthetic corpus (seed 0), {budget.preset} ({budget.pretrain_steps} pre-training steps, "
              f"fine-tuning steps {budget.finetune_steps}), seeds {list(seeds)}: mean ± sample std over seeds. "
              f"Metrics on the val split, in %.\n")
    text = header + "\n" + "\n\n".join(md) + "\n"
    write_json(out / "results.json", results)
    tmp = out / ".ablations.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / "ablations.md")
    log("")
    log(text)
    log(f"done in {results['seconds']:.0f} s; tables in {out / 'ablations.md'}, every value in {out / 'results.json'}")
    return results
