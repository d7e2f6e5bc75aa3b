"""Random clips for benchmarks, smoke runs and tests (no download needed).

`benchmark_clips` follows the batch specification of ``reference_speed.md`` (shared with the
reference measurements): frame counts ``RandomState(seed).randint(40, 101)``, subtitles that walk
the frames 2 or 3 at a time with 8–20 random tokens each, every frame owned by exactly one sentence.
"""

from __future__ import annotations

import numpy as np
import torch

from hero.data.batch import Clip


def random_clips(num_clips: int, feat_dim: int, min_frames: int = 40, max_frames: int = 100,
                 min_tokens: int = 8, max_tokens: int = 20, token_range: tuple[int, int] = (4, 50264),
                 seed: int = 0) -> list[Clip]:
    """Clips with random features and subtitles; each sentence owns the next 2 or 3 frames.

    All randomness comes from ``numpy.random.RandomState(seed)``: frame counts first (one draw of
    ``num_clips``), then, clip by clip, each sentence's span, length and token ids; features last.
    """
    rs = np.random.RandomState(seed)
    counts = rs.randint(min_frames, max_frames + 1, size=num_clips)
    clips = []
    for i, n in enumerate(counts):
        subtitles, sub2frames, f = [], [], 0
        while f < n:
            span = int(rs.randint(2, 4))
            ntok = int(rs.randint(min_tokens, max_tokens + 1))
            subtitles.append(rs.randint(token_range[0], token_range[1], size=ntok).tolist())
            sub2frames.append((len(subtitles) - 1, list(range(f, min(f + span, n)))))
            f += span
        clips.append(Clip(features=torch.empty(0), subtitles=subtitles, sub2frames=sub2frames,
                          vid=f"synthetic_{i:05d}"))
    gen = torch.Generator().manual_seed(seed)
    for clip, n in zip(clips, counts):
        clip.features = torch.randn(int(n), feat_dim, generator=gen).abs_() / feat_dim ** 0.5
    return clips


def benchmark_clips(num_clips: int = 32, feat_dim: int = 4352, seed: int = 0) -> list[Clip]:
    """The shared benchmark batch (``reference_speed.md``): 32 clips of 40–100 frames."""
    return random_clips(num_clips, feat_dim, seed=seed)
