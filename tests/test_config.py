"""Config dataclasses and presets."""

from __future__ import annotations

import pytest
from reference_parity import PUBLIC_FIXTURE, load_fixture

from hero.config import PRESETS, HeroConfig, TextTokens, hero_base


def test_presets_build_and_round_trip():
    for name, make in PRESETS.items():
        config = make()
        assert HeroConfig.from_dict(config.to_dict()) == config, name
        assert HeroConfig.from_name(name) == config


def test_base_preset_is_the_paper_model():
    c = hero_base()
    assert (c.num_cross_layers, c.num_temporal_layers, c.hidden_size, c.num_attention_heads) == (6, 3, 768, 12)
    assert (c.vfeat_dim, c.max_frm_seq_len, c.vocab_size, c.vocab_size_padded) == (4352, 100, 50265, 50272)
    assert (c.layer_norm_eps_block, c.layer_norm_eps) == (1e-12, 1e-5)


def test_unknown_keys_and_bad_values_are_errors():
    with pytest.raises(ValueError, match=r"HeroConfig: unknown key\(s\) 'hiden_size'"):
        HeroConfig.from_dict({"hiden_size": 3})
    with pytest.raises(ValueError, match="divisible"):
        HeroConfig(hidden_size=10, num_attention_heads=3)
    with pytest.raises(ValueError, match="vocab_size"):
        HeroConfig(vocab_size=50300)
    with pytest.raises(ValueError, match="unknown preset"):
        HeroConfig.from_name("hero-huge")
    with pytest.raises(ValueError, match="random_range"):
        TextTokens(random_range=(5, 5))


def test_from_reference_json():
    fx = load_fixture(PUBLIC_FIXTURE)
    c = fx["config"]
    config = HeroConfig.from_reference_json(c["model_json"], vfeat_dim=c["vfeat_dim"],
                                            max_frm_seq_len=c["max_frm_seq_len"])
    assert config.vocab_size == c["vocab_size"] and config.vocab_size_padded == c["vocab_size_padded"]
    assert config.num_cross_layers == c["f_num_layers"] and config.num_temporal_layers == c["c_num_layers"]
    assert config.type_vocab_size == 2
    with pytest.raises(ValueError, match="c_config"):
        HeroConfig.from_reference_json({"f_config": {}})


CONFIG_DIR = __import__("pathlib").Path(__file__).resolve().parent.parent / "configs"


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*/*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_loads_with_its_task(path):
    from hero.tasks import get_task
    from hero.train.config import load_config
    from hero.train.finetune import FinetuneConfig, task_settings
    from hero.train.pretrain import PretrainConfig

    if path.parent.name == "pretrain":
        config = load_config(PretrainConfig, path)
        assert config.mix and all(config.objective_config(n) is not None for n in config.mix)
    else:
        config = load_config(FinetuneConfig, path)
        task = get_task(config.task)
        assert config.dataset in task.datasets
        task_settings(task, config.task_config)  # unknown task settings are errors
    HeroConfig.from_name(config.model.preset, **config.model.overrides)
