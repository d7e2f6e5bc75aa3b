"""Rebuild the outputs of a reference parity fixture (``official_hero_tiny`` format) with our code.

`our_outputs(fixture, model)` rebuilds every batch from ``fixture['inputs']`` with our collates
(recorded random choices passed in explicitly), runs our model, and returns tensors laid out like
``fixture['outputs']``. `compare(fixture, ours)` applies the fixture README's "how to check" table
and returns the list of mismatches (empty = parity).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hero.config import HeroConfig, TextTokens
from hero.data.batch import Clip, clip_groups, collate_video, pad_token_rows
from hero.eval.moments import length_mask, moment_scores, span_probabilities, video_scores
from hero.losses import l2_regression_loss, nce_loss
from hero.objectives import FomObjective, HeroForPretraining, MfmConfig, MfmObjective, MlmObjective
from hero.objectives.vsm import VsmBatch, VsmConfig, VsmObjective

REPO = Path(__file__).resolve().parents[1]
PUBLIC_FIXTURE = REPO / "tests" / "fixtures" / "official_hero_tiny"


def parity_fixture_dirs() -> list[Path]:
    """The public fixture plus every directory named in ``HERO_PARITY_FIXTURES`` (':'-separated)."""
    dirs = [PUBLIC_FIXTURE]
    extra = os.environ.get("HERO_PARITY_FIXTURES", "")
    dirs += [Path(p) for p in extra.split(":") if p.strip()]
    return dirs


def load_fixture(directory: Path) -> dict:
    path = Path(directory) / "fixture.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no fixture.pt (HERO_PARITY_FIXTURES entry?)")
    return torch.load(path, weights_only=True)


def fixture_config(fx: dict) -> HeroConfig:
    c = fx["config"]
    return HeroConfig(
        hidden_size=c["hidden_size"], num_attention_heads=c["num_attention_heads"],
        intermediate_size=c["intermediate_size"], num_cross_layers=c["f_num_layers"],
        num_temporal_layers=c["c_num_layers"], vocab_size=c["vocab_size"],
        vocab_size_padded=c["vocab_size_padded"], max_position_embeddings=c["max_position_embeddings"],
        type_vocab_size=c.get("type_vocab_size_model", 2), vfeat_dim=c["vfeat_dim"],
        max_frm_seq_len=c["max_frm_seq_len"], fom_num_classes=c["fom_num_classes"],
        initializer_range=c.get("initializer_range", 0.02),
        layer_norm_eps_block=c.get("ln_eps_transformer_blocks", 1e-12),
        layer_norm_eps=c.get("ln_eps_other", 1e-5),
        span_kernel_size=c.get("conv_kernel_size", 5),
    )


def fixture_tokens(fx: dict) -> TextTokens:
    t = fx["config"]["special_tokens"]
    return TextTokens(cls_id=t["CLS"], pad_id=t["PAD"], sep_id=t["SEP"], unk_id=t["UNK"],
                      mask_id=t["MASK"], random_range=tuple(t["v_range"]))


def fixture_clips(fx: dict) -> list[Clip]:
    clips = []
    for v in fx["inputs"]["videos"]:
        loaded = v["loaded"]
        n = int(loaded["n_frames"])
        sub2frames = [(int(s), [int(f) for f in frames]) for s, frames in loaded["sub2frames"]]
        subtitles = [list(map(int, s)) for s in loaded.get("subtitles") or []]
        needed = max((s for s, _ in sub2frames), default=-1) + 1
        subtitles += [[] for _ in range(needed - len(subtitles))]  # pseudo-subtitles: empty text
        clips.append(Clip(features=v["features"][:n].float(), subtitles=subtitles,
                          sub2frames=sub2frames, vid=v["name"]))
    return clips


def reference_layout(packed: torch.Tensor, cross, num_slots: int) -> torch.Tensor:
    """Lay packed cross-modal rows out as the reference ``(S, T, D)``: frames at slots ``0..n_f-1``,
    text from ``max(n_f, 1)`` (a frameless group has one masked dummy frame)."""
    g = cross.num_groups
    nf = torch.bincount(cross.frm_group, minlength=g)
    out = packed.new_zeros(g, num_slots, packed.shape[-1])
    out[cross.frm_group, cross.frm_pos] = packed[: cross.num_frames]
    out[cross.txt_group, nf.clamp(min=1)[cross.txt_group] + cross.txt_pos] = packed[cross.num_frames:]
    return out


def build_model(fx: dict, tmp_dir: Path) -> HeroForPretraining:
    """Load the fixture's state dict through the reference-checkpoint loader (from a file)."""
    path = Path(tmp_dir) / "reference_checkpoint.pt"
    torch.save({**fx["state_dict"], "vocab_padded": True}, path)
    model = HeroForPretraining.from_reference(path, config=fixture_config(fx))
    return model.eval()


