"""Building blocks shared by the HERO backbone and its heads.

Everything here is plain PyTorch. Transformer layers work on *packed* rows: a 2-D tensor
``(N, D)`` that holds only real positions (no padding), plus an `AttentionLayout` that says how
those rows form sequences. Linear layers, LayerNorms and dropout then never touch padding; only the
attention itself sees padded ``(G, T)`` blocks, built by one gather and undone by one gather. A
padded batch ``(B, T, D)`` is the special case where the rows already are ``B*T`` padded slots.

Shape letters: ``N`` packed rows, ``G`` sequences, ``T`` padded sequence length, ``D`` hidden,
``H`` heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MASK_VALUE = -1e4
"""The reference's masking constant for logits (``mask_logits``)."""


def mask_logits(x: Tensor, mask: Tensor) -> Tensor:
    """Reference ``mask_logits``: ``x·m + (1 − m)·(−1e4)``; masked entries become exactly −10000.

    Args:
        x: logits of any shape.
        mask: broadcastable to ``x``; 1/True keeps an entry.
    """
    m = mask.to(x.dtype)
    return x * m + (1.0 - m) * MASK_VALUE


def activation_dtype(x: Tensor) -> torch.dtype:
    """The dtype activations are kept in: the autocast dtype when autocast is on for ``x``'s device.

    Embedding tables and LayerNorm parameters are fp32, so under autocast the embeddings would come
    out in fp32 and every following matmul would cast its input again. Casting the embeddings once
    keeps the whole residual stream in the low-precision dtype, as a half-precision model would
    (the reference trained with apex O2: fp16 activations, fp32 master weights).
    """
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


def _keep_scaled(x: Tensor, p: float) -> Tensor:
    """Dropout multiplier for ``x`` (same shape and dtype): 0 for dropped, ``1/keep_prob`` for kept.

    ``torch.nn.functional.dropout`` draws one Bernoulli sample per element, which costs more on a
    CPU than the matmul it follows. Here every element gets 16 random bits out of a buffer of
    64-bit random integers (4 elements per draw) and is dropped when they fall below
    ``round(p·65536)``; kept values are scaled by the exact inverse keep probability, so the
    expectation is unchanged. Deterministic under ``torch.manual_seed``.
    """
    threshold = round(p * 65536)
    n = x.numel()
    # random_(lowest, None) draws all 64 bits; plain random_() leaves the sign bit 0, which would
    # bias every fourth 16-bit chunk
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(2**63), None)
    keep = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    # comparing straight into x's dtype: converting a bool tensor afterwards is ~5x slower
    torch.ge(bits.view(torch.int16)[:n].view(x.shape), threshold - 32768, out=keep)
    return keep.mul_(65536.0 / (65536 - threshold))


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout (see `_keep_scaled`); the native fused kernel off the CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    return x * _keep_scaled(x, p)


def dropout_add(x: Tensor, residual: Tensor, p: float, training: bool) -> Tensor:
    """``residual + dropout(x)`` in one pass on the CPU (``addcmul``)."""
    if not training or p == 0.0:
        return residual + x
    if x.device.type != "cpu" or p >= 1.0 or residual.dtype != x.dtype:
        return residual + dropout(x, p, training)
    return torch.addcmul(residual, x, _keep_scaled(x, p))


@dataclass
class AttentionLayout:
    """How packed rows ``(N, D)`` form attention sequences.

    Sequences are grouped in buckets of similar length; bucket ``b`` is a padded block
    ``(G_b, T_b)``. Concatenating the blocks row-major gives ``sum_b G_b*T_b`` padded slots.

    Attributes:
        masks: one ``(G_b, T_b)`` bool tensor per bucket; True marks a real position.
        gather: ``(sum_b G_b*T_b,)`` long, the packed row shown at every padded slot (padding
            slots show row 0: they are masked as keys and their outputs are dropped). None when
            the rows already are the padded slots (a single bucket).
        scatter: ``(N,)`` long, the padded slot of every packed row. None as for ``gather``.
    """

    masks: tuple[Tensor, ...]
    gather: Tensor | None = None
    scatter: Tensor | None = None

    @classmethod
    def padded(cls, mask: Tensor) -> AttentionLayout:
        """Layout of a padded batch whose rows are the ``B*T`` slots of ``mask (B, T)``."""
        return cls(masks=(mask.bool(),))

    def to(self, device: torch.device | str) -> AttentionLayout:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        return AttentionLayout(tuple(m.to(device, non_blocking=True) for m in self.masks),
                               move(self.gather), move(self.scatter))

    def attend(self, qkv: Tensor, num_heads: int, dropout_p: float) -> Tensor:
        """Multi-head scaled dot-product attention of every sequence.

        Args:
            qkv: ``(N, 3*D)`` packed queries, keys and values.
        Returns:
            ``(N, D)`` attention outputs (before the output projection).
        """
        d_model = qkv.shape[-1] // 3
        head_dim = d_model // num_heads
        if not self.masks:  # no sequence at all (e.g. a batch whose subtitles own no frame)
            return qkv.new_zeros(0, d_model)
        slots = qkv if self.gather is None else qkv.index_select(0, self.gather)
        # split (not slicing): its backward concatenates instead of zero-filling per bucket
        blocks = slots.split([m.numel() for m in self.masks]) if len(self.masks) > 1 else (slots,)
        outputs = []
        for mask, block in zip(self.masks, blocks):
            g, t = mask.shape
            block = block.view(g, t, 3, num_heads, head_dim)
            q, k, v = block.permute(2, 0, 3, 1, 4).unbind(0)  # each (G, H, T, hd)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask[:, None, None, :], dropout_p=dropout_p
            )  # (G, H, T, hd)
            outputs.append(out.transpose(1, 2).reshape(g * t, d_model))
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        return out if self.scatter is None else out.index_select(0, self.scatter)


