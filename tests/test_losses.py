"""Loss functions against brute-force implementations on hand-made tensors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hero.losses import (
    hard_negative_weights,
    l2_regression_loss,
    nce_loss,
    ranking_terms,
    span_cross_entropy,
    vsm_ranking_losses,
)


def brute_force_ranking(scores, q_vidx, margin, kind="hinge", pool=None, hard_w=10.0):
    """Loops over every (positive, negative) pair, as written in the notes (§2.2)."""
    q, v = scores.shape
    ctx, qq = [], []
    for i in range(q):
        pos = scores[i, q_vidx[i]]
        negs = sorted([scores[i, j].item() for j in range(v) if j != q_vidx[i]], reverse=True)
        ctx.append(_mean_terms(pos, negs, margin, kind, pool, hard_w))
        negs_q = sorted([scores[k, q_vidx[i]].item() for k in range(q) if q_vidx[k] != q_vidx[i]], reverse=True)
        qq.append(_mean_terms(pos, negs_q, margin, kind, pool, hard_w))
    return torch.tensor(ctx), torch.tensor(qq)


def _mean_terms(pos, negs, margin, kind, pool, hard_w):
    terms = []
    for rank, n in enumerate(negs):
        t = max(0.0, margin + n - pos.item()) if kind == "hinge" else float(torch.log1p(torch.exp(n - pos)))
        w = 1.0 if pool is None else (hard_w if rank < pool else 0.1)
        terms.append(w * t)
    return sum(terms) / max(len(terms), 1)


@pytest.mark.parametrize("kind", ["hinge", "lse"])
@pytest.mark.parametrize("q_vidx", [[0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 3, 3, 2], [0, 1, 2]])
@pytest.mark.parametrize("pool", [None, 2])
def test_vsm_ranking_matches_brute_force(kind, q_vidx, pool):
    gen = torch.Generator().manual_seed(len(q_vidx))
    v = max(q_vidx) + 1
    scores = torch.rand(len(q_vidx), v, generator=gen, dtype=torch.float64) * 2 - 1
    q_vidx = torch.tensor(q_vidx)
    out = vsm_ranking_losses(scores, q_vidx, margin=0.1, kind=kind, hard_pool_size=pool)
    ctx, qq = brute_force_ranking(scores, q_vidx, 0.1, kind, pool)
    torch.testing.assert_close(out["neg_ctx"], ctx.double())
    torch.testing.assert_close(out["neg_q"], qq.double())


def test_vsm_ranking_sorted_terms_and_gradient():
    scores = torch.tensor([[0.9, 0.5, 0.95], [0.2, 0.8, 0.1]], requires_grad=True)
    out = vsm_ranking_losses(scores, torch.tensor([0, 1]), margin=0.1)
    # query 0: negatives 0.95, 0.5 (sorted) -> hinge 0.15, 0
    torch.testing.assert_close(out["hinge_neg_ctx"][0], torch.tensor([0.15, 0.0]))
    (out["neg_ctx"].mean() + out["neg_q"].mean()).backward()
    assert torch.isfinite(scores.grad).all()


def test_hard_negative_weights():
    assert hard_negative_weights(5, 2, 10.0).tolist() == pytest.approx([10, 10, 0.1, 0.1, 0.1])


def test_ranking_terms_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown ranking loss"):
        ranking_terms(torch.zeros(1), torch.zeros(1, 1), 0.1, "cosine")


def test_nce_loss_against_manual():
    gen = torch.Generator().manual_seed(0)
    pred, tgt, neg = (torch.randn(n, 6, generator=gen) for n in (3, 3, 5))
    per_frame, logits = nce_loss(pred, tgt, neg, temperature=0.5)
    manual = torch.cat([pred @ tgt.t(), pred @ neg.t()], 1) / 0.5
    torch.testing.assert_close(logits, manual)
    torch.testing.assert_close(per_frame, -manual.log_softmax(1).diagonal())


def test_l2_regression_is_norm_not_square():
    pred = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert l2_regression_loss(pred, torch.zeros(2, 2)).tolist() == [5.0, 0.0]


def test_span_cross_entropy_ignores_missing_targets():
    st = torch.randn(3, 5)
    ed = torch.randn(3, 5)
    targets = torch.tensor([[0, 2], [-1, -1], [4, 4]])
    ce_st, ce_ed = span_cross_entropy(st, ed, targets)
    assert ce_st[1] == 0 and ce_ed[1] == 0
    torch.testing.assert_close(ce_st[0], F.cross_entropy(st[:1], targets[:1, 0]))
