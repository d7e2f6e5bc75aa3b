"""The reference implementation's state-dict layout (notes §1.7 and appendix), written from a config.

Used to write reference-format checkpoints in tests without the reference code: every key, in the
reference's order, with its shape.
"""

from __future__ import annotations

import torch

from hero.config import HeroConfig


def _layer(prefix: str, d: int, ffn: int) -> list[tuple[str, tuple[int, ...]]]:
    out = []
    for name in ("query", "key", "value"):
        out += [(f"{prefix}attention.self.{name}.weight", (d, d)), (f"{prefix}attention.self.{name}.bias", (d,))]
    out += [(f"{prefix}attention.output.dense.weight", (d, d)), (f"{prefix}attention.output.dense.bias", (d,)),
            (f"{prefix}attention.output.LayerNorm.weight", (d,)), (f"{prefix}attention.output.LayerNorm.bias", (d,)),
            (f"{prefix}intermediate.dense.weight", (ffn, d)), (f"{prefix}intermediate.dense.bias", (ffn,)),
            (f"{prefix}output.dense.weight", (d, ffn)), (f"{prefix}output.dense.bias", (d,)),
            (f"{prefix}output.LayerNorm.weight", (d,)), (f"{prefix}output.LayerNorm.bias", (d,))]
    return out


