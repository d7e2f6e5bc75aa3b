"""A tiny pre-training job on in-memory random clips, run as a subprocess by the engine tests.

    python tests/jobs/tiny_pretrain.py RUN_DIR [--steps 20] [--batch-size 8] ...
    torchrun --nproc-per-node 2 tests/jobs/tiny_pretrain.py RUN_DIR --batch-size 4 ...

It uses the real engine, objectives and step-indexed batches; only the corpus is replaced by random
clips, so the job needs no data on disk.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from hero.config import TextTokens, hero_tiny
from hero.data.synthetic import random_clips
from hero.objectives import OBJECTIVES, HeroForPretraining
from hero.train.config import OptimConfig, TrainConfig
from hero.train.data import Mix, PretrainBatches
from hero.train.distributed import setup, teardown
from hero.train.engine import Engine
from hero.train.pretrain import PretrainStep


class InMemory:
    def __init__(self, clips):
        self.clips = {c.vid: c for c in clips}

    def clip(self, vid):
        return self.clips[vid]


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--save-every", type=int, default=5)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--no-dropout", action="store_true")
    p.add_argument("--train-seed", type=int, default=5,
                   help="train.seed: seeds dropout only (the data, masks and initial weights stay fixed)")
    p.add_argument("--objectives", default="mlm,mfm-nce,fom,vsm")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    env = setup("cpu")
    config = hero_tiny()
    if args.no_dropout:
        config = dataclasses.replace(config, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    tokens = TextTokens(mask_id=config.vocab_size - 1, random_range=(4, config.vocab_size - 1))
    clips = random_clips(48, config.vfeat_dim, min_frames=5, max_frames=14, min_tokens=3, max_tokens=8,
                         token_range=tokens.random_range, seed=3)
    names = args.objectives.split(",")
    objectives = {n: OBJECTIVES[n][1](OBJECTIVES[n][0](), tokens) for n in names}
    if "vsm" in objectives:  # the span loss in every VSM step, so the test covers it
        objectives["vsm"].cfg.drop_svmr_prob = 0.0
        objectives["vsm"].cfg.span_padding = "zeros"  # batch-independent logits (see VsmConfig)
    mix = Mix({n: r for n, r in {"mlm": 2, "mfm-nce": 2, "mffr": 1, "fom": 1, "vsm": 2}.items() if n in names})
    batches = PretrainBatches([(InMemory(clips), [c.vid for c in clips])], objectives, mix, args.batch_size,
                              seed=5, rank=env.rank, world_size=env.world_size, grad_accum_steps=args.accum)
    torch.manual_seed(0)
    model = HeroForPretraining(config)
    train = TrainConfig(num_train_steps=args.steps, batch_size=args.batch_size, grad_accum_steps=args.accum,
                        num_workers=args.workers, save_every=args.save_every, keep_last=2, progress=False,
                        seed=args.train_seed)
    Engine(model, train, OptimConfig(lr=1e-3, warmup_steps=3), args.run_dir, batches, PretrainStep(objectives),
           find_unused_parameters=True, env=env).run()
    teardown()


if __name__ == "__main__":
    main()
