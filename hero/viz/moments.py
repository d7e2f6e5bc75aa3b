"""VSM moment predictions on one clip (in the spirit of paper Fig. 2).

One panel per query: the start and end probabilities the retrieval head gives every frame, the
subtitle sentences on the same time axis, the ground-truth moment and the best predicted moment
(the span maximising ``P_st·P_ed`` under the task's length limits, exactly as `hero predict`
ranks single-video moments).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hero.data.protocol import CorpusLike
from hero.errors import HeroError
from hero.viz import pyplot, save_figure


@torch.no_grad()
def query_moment(model: Any, corpus: CorpusLike, record: dict) -> dict[str, Any]:
    """Span probabilities and the best moment of one retrieval record on its own video.

    Returns:
        ``{"st_prob": (L,), "ed_prob": (L,), "pred": (st_s, ed_s), "score": float, "interval": Δ}``.
    """
    from hero.tasks.retrieval import encode_corpus, encode_queries, rank_moments, span_probabilities_on

    cfg = model.task_config
    enc = encode_corpus(model, corpus, [record["vid"]], batch_size=1, cfg=cfg)
    q = encode_queries(model, corpus, [record["input_ids"]], cfg)
    st, ed = span_probabilities_on(model, q, enc, torch.zeros(1, 1, dtype=torch.long), cfg)  # the curves
    n = int(enc.mask[0].sum())
    interval = float(corpus.frame_interval)
    # the best moment as `hero predict` ranks single-video moments (SVMR)
    ranked = rank_moments(model, corpus, [record["input_ids"]], [record.get("qid")], enc, cfg, interval,
                          svmr_rows=torch.zeros(1, dtype=torch.long), tasks=("SVMR",), keep=1)
    _, s, e, score = ranked["SVMR"][0]["predictions"][0]
    return {"st_prob": st[0, 0, :n], "ed_prob": ed[0, 0, :n], "pred": (float(s), float(e)),
            "score": float(score), "interval": interval}


def moments_figure(model: Any, corpus: CorpusLike, out: str | Path, dataset: str = "tvr", split: str = "val",
                   qid: Any = None, max_queries: int = 3) -> Path:
    """Draw the moment predictions of a retrieval model for up to ``max_queries`` queries of one video.

    ``qid`` picks the query (and its video); by default the first query with a ground-truth moment.
    """
    plt = pyplot()

    if not (hasattr(model, "vsm_head") and hasattr(model, "task_config")):
        raise HeroError(f"the moments figure needs a fine-tuned retrieval model (HeroForVcmr), "
                        f"not {type(model).__name__}")
    records = [r for r in corpus.annotations(dataset, split) if r.get("ts") is not None]
    if not records:
        raise HeroError(f"{dataset}/{split} has no query with a moment")
    if qid is not None:
        chosen = [r for r in records if str(r["qid"]) == str(qid)]
        if not chosen:
            raise HeroError(f"{dataset}/{split}: no query {qid!r} with a moment")
        first = chosen[0]
    else:
        first = records[0]
    same_video = [r for r in records if r["vid"] == first["vid"] and r is not first]
    queries = [first] + same_video[: max_queries - 1]
    subs = corpus.subtitles(first["vid"]) if hasattr(corpus, "subtitles") else []
    model = model.eval()
    fig, axes = plt.subplots(len(queries) + 1, 1, figsize=(11, 1.6 + 1.9 * len(queries)), sharex=True,
                             gridspec_kw={"height_ratios": [1.2] + [2] * len(queries)})
    ax = axes[0]
    pred0 = query_moment(model, corpus, first)
    interval, n = pred0["interval"], len(pred0["st_prob"])
    duration = n * interval
    for i, sub in enumerate(subs):
        start, end = float(sub.start), float(sub.end)
        ax.barh(i % 3, end - start, left=start, height=0.8, color="#cfd8e3", edgecolor="#7a8ca3")
        text = sub.text if len(sub.text) < 48 else sub.text[:45] + "..."
        ax.text(start + 0.1, i % 3, text, va="center", fontsize=6, clip_on=True)
    ax.set_yticks([])
    ax.set_ylabel("subtitles", fontsize=8)
    ax.set_xlim(0, duration)
    ax.set_title(f"{first['vid']}: {n} frames of {interval:g} s", fontsize=10)
    centers = [(f + 0.5) * interval for f in range(n)]
    for ax, rec in zip(axes[1:], queries):
        pred = pred0 if rec is first else query_moment(model, corpus, rec)
        gt = rec["ts"][0] if isinstance(rec["ts"][0], list) else rec["ts"]
        ax.axvspan(gt[0], gt[1], color="#2ca02c", alpha=0.18, label="ground truth")
        ax.axvspan(*pred["pred"], ymin=0.0, ymax=0.12, color="#d62728", alpha=0.8, label="prediction")
        ax.plot(centers, pred["st_prob"].numpy(), "-o", ms=2.5, color="#1f77b4", label="P(start)")
        ax.plot(centers, pred["ed_prob"].numpy(), "-o", ms=2.5, color="#ff7f0e", label="P(end)")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("probability", fontsize=8)
        kind = f" [{rec['type']}]" if rec.get("type") else ""
        ax.set_title(f"“{rec.get('desc', '')}”{kind}: truth {gt[0]:g}–{gt[1]:g} s, "
                     f"predicted {pred['pred'][0]:g}–{pred['pred'][1]:g} s", fontsize=9)
        ax.legend(fontsize=7, loc="upper right", ncol=4)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    return save_figure(fig, out, dpi=130)