def reference_layout(c: HeroConfig) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` of a reference ``HeroForPretraining`` state dict for config ``c``."""
    d, ffn, vf, vp = c.hidden_size, c.intermediate_size, c.vfeat_dim, c.vocab_size_padded
    f, v = "v_encoder.f_encoder.", "v_encoder."
    keys = [(f"{v}pad", (8, d)), (f"{f}pad", (8, d))]
    for i in range(c.num_cross_layers):
        keys += _layer(f"{f}encoder.layer.{i}.", d, ffn)
    keys += [(f"{f}embeddings.word_embeddings.weight", (vp, d)),
             (f"{f}embeddings.position_embeddings.weight", (c.max_position_embeddings, d)),
             (f"{f}embeddings.token_type_embeddings.weight", (c.type_vocab_size, d)),
             (f"{f}embeddings.LayerNorm.weight", (d,)), (f"{f}embeddings.LayerNorm.bias", (d,)),
             (f"{f}img_embeddings.img_linear.weight", (d, vf)), (f"{f}img_embeddings.img_linear.bias", (d,)),
             (f"{f}img_embeddings.img_LayerNorm.weight", (vf,)), (f"{f}img_embeddings.img_LayerNorm.bias", (vf,)),
             (f"{f}img_embeddings.position_embeddings.weight", (c.max_frm_seq_len, d)),
             (f"{f}img_embeddings.mask_embedding.weight", (2, vf)),
             (f"{f}img_embeddings.LayerNorm.weight", (d,)), (f"{f}img_embeddings.LayerNorm.bias", (d,)),
             (f"{f}pooler.dense.weight", (d, d)), (f"{f}pooler.dense.bias", (d,)),
             (f"{f}lm_head.bias", (vp,)), (f"{f}lm_head.dense.weight", (d, d)), (f"{f}lm_head.dense.bias", (d,)),
             (f"{f}lm_head.LayerNorm.weight", (d,)), (f"{f}lm_head.LayerNorm.bias", (d,)),
             (f"{f}lm_head.decoder.weight", (vp, d)),
             (f"{v}frame_transform.LayerNorm.weight", (vf,)), (f"{v}frame_transform.LayerNorm.bias", (vf,)),
             (f"{v}frame_transform.net.1.weight", (d, vf)), (f"{v}frame_transform.net.1.bias", (d,)),
             (f"{v}c_encoder.embeddings.position_embeddings.weight", (c.max_position_embeddings, d)),
             (f"{v}c_encoder.embeddings.LayerNorm.weight", (d,)), (f"{v}c_encoder.embeddings.LayerNorm.bias", (d,))]
    for i in range(c.num_temporal_layers):
        keys += _layer(f"{v}c_encoder.encoder.layer.{i}.", d, ffn)
    keys += [(f"{v}c_encoder.pooler.dense.weight", (d, d)), (f"{v}c_encoder.pooler.dense.bias", (d,)),
             (f"{v}feat_regress.net.0.weight", (d, d)), (f"{v}feat_regress.net.0.bias", (d,)),
             (f"{v}feat_regress.net.2.weight", (d,)), (f"{v}feat_regress.net.2.bias", (d,)),
             (f"{v}feat_regress.net.3.weight", (vf, d)), (f"{v}feat_regress.net.3.bias", (vf,)),
             (f"{v}mask_embedding.weight", (2, vf)),
             (f"{v}fom_output.linear_1.weight", (2 * d, d)), (f"{v}fom_output.linear_1.bias", (2 * d,)),
             (f"{v}fom_output.LayerNorm.weight", (2 * d,)), (f"{v}fom_output.LayerNorm.bias", (2 * d,)),
             (f"{v}fom_output.linear_2.weight", (c.fom_num_classes, 2 * d)),
             (f"{v}fom_output.linear_2.bias", (c.fom_num_classes,)),
             ("video_query_linear.weight", (d, d)), ("video_query_linear.bias", (d,)),
             ("video_st_predictor.weight", (1, 1, c.span_kernel_size)),
             ("video_ed_predictor.weight", (1, 1, c.span_kernel_size)),
             ("q_feat_attn.query_input_proj.LayerNorm.weight", (d,)),
             ("q_feat_attn.query_input_proj.LayerNorm.bias", (d,)),
             ("q_feat_attn.query_input_proj.net.1.weight", (d, d)), ("q_feat_attn.query_input_proj.net.1.bias", (d,)),
             ("q_feat_attn.query_pos_embed.position_embeddings.weight", (c.max_position_embeddings, d)),
             ("q_feat_attn.query_pos_embed.LayerNorm.weight", (d,)),
             ("q_feat_attn.query_pos_embed.LayerNorm.bias", (d,))]
    for name in ("query", "key", "value"):
        keys += [(f"q_feat_attn.query_self_attention.self.{name}.weight", (d, d)),
                 (f"q_feat_attn.query_self_attention.self.{name}.bias", (d,))]
    keys += [("q_feat_attn.query_self_attention.output.dense.weight", (d, d)),
             ("q_feat_attn.query_self_attention.output.dense.bias", (d,)),
             ("q_feat_attn.query_self_attention.output.LayerNorm.weight", (d,)),
             ("q_feat_attn.query_self_attention.output.LayerNorm.bias", (d,)),
             ("q_feat_attn.modular_vector_mapping.weight", (1, d))]
    return keys


def reference_checkpoint(c: HeroConfig, seed: int = 0, dtype=torch.float16) -> dict:
    """A random reference-format checkpoint as the reference saves it (apex O2: fp16 tensors,
    zero ``pad`` buffers, the decoder tied to the word table, ``vocab_padded: True``)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in reference_layout(c):
        state[key] = (0.05 * torch.randn(shape, generator=gen)).to(dtype)
    for key in ("v_encoder.pad", "v_encoder.f_encoder.pad"):
        state[key].zero_()
    state["v_encoder.f_encoder.lm_head.decoder.weight"] = state["v_encoder.f_encoder.embeddings.word_embeddings.weight"]
    state["vocab_padded"] = True
    return state


def _mlp_head(prefix: str, d: int, out: int) -> list[tuple[str, tuple[int, ...]]]:
    """Reference ``MLPLayer(d, out)``: linear 2d, LayerNorm, linear out."""
    return [(f"{prefix}linear_1.weight", (2 * d, d)), (f"{prefix}linear_1.bias", (2 * d,)),
            (f"{prefix}LayerNorm.weight", (2 * d,)), (f"{prefix}LayerNorm.bias", (2 * d,)),
            (f"{prefix}linear_2.weight", (out, 2 * d)), (f"{prefix}linear_2.bias", (out,))]


def reference_task_head_layout(c: HeroConfig, task: str) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` of the heads of a reference ``HeroForVideoQA`` / ``HeroForViolin`` (notes
    §1.7); the rest of those models is the ``v_encoder.*`` part of `reference_layout`."""
    d = c.hidden_size
    if task == "video_qa":
        return ([("qa_pool.weight", (1, d))] + _mlp_head("qa_pred_head.", d, 1)
                + [("st_ed_pool.weight", (1, d))] + _mlp_head("st_ed_pred_head.", d, 2))
    if task == "violin":
        return [("violin_pool.weight", (1, d))] + _mlp_head("violin_pred_head.", d, 1)
    raise ValueError(f"no head layout for {task!r}")
