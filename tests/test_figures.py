"""Figures: the attention maps are the model's own attention; the PNGs get written."""

from __future__ import annotations

import dataclasses

import torch

from hero.config import HeroConfig
from hero.data.batch import clip_groups, collate_video
from hero.data.synthetic import random_clips
from hero.model import Hero
from hero.viz.attention import cross_modal_attention, group_rows, plot_attention


def _video(seed: int = 0):
    clips = random_clips(3, 16, min_frames=5, max_frames=9, min_tokens=2, max_tokens=5, token_range=(4, 1000),
                         seed=seed)
    return collate_video([c.features for c in clips], [clip_groups(c, 2) for c in clips])


def test_recomputed_attention_reproduces_every_layer_output():
    torch.manual_seed(0)
    cfg = dataclasses.replace(HeroConfig.from_name("hero-tiny"), hidden_dropout_prob=0.0,
                              attention_probs_dropout_prob=0.0)
    hero = Hero(cfg).eval()
    video = _video()
    group = 4
    maps = cross_modal_attention(hero, video, group)
    assert len(maps) == cfg.num_cross_layers
    rows, nf = group_rows(video, group)
    assert nf == int((video.cross.frm_group == group).sum())
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hooks = [layer.attention.self.register_forward_hook(lambda m, a, o: seen.append((a[0], o)))
             for layer in hero.f_encoder.encoder.layer]
    with torch.no_grad():
        hero.cross_modal(video)
    for h in hooks:
        h.remove()
    for layer, probs, (x, context) in zip(hero.f_encoder.encoder.layer, maps, seen):
        sa = layer.attention.self
        assert probs.shape == (cfg.num_attention_heads, len(rows), len(rows))
        torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:2]))
        v = torch.nn.functional.linear(x[rows], sa.value.weight, sa.value.bias)
        v = v.view(len(rows), cfg.num_attention_heads, -1).transpose(0, 1)
        expected = (probs @ v).transpose(0, 1).reshape(len(rows), -1)
        torch.testing.assert_close(expected, context[rows], rtol=1e-4, atol=1e-5)


def test_attention_png_is_written(tmp_path):
    torch.manual_seed(0)
    hero = Hero(HeroConfig.from_name("hero-tiny")).eval()
    video = _video(1)
    maps = cross_modal_attention(hero, video, 0)
    rows, nf = group_rows(video, 0)
    out = plot_attention(maps, [str(i) for i in range(len(rows))], nf, tmp_path / "a.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))


def test_save_figure_writes_atomically_and_always_closes_the_figure(tmp_path):
    """The one figure writer of hero.viz: a PNG in place, no temporary left, the figure closed, and
    on a failed write the previous file untouched (also closed then)."""
    import pytest

    from hero.viz import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = save_figure(fig, tmp_path / "f" / "x.png", dpi=50)
    assert out == tmp_path / "f" / "x.png" and out.read_bytes()[:4] == b"\x89PNG"
    assert not plt.fignum_exists(fig.number) and sorted(p.name for p in out.parent.iterdir()) == ["x.png"]
    before = out.read_bytes()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    with pytest.raises(ValueError):
        save_figure(fig, out, dpi=-5)  # matplotlib refuses a negative dpi while writing
    assert not plt.fignum_exists(fig.number)
    assert out.read_bytes() == before and sorted(p.name for p in out.parent.iterdir()) == ["x.png"]


def test_figure_command_names_what_is_missing_or_wrong(tmp_path, capsys):
    from hero.cli import main

    assert main(["figure", "moments", "--out", str(tmp_path / "m.png")]) == 2
    assert "needs --model, --corpus" in capsys.readouterr().err
    assert main(["figure", "curves", "--out", str(tmp_path / "c.png")]) == 2
    assert "needs --run" in capsys.readouterr().err
