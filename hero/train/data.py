"""Pre-training batches as a pure function of (seed, step): mixing, sharding, randomness.

``PretrainBatches[micro_step]`` is this rank's batch of that micro-step. Everything random about
it is derived from the run seed and the step, never from state carried between steps:

* **Objective mixing** (reference ``MetaLoader``): each *optimizer* step draws one objective (and
  one corpus, when several are mixed) with probabilities proportional to the configured ratios
  (MLM:MNCE:FOM:VSM = 2:2:1:2 by default), from a generator seeded by (seed, step). All ranks
  compute the same draw, so they always train the same objective; all micro-batches of an
  accumulated step share it.
* **Sharding**: the videos of a corpus are visited in a shuffled order that is re-drawn every
  epoch from (seed, corpus, epoch). Global micro-batch ``m`` covers positions
  ``[m·B·W, (m+1)·B·W)`` of that order; rank ``r`` reads its own slice ``[m·B·W + r·B, … + B)``.
  With several corpora, each corpus draws from its own order at the same positions.
* **Masking**: each clip's random stream (`hero.data.batch.Randomness`) is seeded by (seed,
  micro-step, global position), the batch stream by (seed, micro-step). So a clip is masked the
  same way whichever rank reads it, and a resumed run sees exactly the batches an uninterrupted
  one would.

Being indexable by step, the dataset plugs into a ``DataLoader`` with any number of workers and a
plain ``range`` sampler starting at the resume step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import torch

from hero.data.batch import Clip, Randomness
from hero.errors import HeroError

_MIX, _ORDER, _CLIP, _BATCH = 1, 2, 3, 4


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (NumPy's SeedSequence hashing: well mixed, stable across versions)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class ClipSource(Protocol):
    """What batches are made from: a `hero.data.corpus.Corpus` or anything alike."""

    def clip(self, vid: str) -> Clip: ...


@dataclass
class Mix:
    """Sampling weights of (objective, corpus) pairs; the weight of a pair is the product."""

    objectives: dict[str, float]
    corpora: Sequence[float] = (1.0,)

    def __post_init__(self) -> None:
        bad = {k: v for k, v in self.objectives.items() if v < 0}
        if bad or not any(v > 0 for v in self.objectives.values()):
            raise HeroError(f"mix: objective ratios must be >= 0 and not all 0, got {self.objectives}")
        if any(r < 0 for r in self.corpora) or not any(r > 0 for r in self.corpora):
            raise HeroError(f"data.ratios must be >= 0 and not all 0, got {list(self.corpora)}")
        pairs = [(o, c, w * r) for o, w in self.objectives.items() for c, r in enumerate(self.corpora) if w * r > 0]
        self._pairs = [(o, c) for o, c, _ in pairs]
        weights = np.array([w for _, _, w in pairs], dtype=np.float64)
        self._cum = np.cumsum(weights / weights.sum())

    def draw(self, seed: int, step: int) -> tuple[str, int]:
        """The (objective, corpus index) of optimizer step ``step`` (0-based)."""
        u = np.random.default_rng(derive_seed(seed, _MIX, step)).random()
        i = int(np.searchsorted(self._cum, u, side="right"))
        return self._pairs[min(i, len(self._pairs) - 1)]

    def frequencies(self) -> dict[str, float]:
        out: dict[str, float] = {}
        prev = 0.0
        for (o, _), c in zip(self._pairs, self._cum):
            out[o] = out.get(o, 0.0) + (c - prev)
            prev = c
        return out


class PretrainBatches(torch.utils.data.Dataset):
    """This rank's pre-training micro-batches, indexed by micro-step (see module docstring).

    Args:
        sources: the corpora, each with the list of video ids it contributes.
        objectives: name → objective (with ``collate(clips, Randomness)``).
        mix: objective/corpus sampling weights.
        batch_size: clips per rank and micro-batch (B).
        grad_accum_steps: micro-batches per optimizer step.
    """

    def __init__(self, sources: Sequence[tuple[ClipSource, Sequence[str]]], objectives: dict[str, Any], mix: Mix,
                 batch_size: int, seed: int, rank: int = 0, world_size: int = 1, grad_accum_steps: int = 1) -> None:
        for i, (_, vids) in enumerate(sources):
            if len(vids) == 0:
                raise HeroError(f"corpus #{i} contributes no video to pre-training")
        unknown = sorted(set(mix.objectives) - set(objectives))
        if unknown:
            raise HeroError(f"mix names unknown objective(s) {unknown}; known: {sorted(objectives)}")
        self.sources = [(src, list(vids)) for src, vids in sources]
        self.objectives, self.mix = objectives, mix
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size, self.accum = rank, world_size, grad_accum_steps

    def __len__(self) -> int:
        return 2**62

    @lru_cache(maxsize=8)  # noqa: B019 - a few epochs' orders, per worker process
    def _order(self, corpus: int, epoch: int) -> np.ndarray:
        n = len(self.sources[corpus][1])
        return np.random.default_rng(derive_seed(self.seed, _ORDER, corpus, epoch)).permutation(n)

    def positions(self, micro_step: int) -> list[int]:
        """Global positions (in the corpus's shuffled stream) of this rank's clips."""
        start = micro_step * self.batch_size * self.world_size + self.rank * self.batch_size
        return list(range(start, start + self.batch_size))

    def video_ids(self, corpus: int, positions: Sequence[int]) -> list[str]:
        vids = self.sources[corpus][1]
        n = len(vids)
        return [vids[int(self._order(corpus, p // n)[p % n])] for p in positions]

    def __getitem__(self, micro_step: int) -> tuple[dict, Any]:
        name, corpus = self.mix.draw(self.seed, micro_step // self.accum)
        positions = self.positions(micro_step)
        source = self.sources[corpus][0]
        clips = [source.clip(v) for v in self.video_ids(corpus, positions)]
        rng = Randomness.from_seeds(derive_seed(self.seed, _BATCH, micro_step),
                                    [derive_seed(self.seed, _CLIP, micro_step, p) for p in positions])
        batch = self.objectives[name].collate(clips, rng)
        return {"objective": name, "corpus": corpus, "items": len(clips)}, batch