@torch.no_grad()
def our_outputs(fx: dict, model: HeroForPretraining) -> dict[str, dict[str, torch.Tensor]]:
    tokens = fixture_tokens(fx)
    clips = fixture_clips(fx)
    hero = model.hero
    inputs, outputs = fx["inputs"], fx["outputs"]
    out: dict[str, dict[str, torch.Tensor]] = {}

    # -- representation ------------------------------------------------------------------------
    groups = [clip_groups(c, tokens.sep_id) for c in clips]
    video_all = collate_video([c.features for c in clips], groups, drop_frameless=False)
    video = collate_video([c.features for c in clips], groups)
    t_ref = outputs["repr"]["f_out"].shape[1]
    temporal, inter = hero.encode_video(video, return_intermediates=True)
    emb_all = hero.f_encoder.embed(video_all.frame_feats.flatten(0, 1), video_all.cross)
    out["repr"] = {
        "f_embedding": reference_layout(emb_all, video_all.cross, t_ref),
        "f_out": reference_layout(hero.cross_modal(video_all), video_all.cross, t_ref),
        "collected": inter["collected"], "frame_transform": inter["frame_transform"],
        "fused": inter["fused"], "c_embedding": hero.c_encoder.embeddings(inter["fused"]),
        "temporal": temporal,
    }

    # -- queries and VSM on external queries (TVR fine-tuning layout) --------------------------
    queries = inputs["queries"]
    q_ids, q_mask = pad_token_rows([[tokens.cls_id, *q["tokens"]] for q in queries], tokens.pad_id)
    q, q_inter = hero.encode_query(q_ids, q_mask, return_intermediates=True)
    pos = torch.arange(q_ids.shape[1]).expand_as(q_ids)
    out["query"] = {"txt_embedding": hero.f_encoder.embeddings(q_ids, pos), **q_inter, "q": q}
    loss_cfg = fx["config"]["loss"]
    vsm = VsmObjective(VsmConfig(lw_st_ed=loss_cfg["lw_st_ed"], lw_neg_ctx=loss_cfg["lw_neg_ctx"],
                                 lw_neg_q=loss_cfg["lw_neg_q"], margin=loss_cfg["margin"],
                                 ranking_loss=loss_cfg["ranking_loss_type"]), tokens)
    vcmr_batch = VsmBatch(video, q_ids, q_mask, torch.tensor([x["target"] for x in queries]),
                          torch.tensor([x["video_index"] for x in queries]), use_span=True)
    out["vsm"] = _vsm_outputs(vsm, model, vcmr_batch)

    # -- VCMR inference scores -------------------------------------------------------------------
    vc = inputs["vcmr"]
    st_prob, ed_prob = span_probabilities(out["vsm"]["st_logits_all"], out["vsm"]["ed_logits_all"])
    q2v = video_scores(out["vsm"]["scores"], vc["q2c_alpha"])
    mask = length_mask(st_prob.shape[-1], vc["min_pred_l"], vc["max_pred_l"])
    rank_scores, rank = q2v.sort(dim=1, descending=True)
    own = vcmr_batch.q_vidx
    rows = torch.arange(len(own))
    out["vcmr_infer"] = {
        "st_prob": st_prob, "ed_prob": ed_prob, "q2video_scores": q2v, "video_rank": rank,
        "video_rank_scores": rank_scores, "span_mask": mask,
        "st_ed_scores": moment_scores(st_prob, ed_prob, mask, q2v),
        "svmr_scores": moment_scores(st_prob[rows, own], ed_prob[rows, own], mask),
    }

    # -- VSM pre-training batch --------------------------------------------------------------------
    vsm_pre = vsm.collate(clips, query_sub_indices=inputs["vsm_pretrain"]["query_sub_indices"], use_span=True)
    out["vsm_pretrain"] = _vsm_outputs(vsm, model, vsm_pre)

    # -- MLM ---------------------------------------------------------------------------------------
    mlm_in = inputs["mlm"]
    mlm_clips = [clips[i] for i in mlm_in["videos"]]
    masked: dict[int, list] = {i: [] for i in mlm_in["videos"]}
    for row in mlm_in["rows"]:
        ids = list(row["input_ids"])
        labels = [-1] * (len(ids) - 1)
        for p, lab in zip(row["masked_positions"], row["labels"]):
            labels[p - 1] = lab
        masked[row["video_index"]].append((ids[1:], labels))
    mlm = MlmObjective(tokens=tokens)
    mlm_batch = mlm.collate(mlm_clips, masked=[masked[i] for i in mlm_in["videos"]])
    seq = hero.cross_modal(mlm_batch.video)
    logits = mlm.predict(model, mlm_batch)
    per_token = torch.nn.functional.cross_entropy(logits, mlm_batch.labels, reduction="none")
    out["mlm"] = {
        "seq_out": reference_layout(seq, mlm_batch.video.cross, outputs["mlm"]["seq_out"].shape[1]),
        "logits": logits, "labels": mlm_batch.labels, "loss_per_token": per_token,
        "loss": mlm(model, mlm_batch)["loss"],
    }

    # -- MFM (both variants) -------------------------------------------------------------------------
    mfm = MfmObjective(MfmConfig(loss="nce", nce_negatives="all_unmasked"), tokens)
    mfm_batch = mfm.collate(clips, frame_masks=inputs["mfm"]["frame_masks"])
    mfm_video_all = collate_video([c.features for c in clips], groups, drop_frameless=False)
    mfm_video_all.frame_feats, mfm_video_all.mfm_mask = mfm_batch.video.frame_feats, mfm_batch.video.mfm_mask
    pred = mfm.predict(model, mfm_batch)
    _, m_inter = hero.encode_video(mfm_batch.video, return_intermediates=True)
    per_frame, nce_logits = nce_loss(pred["pred"], mfm_batch.targets, pred["neg_pred"])
    mffr = l2_regression_loss(pred["pred"], mfm_batch.targets)
    neg_mask = ~mfm_batch.video.mfm_mask
    out["mfm"] = {
        "f_out": reference_layout(hero.cross_modal(mfm_video_all), mfm_video_all.cross, t_ref),
        "fused": m_inter["fused"], "temporal": pred["frames"], "pred": pred["pred"],
        "neg_pred": pred["neg_pred"], "neg_positions": neg_mask.nonzero(),
        "feat_targets": mfm_batch.targets, "nce_logits": nce_logits,
        "nce_loss_per_frame": per_frame, "nce_loss": mfm(model, mfm_batch)["loss"],
        "mffr_loss_per_frame": mffr,
        "mffr_loss": MfmObjective(MfmConfig(loss="mffr"), tokens)(model, mfm_batch)["loss"],
    }

    # -- FOM -----------------------------------------------------------------------------------------
    fom = FomObjective(tokens=tokens)
    fo = inputs["fom"]
    fom_batch = fom.collate(clips, reorders=list(zip(fo["shuffled_orders"], fo["targets"])))
    shuffled = fom.shuffle(hero.fuse(fom_batch.video), fom_batch.orders)
    temporal_shuffled = hero.temporal(shuffled, fom_batch.video.frame_mask)
    out["fom"] = {
        "shuffled_input": shuffled, "temporal_shuffled": temporal_shuffled,
        "logits": model.fom_head(temporal_shuffled), "targets": fom_batch.targets,
        "loss": fom(model, fom_batch)["loss"],
    }
    return out