class SelfAttention(nn.Module):
    """Query/key/value projections (reference ``BertSelfAttention``), fused into one matmul."""

    def __init__(self, hidden_size: int, num_heads: int, dropout_p: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout_p = dropout_p
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, layout: AttentionLayout) -> Tensor:
        """``x (N, D)`` → ``(N, D)`` attention context (heads concatenated)."""
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        qkv = F.linear(x, weight, bias)  # (N, 3D)
        p = self.dropout_p if self.training else 0.0
        return layout.attend(qkv, self.num_heads, p)


class AddNorm(nn.Module):
    """``LN(residual + dropout(dense(x)))`` (reference ``BertSelfOutput``/``BertOutput``)."""

    def __init__(self, in_size: int, hidden_size: int, dropout_p: float, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout_p = dropout_p

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(dropout_add(self.dense(x), residual, self.dropout_p, self.training))


class Attention(nn.Module):
    """Self-attention block with residual and LayerNorm, no FFN (reference ``BertAttention``)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout_p: float, attn_dropout_p: float,
                 eps: float) -> None:
        super().__init__()
        self.self = SelfAttention(hidden_size, num_heads, attn_dropout_p)
        self.output = AddNorm(hidden_size, hidden_size, dropout_p, eps)

    def forward(self, x: Tensor, layout: AttentionLayout) -> Tensor:
        return self.output(self.self(x, layout), x)


class Intermediate(nn.Module):
    """FFN expansion with exact (erf) GELU."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))


class TransformerLayer(nn.Module):
    """Post-LN BERT layer: ``h = LN(h + MHA(h))``, ``h = LN(h + W2·gelu(W1·h))``."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout_p: float,
                 attn_dropout_p: float, eps: float) -> None:
        super().__init__()
        self.attention = Attention(hidden_size, num_heads, dropout_p, attn_dropout_p, eps)
        self.intermediate = Intermediate(hidden_size, intermediate_size)
        self.output = AddNorm(intermediate_size, hidden_size, dropout_p, eps)

    def forward(self, x: Tensor, layout: AttentionLayout) -> Tensor:
        """``x (N, D)`` packed rows → ``(N, D)``."""
        h = self.attention(x, layout)
        return self.output(self.intermediate(h), h)


class TransformerEncoder(nn.Module):
    """A stack of `TransformerLayer` (reference ``BertEncoder``; keys ``layer.{i}.…``)."""

    def __init__(self, num_layers: int, hidden_size: int, num_heads: int, intermediate_size: int,
                 dropout_p: float, attn_dropout_p: float, eps: float) -> None:
        super().__init__()
        self.layer = nn.ModuleList(
            TransformerLayer(hidden_size, num_heads, intermediate_size, dropout_p, attn_dropout_p, eps)
            for _ in range(num_layers)
        )

    def forward(self, x: Tensor, layout: AttentionLayout) -> Tensor:
        for layer in self.layer:
            x = layer(x, layout)
        return x


class MLPHead(nn.Module):
    """``linear_2(LN(gelu(linear_1(x))))`` with a 2×-wide hidden layer (reference ``MLPLayer``)."""

    def __init__(self, in_size: int, out_size: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_size, in_size * 2)
        self.LayerNorm = nn.LayerNorm(in_size * 2, eps=eps)
        self.linear_2 = nn.Linear(in_size * 2, out_size)

    def forward(self, x: Tensor) -> Tensor:
        """``x (..., in)`` → ``(..., out)``."""
        return self.linear_2(self.LayerNorm(F.gelu(self.linear_1(x))))


class ProjectionLayer(nn.Module):
    """``ReLU(Linear(Dropout(LN(x))))`` (reference ``LinearLayer``: ``frame_transform``, query input)."""

    def __init__(self, in_size: int, out_size: int, dropout_p: float, eps: float = 1e-5) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(in_size, eps=eps)
        self.linear = nn.Linear(in_size, out_size)
        self.dropout_p = dropout_p

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.linear(dropout(self.LayerNorm(x), self.dropout_p, self.training)))


def init_weights(module: nn.Module, std: float) -> None:
    """Reference (BERT) initialisation: Linear/Embedding ~ N(0, std), biases 0, LayerNorm 1/0.

    Like the reference, this also overwrites the padding row of embeddings.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
