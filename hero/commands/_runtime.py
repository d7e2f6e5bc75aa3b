"""Process settings of the training commands that must be in place before torch starts.

Kept free of heavy imports: it runs at the start of ``run()``, before torch is imported.
"""

from __future__ import annotations

import os

# oneDNN (torch's CPU kernels) keeps one compiled primitive per operation and input shape in an
# LRU cache of 1,024 entries by default. Packed subtitle batches come in many shapes, so over
# thousands of steps the cache keeps filling and the trainer's memory grows by about 7 MiB per
# 1,000 steps (docs/benchmarks.md, "Memory soak"). A smaller bound stops that growth early; its
# cost in speed is measured in the same section. A user's own setting is left alone.
ONEDNN_CACHE_CAPACITY = 128
_ONEDNN_CACHE_VARS = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY")


def bound_onednn_cache(environ: dict[str, str] | None = None) -> None:
    """Set ``ONEDNN_PRIMITIVE_CACHE_CAPACITY`` unless the user set it (or its older DNNL_ name).

    oneDNN reads the variable once, when its cache is first used, so this must run before the
    first CPU kernel; DataLoader workers and ``torchrun`` ranks inherit it with the environment.
    """
    env = os.environ if environ is None else environ
    if not any(name in env for name in _ONEDNN_CACHE_VARS):
        env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(ONEDNN_CACHE_CAPACITY)
