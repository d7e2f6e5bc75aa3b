"""The training loop shared by pre-training and fine-tuning.

`Engine` owns everything that is not model or task specific, in one place: device and process
group, DDP, AdamW and the learning-rate schedule, autocast (bf16 on CPU/GPU, fp16 with a gradient
scaler on GPU), gradient accumulation and clipping, the non-finite-loss check, checkpoints and
resume, logging and periodic evaluation. It never branches on the objective or task: a step is
``loss_fn(model, meta, batch, step) -> dict`` where ``dict["loss"]`` is this rank's mean loss.

**Global-batch losses.** A loss dict may carry ``"normalizer"``: the number of items the rank's
mean is over (masked tokens, queries, ...). The engine sums normalizers over ranks and scales the
rank's loss by ``normalizer · world / Σ normalizer`` before backward; DDP's gradient averaging then
yields the gradient of the mean over the *global* batch, so N processes with B items each train
exactly like one process with N·B items (the objectives gather their in-batch negatives).

**Exact resume.** Batches are a pure function of the step (`hero.train.data`), and checkpoints
hold the model, optimizer, gradient-scaler and RNG state of every rank, so a run resumed from a
checkpoint reaches the same weights as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hero.errors import HeroError
from hero.train import checkpoint as ckpt
from hero.train.config import OptimConfig, TrainConfig
from hero.train.distributed import DistEnv, all_gather_objects, all_reduce_, barrier, setup
from hero.train.logging import RunLogger, metrics_table
from hero.train.optim import build_optimizer, lr_factor, set_lr

LossFn = Callable[[nn.Module, dict, Any, int], dict[str, Any]]
EvalFn = Callable[[nn.Module, int], dict[str, Any]]


class _Runner(nn.Module):
    """What DDP wraps: ``forward(fn, *args)`` runs ``fn(model, *args)``, so any loss code goes
    through DDP's forward (gradient hooks) without a task switch in the model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fn, *args):
        return fn(self.model, *args)


def _first(x):
    return x


def _worker_init(_):
    torch.set_num_threads(1)