def _vsm_outputs(vsm: VsmObjective, model, batch: VsmBatch) -> dict[str, torch.Tensor]:
    cfg = vsm.cfg
    pred = vsm.predict(model, batch)
    st_all, ed_all = model.vsm_head.span_logits(pred["q"], pred["frames"], batch.video.frame_mask)
    train = vsm.losses(pred, batch)
    ev = vsm.losses(pred, batch, reduction="none")
    return {
        "scores": pred["scores"], "st_logits_all": st_all, "ed_logits_all": ed_all,
        "st_logits": pred["st_logits"], "ed_logits": pred["ed_logits"],
        "loss_st_ed": train["st_ed_loss"], "loss_neg_ctx": train["neg_ctx_loss"],
        "loss_neg_q": train["neg_q_loss"], "loss": train["loss"],
        "loss_st_ed_unweighted": train["st_ed_loss"] / cfg.lw_st_ed,
        "loss_neg_ctx_unweighted": train["neg_ctx_loss"] / cfg.lw_neg_ctx,
        "loss_neg_q_unweighted": train["neg_q_loss"] / cfg.lw_neg_q,
        "ce_st": train["ce_st"], "ce_ed": train["ce_ed"],
        "hinge_neg_ctx": train["hinge_neg_ctx"], "hinge_neg_q": train["hinge_neg_q"],
        "eval_loss_st_ed": cfg.lw_st_ed * (ev["ce_st"].sum() + ev["ce_ed"].sum()),
        "eval_loss_neg_ctx": ev["neg_ctx_loss"], "eval_loss_neg_q": ev["neg_q_loss"],
        "frame_embeddings": pred["frames"], "q": pred["q"],
    }


