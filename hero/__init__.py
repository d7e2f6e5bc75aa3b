"""hero: HERO (Li et al., EMNLP 2020), hierarchical video+language pre-training, in PyTorch 2."""

from hero.config import PRESETS, HeroConfig, TextTokens, hero_base, hero_tiny
from hero.model import Hero, VideoInputs

__version__ = "0.1.0"

__all__ = ["HeroConfig", "TextTokens", "PRESETS", "hero_base", "hero_tiny", "Hero", "VideoInputs", "__version__"]
