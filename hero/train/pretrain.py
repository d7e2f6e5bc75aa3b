"""Pre-training recipe (paper §3.2): MLM, MFM (MNCE / MFFR), FOM and VSM mixed by ratio.

``run_pretrain(config)`` = set up the process group, read the corpora, build and initialise
`HeroForPretraining`, and hand the step-indexed batches (`hero.train.data`) and the objectives to
the shared `Engine`. Launch with ``hero pretrain --config ...`` on one process, or with
``torchrun --nproc-per-node G [--nnodes N ...] -m hero pretrain --config ...`` on many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hero.errors import HeroError, check_settings
from hero.io import read_text, write_text_atomic
from hero.objectives import OBJECTIVES, HeroForPretraining
from hero.train.build import check_device, check_init, hero_config, initialise
from hero.train.config import ModelSpec, OptimConfig, TrainConfig, dump_config, read_yaml, to_dict
from hero.train.data import Mix, PretrainBatches
from hero.train.distributed import barrier, setup
from hero.train.engine import Engine
from hero.train.logging import progress_interval

if TYPE_CHECKING:
    from hero.data.corpus import Corpus

EVAL_SPLITS = ("val", "test", "test_public", "test-public", "dev")


@dataclass
class DataSpec:
    corpora: list[str] = field(default_factory=lambda: ["data/synthetic"])
    """Prepared dataset directories (`hero.data.corpus.Corpus`), e.g. TV and HowTo100M."""
    ratios: list[float] | None = None
    """Sampling ratio of each corpus (reference ``targets_ratio``); equal when None."""
    max_clip_len: int = 100
    """Frames per clip (longer clips are cut, as the reference does)."""
    videos: str = "exclude-eval"
    """Which videos pre-training sees: ``all``, ``exclude-eval`` (every video except those of the
    corpus's val/test annotations, so downstream evaluation stays unseen), or a file listing video
    ids (one per line)."""

    def __post_init__(self) -> None:
        check_settings(self, "data", max_clip_len=">=1")


class _PretrainSettings:
    """A pre-training run (YAML: ``configs/pretrain/*.yaml``).

    Sections, in order: ``output_dir``, ``data`` (`DataSpec`), ``model`` (`ModelSpec`), ``mix``
    (objective ratios; one objective is drawn per optimizer step; paper: MLM:MNCE:FOM:VSM =
    2:2:1:2), then one section per registered objective (`hero.objectives.OBJECTIVES`, named
    ``name`` with ``-`` as ``_``: ``mlm``, ``mfm_nce``, ``mffr``, ``fom``, ``vsm``) holding its config
    class, then ``optim`` (`OptimConfig`) and ``train`` (`TrainConfig`). The objective sections are
    read off the registry: a new objective adds no field here.
    """

    def objective_config(self, name: str):
        return getattr(self, objective_section(name))


def objective_section(name: str) -> str:
    """The config section of objective ``name`` (``mfm-nce`` -> ``mfm_nce``)."""
    return name.replace("-", "_")


PretrainConfig = make_dataclass(
    "PretrainConfig",
    [("output_dir", str, field(default="runs/pretrain")),
     ("data", DataSpec, field(default_factory=DataSpec)),
     ("model", ModelSpec, field(default_factory=ModelSpec)),
     ("mix", dict[str, float], field(default_factory=lambda: {"mlm": 2.0, "mfm-nce": 2.0, "fom": 1.0, "vsm": 2.0})),
     *[(objective_section(name), config_class, field(default_factory=config_class))
       for name, (config_class, _objective) in OBJECTIVES.items()],
     ("optim", OptimConfig, field(default_factory=OptimConfig)),
     ("train", TrainConfig, field(default_factory=TrainConfig))],
    bases=(_PretrainSettings,),
    namespace={"__doc__": _PretrainSettings.__doc__, "__module__": __name__},
)


# Settings that may change when a run is resumed (they do not change what is computed).
RESUMABLE_CHANGES = {"train.num_workers", "train.progress", "train.log_every", "train.threads", "train.device",
                     "train.save_every", "train.keep_last", "train.eval_every", "train.num_train_steps"}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def write_or_check_config(run_dir: Path, config: Any, log=print) -> None:
    """Save the resolved config as ``config.yaml``; on resume, refuse a config that changes the run.

    A ``config.yaml`` of a run that never saved a checkpoint (it stopped before its first one) is
    replaced: nothing was trained under it that the new config could mix with.
    """
    from hero.train.checkpoint import latest_checkpoint

    path = run_dir / "config.yaml"
    if path.is_file():
        old, new = _flat(read_yaml(path)), _flat(to_dict(config))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
        if changed and latest_checkpoint(run_dir) is None and not (run_dir / "model").exists():
            log(f"{path}: replacing the config of a run that never saved a checkpoint")
            changed = []
        if changed:
            diffs = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:10])
            raise HeroError(f"{run_dir} holds a run with a different config ({diffs}); resume it with the same "
                            f"config or choose a new output_dir")
    write_text_atomic(path, dump_config(config))


def pretraining_videos(corpus: Corpus, which: str) -> list[str]:
    vids = list(corpus.video_ids())
    if which == "all":
        return vids
    if which == "exclude-eval":
        held_out = set()
        for dataset, split in corpus.datasets():
            if split in EVAL_SPLITS:
                for rec in corpus.annotations(dataset, split):
                    held_out.add(rec["vid"])
        return [v for v in vids if v not in held_out]
    path = Path(which)
    if not path.is_file():
        raise HeroError(f"data.videos: {which!r} is neither 'all', 'exclude-eval' nor a file of video ids")
    wanted = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    known = set(vids)
    missing = [v for v in wanted if v not in known]
    if missing:
        raise HeroError(f"{path}: {len(missing)} video id(s) not in the corpus, e.g. {missing[:5]}")
    return wanted


class PretrainStep:
    """The engine's loss function: the objective the batch was built for."""

    def __init__(self, objectives: dict[str, Any]) -> None:
        self.objectives = objectives

    def __call__(self, model, meta: dict, batch: Any, step: int) -> dict:
        return self.objectives[meta["objective"]](model, batch, step=step)


def build_objectives(config: PretrainConfig, tokens) -> dict[str, Any]:
    check_mix(config.mix)
    out = {}
    for name, ratio in config.mix.items():
        if ratio > 0:
            try:
                out[name] = OBJECTIVES[name][1](config.objective_config(name), tokens)
            except HeroError:
                raise
            except ValueError as err:
                raise HeroError(f"{objective_section(name)}: {err}") from None
    return out


def check_mix(mix: dict[str, float]) -> None:
    """Known objectives, finite ratios >= 0, at least one > 0."""
    for name, ratio in mix.items():
        if name not in OBJECTIVES:
            raise HeroError(f"mix: unknown objective {name!r}; choose from {sorted(OBJECTIVES)}")
        if not (math.isfinite(ratio) and ratio >= 0):
            raise HeroError(f"mix.{name} must be a ratio >= 0, got {ratio!r}")
    if not any(r > 0 for r in mix.values()):
        raise HeroError(f"mix: no objective has a ratio > 0 (got {dict(mix)})")


@dataclass
class PretrainPlan:
    """What a pre-training run reads, checked before anything is written (`check_pretrain`)."""

    corpora: list[Any]
    sources: list[tuple[Any, list[str]]]
    ratios: list[float]
    model_config: Any


def check_pretrain(config: PretrainConfig) -> PretrainPlan:
    """Validate everything a run needs before it writes into its directory: the corpora (open,
    same tokenizer and feature size, videos to train on), ratios, objective mix and settings, the
    model preset and overrides, ``model.init`` (readable) and precision/device. ``--print-config``
    runs this too. Raises `HeroError` naming the key or file."""
    from hero.data.corpus import Corpus

    check_mix(config.mix)
    if not config.data.corpora:
        raise HeroError("data.corpora is empty")
    corpora = [Corpus(p, max_clip_len=config.data.max_clip_len) for p in config.data.corpora]
    tokens = corpora[0].tokens
    for c in corpora[1:]:
        if c.tokens != tokens or c.video_store.meta.dim != corpora[0].video_store.meta.dim:
            raise HeroError(f"corpus {c.root} uses another tokenizer or feature size than {corpora[0].root}")
    ratios = config.data.ratios or [1.0] * len(corpora)
    if len(ratios) != len(corpora):
        raise HeroError(f"data.ratios has {len(ratios)} entries for {len(corpora)} corpora")
    if any(not (math.isfinite(r) and r >= 0) for r in ratios) or not any(r > 0 for r in ratios):
        raise HeroError(f"data.ratios must be >= 0 with at least one > 0, got {ratios}")
    sources = [(c, pretraining_videos(c, config.data.videos)) for c in corpora]
    for c, vids in sources:
        if not vids:
            raise HeroError(f"{c.root}: no video to pre-train on (data.videos: {config.data.videos!r})")
    model_config = hero_config(config.model, corpora[0])
    check_init(config.model)
    check_device(config.train)
    progress_interval(config.train.progress_every)  # HERO_PROGRESS_EVERY
    return PretrainPlan(corpora, sources, ratios, model_config)


def run_pretrain(config: PretrainConfig, log=print) -> Path:
    """Pre-train (or resume) the run in ``config.output_dir``; returns the final model directory.

    Everything is checked and the model built and initialised before ``config.yaml`` is written,
    so a run that fails to start leaves its directory as it was.
    """
    plan = check_pretrain(config)
    env = setup(config.train.device)
    run_dir = Path(config.output_dir)
    corpora, sources = plan.corpora, plan.sources
    tokens = corpora[0].tokens
    torch.manual_seed(config.train.seed)
    model = HeroForPretraining(plan.model_config)
    initialise(model, config.model, log=log if env.is_main else (lambda *_: None))
    objectives = build_objectives(config, tokens)
    mix = Mix({k: v for k, v in config.mix.items() if v > 0}, plan.ratios)
    batches = PretrainBatches(sources, objectives, mix, config.train.batch_size, config.train.seed,
                              env.rank, env.world_size, config.train.grad_accum_steps)
    if env.is_main:
        write_or_check_config(run_dir, config, log=log)
    barrier()
    if env.is_main:
        n = sum(p.numel() for p in model.parameters())
        log(f"pre-training {config.model.preset} ({n:,} parameters) on "
            + ", ".join(f"{c.root} ({len(v)} videos)" for c, v in sources)
            + "; mix " + ", ".join(f"{k} {p:.0%}" for k, p in mix.frequencies().items()))
    engine = Engine(model, config.train, config.optim, run_dir, batches, PretrainStep(objectives),
                    find_unused_parameters=True, env=env)
    engine.run()
    final = run_dir / "model"
    if env.is_main:
        model.save_pretrained(final, metadata={"training_step": engine.step, "run": str(run_dir)})
        log(f"saved {final}")
    barrier()
    return final
