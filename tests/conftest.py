"""Shared fixtures: a tiny config, its token ids, and small synthetic clips."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from hero.config import TextTokens, hero_tiny  # noqa: E402
from hero.data.synthetic import random_clips  # noqa: E402


@pytest.fixture
def tiny_config():
    return hero_tiny()


@pytest.fixture
def tiny_tokens(tiny_config):
    return TextTokens(mask_id=tiny_config.vocab_size - 1, random_range=(4, tiny_config.vocab_size - 1))


def make_clips(config, n=4, seed=0, min_frames=5, max_frames=12, min_tokens=2, max_tokens=6):
    return random_clips(n, config.vfeat_dim, min_frames=min_frames, max_frames=max_frames,
                        min_tokens=min_tokens, max_tokens=max_tokens,
                        token_range=(4, config.vocab_size - 1), seed=seed)


@pytest.fixture
def tiny_clips(tiny_config):
    return make_clips(tiny_config)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