# (section, key) -> (atol, rtol, which positions). "all" compares everything; the others name a
# validity mask: "f" cross-modal valid slots, "mlm" MLM valid slots, "q" valid query tokens.
_DEFAULT = (1e-5, 1e-5, "all")
TOLERANCES = {
    ("repr", "f_embedding"): (1e-5, 1e-5, "f"),
    ("repr", "f_out"): (1e-5, 1e-5, "f"),
    ("mfm", "f_out"): (1e-5, 1e-5, "f"),
    ("mlm", "seq_out"): (1e-5, 1e-5, "mlm"),
    **{("query", k): (1e-5, 1e-5, "q") for k in ("txt_embedding", "txt_out", "input_proj", "pos_embed", "self_attn")},
    **{("vcmr_infer", k): (1e-6, 1e-4, "all")
       for k in ("q2video_scores", "video_rank_scores", "st_ed_scores", "svmr_scores")},
    ("mfm", "nce_logits"): (5e-5, 1e-5, "all"),
    ("mfm", "nce_loss_per_frame"): (5e-5, 1e-5, "all"),
    ("mfm", "nce_loss"): (5e-5, 1e-5, "all"),
}
EXACT = {("vcmr_infer", "video_rank"), ("mlm", "labels"), ("mfm", "neg_positions"), ("fom", "targets")}
SKIP = {("repr", "c_attn_masks"), ("repr", "f_attn_masks")}


def compare(fx: dict, ours: dict) -> list[str]:
    """Mismatches between our outputs and the fixture's (empty list = parity)."""
    masks = {
        "f": fx["outputs"]["repr"]["f_attn_masks"].bool(),
        "mlm": fx["collated"]["mlm"]["attn_masks"].bool(),
        "q": fx["collated"]["vcmr"]["query_attn_masks"].bool(),
    }
    problems = []
    for section, ref_block in fx["outputs"].items():
        for key, ref in ref_block.items():
            if (section, key) in SKIP or not isinstance(ref, torch.Tensor):
                continue
            if section not in ours or key not in ours[section]:
                problems.append(f"{section}.{key}: not produced")
                continue
            mine = ours[section][key]
            if tuple(mine.shape) != tuple(ref.shape):
                problems.append(f"{section}.{key}: shape {tuple(mine.shape)} != reference {tuple(ref.shape)}")
                continue
            if (section, key) in EXACT:
                if not torch.equal(mine.long(), ref.long()):
                    problems.append(f"{section}.{key}: differs (exact comparison)")
                continue
            atol, rtol, where = TOLERANCES.get((section, key), _DEFAULT)
            a, b = mine.double(), ref.double()
            if where != "all":
                sel = masks[where]
                a, b = a[sel], b[sel]
            err = (a - b).abs() - (atol + rtol * b.abs())
            if err.numel() and err.max() > 0:
                worst = (a - b).abs().max().item()
                problems.append(f"{section}.{key}: max |diff| {worst:.3g} exceeds atol {atol} + rtol {rtol}")
    return problems
