"""hero: HERO (Li et al., EMNLP 2020), hierarchical video+language pre-training, in PyTorch 2.

The public names are imported on first use (module ``__getattr__``), so ``import hero`` and the
command line's ``hero --help`` do not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "HeroConfig": "hero.config",
    "TextTokens": "hero.config",
    "PRESETS": "hero.config",
    "hero_base": "hero.config",
    "hero_tiny": "hero.config",
    "Hero": "hero.model",
    "VideoInputs": "hero.model",
}

__all__ = ["HeroConfig", "TextTokens", "PRESETS", "hero_base", "hero_tiny", "Hero", "VideoInputs", "__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from hero.config import PRESETS, HeroConfig, TextTokens, hero_base, hero_tiny
    from hero.model import Hero, VideoInputs


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hero' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