class Engine:
    """Train ``model`` on the step-indexed ``batches`` (see module docstring).

    Args:
        batches: ``batches[micro_step] -> (meta, batch)`` for this rank; ``meta["items"]`` is the
            number of items (clips, queries, ...) in the batch, ``meta.get("objective")`` its name.
        loss_fn: ``loss_fn(model, meta, batch, step) -> dict`` (see module docstring).
        evaluate: optional ``evaluate(model, step) -> metrics``, run on every rank every
            ``train.eval_every`` steps and at the end.
        find_unused_parameters: DDP setting; True when steps use different heads (pre-training).
        env: the process environment (`hero.train.distributed.setup` when None).
    """

    def __init__(self, model: nn.Module, train: TrainConfig, optim: OptimConfig, run_dir: str | Path,
                 batches: Dataset, loss_fn: LossFn, evaluate: EvalFn | None = None,
                 find_unused_parameters: bool = False, env: DistEnv | None = None) -> None:
        self.train_cfg, self.optim_cfg = train, optim
        self.run_dir = Path(run_dir)
        self.env = env or setup(train.device)
        if train.threads > 0:
            torch.set_num_threads(train.threads)
        if train.precision == "fp16" and self.env.device.type != "cuda":
            raise HeroError("train.precision=fp16 needs a CUDA device; use bf16 on the CPU")
        self.model = model.to(self.env.device)
        self.batches, self.loss_fn, self.evaluate_fn = batches, loss_fn, evaluate
        self.optimizer = build_optimizer(self.model, optim)
        self.scaler = torch.amp.GradScaler("cuda") if train.precision == "fp16" else None
        self.step = 0
        self._resume()
        runner = _Runner(self.model)
        if self.env.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.env.device.index] if self.env.device.type == "cuda" else None
            runner = DDP(runner, device_ids=ids, find_unused_parameters=find_unused_parameters)
        if train.compile:
            runner = torch.compile(runner, dynamic=True)
        self.runner = runner

    # -- resume --------------------------------------------------------------------------------

    def _resume(self) -> None:
        latest = ckpt.latest_checkpoint(self.run_dir)
        if latest is None:
            seed = torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(self.train_cfg.seed))
            torch.manual_seed(int(seed) + self.env.rank)
            return
        from hero.model.checkpoint import read_weights

        state = ckpt.load_trainer_state(latest)
        weights = read_weights(latest)  # checked against the hash in its config.json
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise HeroError(f"{latest}: checkpoint does not fit the model (missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]})")
        ckpt.load_optimizer(latest, self.optimizer, state["param_groups"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        rng = ckpt.load_rng(latest, self.env.rank)
        if rng is not None and state.get("world_size") == self.env.world_size:
            ckpt.set_rng_state(rng)
        else:
            torch.manual_seed(self.train_cfg.seed * 7919 + self.env.rank + state["step"])
        self.step = int(state["step"])

    # -- the loop ------------------------------------------------------------------------------

    def _autocast(self):
        p = self.train_cfg.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(self.env.device.type, dtype=dtype)

    def _loader(self, start_micro: int, end_micro: int) -> DataLoader:
        workers = self.train_cfg.num_workers
        # Batches are a function of the step; the loader's own generator only seeds worker
        # processes (unused). Giving it one keeps it from drawing from the global RNG, which
        # drives dropout and must continue exactly across a resume.
        return DataLoader(self.batches, batch_size=None, sampler=range(start_micro, end_micro),
                          num_workers=workers, collate_fn=_first, worker_init_fn=_worker_init if workers else None,
                          pin_memory=self.env.device.type == "cuda", persistent_workers=False,
                          prefetch_factor=4 if workers else None, generator=torch.Generator().manual_seed(0))

    def _micro_step(self, meta: dict, batch: Any, accum_scale: float, sync: bool) -> dict[str, float]:
        """Forward + backward of one micro-batch; returns the global (all-rank) loss values."""
        batch = batch.to(self.env.device) if hasattr(batch, "to") else batch
        no_sync = getattr(self.runner, "no_sync", None)
        ctx = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
        with ctx:
            with self._autocast():
                out = self.runner(self.loss_fn, meta, batch, self.step + 1)
            loss = out["loss"]
            n = float(out.get("normalizer", 1))
            terms = {k: v for k, v in out.items() if k.endswith("loss") and isinstance(v, torch.Tensor)}
            # one all-reduce: [Σn, Σ n·term ...]
            vec = torch.tensor([n] + [float(v.detach()) * n for v in terms.values()], dtype=torch.float64)
            all_reduce_(vec.to(self.env.device) if self.env.device.type == "cuda" else vec)
            vec = vec.cpu()
            total = float(vec[0])
            scale = (n * self.env.world_size / total) if total > 0 else 0.0
            scaled = loss * (scale * accum_scale)
            if self.scaler is not None:
                scaled = self.scaler.scale(scaled)
            scaled.backward()
        values = {k: (float(vec[i + 1]) / total if total > 0 else 0.0) for i, k in enumerate(terms)}
        if not all(math.isfinite(v) for v in values.values()):
            raise HeroError(f"non-finite loss at step {self.step + 1} (objective "
                            f"{meta.get('objective', 'task')}): "
                            + ", ".join(f"{k}={v}" for k, v in values.items()))
        return values

    def _optimizer_step(self) -> tuple[float, float]:
        lr = set_lr(self.optimizer, self.optim_cfg.lr,
                    lr_factor(self.step + 1, self.optim_cfg.warmup_steps, self.train_cfg.num_train_steps,
                              self.optim_cfg.schedule))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if self.optim_cfg.grad_norm > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.optim_cfg.grad_norm))
        else:
            norm = float(torch.norm(torch.stack([p.grad.detach().float().norm() for p in params]))) if params else 0.0
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lr, norm

    def save(self) -> Path | None:
        """Checkpoint the current step (collective: every rank must call it)."""
        states = all_gather_objects(ckpt.rng_state())
        path = None
        if self.env.is_main:
            path = ckpt.save_checkpoint(self.run_dir, self.step, self.model, self.optimizer,
                                        self.scaler.state_dict() if self.scaler is not None else None,
                                        states, self.train_cfg.keep_last)
        barrier()
        return path

    def _evaluate(self, logger: RunLogger) -> dict[str, Any]:
        if self.evaluate_fn is None:
            return {}
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                metrics = self.evaluate_fn(self.model, self.step)
        finally:
            self.model.train()
        logger.eval(self.step, metrics)
        logger.message(f"step {self.step}: eval\n{metrics_table(metrics)}")
        return metrics

    def run(self) -> dict[str, Any]:
        """Train until ``num_train_steps``; returns the last evaluation's metrics (if any)."""
        cfg = self.train_cfg
        accum = cfg.grad_accum_steps
        accum_scale = 1.0 / accum if cfg.grad_accum_reduction == "mean" else 1.0
        logger = RunLogger(self.run_dir, self.env.is_main, cfg.num_train_steps, self.step, progress=cfg.progress,
                           progress_every=cfg.progress_every)
        metrics: dict[str, Any] = {}
        try:
            if self.step >= cfg.num_train_steps:
                logger.message(f"run already at step {self.step} of {cfg.num_train_steps}")
                return self._evaluate(logger)
            logger.message(f"training from step {self.step} to {cfg.num_train_steps} on {self.env.world_size} "
                           f"process(es), device {self.env.device}, precision {cfg.precision}")
            self.model.train()
            loader = self._loader(self.step * accum, cfg.num_train_steps * accum)
            acc: dict[str, float] = {}
            items, step_items, t0, objective = 0, 0, time.perf_counter(), None
            for micro, (meta, batch) in enumerate(loader, start=self.step * accum):
                last = (micro + 1) % accum == 0
                values = self._micro_step(meta, batch, accum_scale, sync=last)
                for k, v in values.items():
                    acc[k] = acc.get(k, 0.0) + v / accum
                items += int(meta.get("items", 0))
                step_items += int(meta.get("items", 0))
                objective = meta.get("objective")
                if not last:
                    continue
                lr, norm = self._optimizer_step()
                self.step += 1
                if self.step % cfg.log_every == 0 or self.step == cfg.num_train_steps:
                    elapsed = time.perf_counter() - t0
                    record = {"step": self.step, **({"objective": objective} if objective else {}),
                              **acc, "lr": lr, "grad_norm": norm,
                              "items_per_s": items * self.env.world_size / max(elapsed, 1e-9), "time": time.time()}
                    logger.step(record)
                    items, t0 = 0, time.perf_counter()
                logger.advance(items=step_items * self.env.world_size)
                step_items = 0
                acc = {}
                if self.step % cfg.save_every == 0 and self.step < cfg.num_train_steps:
                    self.save()
                if cfg.eval_every and self.step % cfg.eval_every == 0 and self.step < cfg.num_train_steps:
                    metrics = self._evaluate(logger)
            self.save()
            metrics = self._evaluate(logger)
            return metrics
        finally:
            logger.close()
