"""Fine-tuning recipe: any task of `hero.tasks` on one annotation dataset of a corpus.

The task module supplies the data (``train_items``, ``collate``), the loss, the inference and the
metric (DEVELOPERS.md, "Downstream tasks"); this recipe supplies batching and the shared `Engine`.

Batching: training items are visited in an order re-shuffled every epoch from (seed, epoch) and
packed into global batches of ``batch_size × processes`` items; rank ``r`` takes its own slice.
When the task defines ``group_key(item)`` (e.g. the video of a retrieval query), no two items of
a global batch share a key: the reference could put a video twice into a batch, making it its
own in-batch negative. The packing is deterministic, so batches are a function of the step and a
resumed run sees exactly the batches of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hero.data.protocol import CorpusLike
from hero.errors import HeroError, check_settings
from hero.io import write_json_atomic
from hero.tasks import get_task, prediction_suffix, write_task_predictions
from hero.tasks.load import load_task_model, task_settings  # noqa: F401  (load_task_model: re-exported)
from hero.train.build import check_device, check_init, hero_config, initialise
from hero.train.config import ModelSpec, OptimConfig, TrainConfig
from hero.train.data import derive_seed
from hero.train.distributed import barrier, setup
from hero.train.engine import Engine
from hero.train.logging import progress_interval
from hero.train.pretrain import write_or_check_config

_ORDER, _COLLATE = 11, 12


@dataclass
class FinetuneConfig:
    """A fine-tuning run (YAML: ``configs/finetune/*.yaml``)."""

    output_dir: str = "runs/finetune"
    task: str = "vcmr"
    """A `hero.tasks.TASKS` name (``vcmr``, ``vr``, ``video_qa``, ``violin``, ``tvc``)."""
    dataset: str = "tvr"
    """Annotation dataset of the corpus (``annotations/<dataset>/<split>.jsonl``)."""
    corpus: str = "data/tv"
    train_split: str = "train"
    eval_split: str | None = "val"
    """Split evaluated every ``train.eval_every`` steps and at the end (None: no evaluation)."""
    max_clip_len: int = 100
    model: ModelSpec = field(default_factory=lambda: ModelSpec(preset="hero-base"))
    task_config: dict[str, Any] = field(default_factory=dict)
    """Settings of the task's config dataclass that differ from its defaults (the reference's)."""
    eval_batch_size: int = 32
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_settings(self, "", max_clip_len=">=1", eval_batch_size=">=1")


@dataclass
class FinetunePlan:
    """What a fine-tuning run reads, checked before anything is written (`check_finetune`)."""

    task: Any
    cfg: Any
    corpus: CorpusLike
    items: list
    model_config: Any


def check_finetune(config: FinetuneConfig, world_size: int | None = None) -> FinetunePlan:
    """Validate everything a run needs before it writes into its directory: the task and dataset,
    the task settings, the corpus and its train/eval annotations, that the training items fill a
    global batch, the model preset and overrides, ``model.init`` (readable) and precision/device.
    ``--print-config`` runs this too. Raises `HeroError` naming the key or file."""
    import os

    from hero.data.corpus import Corpus
    from hero.tasks import check_dataset

    task = get_task(config.task)
    try:
        check_dataset(task, config.dataset)
    except HeroError as err:
        raise HeroError(f"dataset: {err}") from None
    cfg = task_settings(task, config.task_config)
    corpus = Corpus(config.corpus, max_clip_len=config.max_clip_len)
    items = task.train_items(corpus, config.dataset, config.train_split, cfg)
    if config.eval_split is not None:
        corpus.annotations(config.dataset, config.eval_split)
    world = world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    FinetuneBatches(task, corpus, items, cfg, config.train.batch_size, config.train.seed, 0, world)
    model_config = hero_config(config.model, corpus)
    check_init(config.model)
    check_device(config.train)
    progress_interval(config.train.progress_every)  # HERO_PROGRESS_EVERY
    return FinetunePlan(task, cfg, corpus, items, model_config)


class FinetuneBatches(torch.utils.data.Dataset):
    """This rank's fine-tuning micro-batches, indexed by micro-step (see module docstring)."""

    def __init__(self, task: Any, corpus: CorpusLike, items: list, cfg: Any, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if not items:
            raise HeroError("no training item: check the dataset and split")
        self.task, self.corpus, self.items, self.cfg = task, corpus, items, cfg
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.global_size = batch_size * world_size
        key = getattr(task, "group_key", None)
        self.keys = [key(it) for it in items] if key is not None else None
        if self.keys is not None and len(set(self.keys)) < self.global_size:
            raise HeroError(f"{len(set(self.keys))} distinct videos cannot fill a global batch of {self.global_size} "
                            f"items without repeating one; lower train.batch_size")
        if self.keys is None and len(items) < self.global_size:
            raise HeroError(f"{len(items)} training items cannot fill a global batch of {self.global_size}")
        self._batches: list[list[int]] = []
        self._epoch = 0
        self._stream: deque[int] = deque()
        self._deferred: list[int] = []

    def __len__(self) -> int:
        return 2**62

    def _next_epoch(self) -> None:
        order = np.random.default_rng(derive_seed(self.seed, _ORDER, self._epoch)).permutation(len(self.items))
        self._stream.extend(int(i) for i in order)
        self._epoch += 1

    def _pack_one(self) -> list[int]:
        """The next global batch: deferred items first, then the stream; an item whose key is
        already in the batch waits for the next one."""
        batch, seen, deferred = [], set(), []

        def offer(i: int) -> None:
            k = self.keys[i] if self.keys is not None else None
            if len(batch) >= self.global_size or (k is not None and k in seen):
                deferred.append(i)
            else:
                batch.append(i)
                if k is not None:
                    seen.add(k)

        for i in self._deferred:
            offer(i)
        while len(batch) < self.global_size:
            if not self._stream:
                self._next_epoch()
            offer(self._stream.popleft())
        self._deferred = deferred
        return batch

    def global_batch(self, micro_step: int) -> list[int]:
        while len(self._batches) <= micro_step:
            self._batches.append(self._pack_one())
        return self._batches[micro_step]

    def __getitem__(self, micro_step: int) -> tuple[dict, Any]:
        whole = self.global_batch(micro_step)
        mine = [self.items[i] for i in whole[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]]
        gen = torch.Generator().manual_seed(derive_seed(self.seed, _COLLATE, micro_step, self.rank))
        return {"items": len(mine)}, self.task.collate(self.corpus, mine, self.cfg, gen)


class TaskStep:
    """The engine's loss function for a task."""

    def __init__(self, task: Any, cfg: Any) -> None:
        self.task, self.cfg = task, cfg

    def __call__(self, model, meta: dict, batch: Any, step: int) -> dict:
        return self.task.loss(model, batch, self.cfg, step)


def build_task_model(task: Any, cfg: Any, spec: ModelSpec, corpus: CorpusLike):
    torch.manual_seed(0)
    return task.model_class(hero_config(spec, corpus), cfg)


def run_finetune(config: FinetuneConfig, log=print) -> dict[str, Any]:
    """Fine-tune (or resume) ``config.output_dir``; returns the final evaluation metrics.

    Everything is checked and the model built and initialised before ``config.yaml`` is written,
    so a run that fails to start leaves its directory as it was.
    """
    env = setup(config.train.device)
    plan = check_finetune(config, env.world_size)
    task, cfg, corpus, items = plan.task, plan.cfg, plan.corpus, plan.items
    run_dir = Path(config.output_dir)
    model = build_task_model(task, cfg, config.model, corpus)
    initialise(model, config.model, log=log if env.is_main else (lambda *_: None))
    batches = FinetuneBatches(task, corpus, items, cfg, config.train.batch_size, config.train.seed,
                              env.rank, env.world_size)
    # only now, with everything checked and the model initialised, does the run directory change
    if env.is_main:
        write_or_check_config(run_dir, config, log=log)
    barrier()

    def evaluate(m, step: int) -> dict[str, Any]:
        if config.eval_split is None:
            return {}
        preds = task.predict(m, corpus, config.dataset, config.eval_split, cfg, config.eval_batch_size, env.device)
        if env.is_main:  # through the task's writer: `hero eval` reads these files as they are
            name = f"{config.dataset}_{config.eval_split}_step{step}{prediction_suffix(task)}"
            write_task_predictions(task, preds, run_dir / "predictions" / name, cfg)
        return task.evaluate(preds, corpus, config.dataset, config.eval_split, cfg)

    if env.is_main:
        n = sum(p.numel() for p in model.parameters())
        log(f"fine-tuning {task.name} on {config.dataset}/{config.train_split} ({len(items)} items, "
            f"{n:,} parameters); settings {dataclasses.asdict(cfg)}")
    engine = Engine(model, config.train, config.optim, run_dir, batches, TaskStep(task, cfg), evaluate=evaluate,
                    find_unused_parameters=True, env=env)
    metrics = engine.run()
    if env.is_main:
        model.save_pretrained(run_dir / "model", metadata={"training_step": engine.step, "run": str(run_dir)})
        write_json_atomic(run_dir / "metrics.json", {"step": engine.step, **metrics})
        log(f"saved {run_dir / 'model'}; metrics in {run_dir / 'metrics.json'}")
    barrier()
    return metrics
