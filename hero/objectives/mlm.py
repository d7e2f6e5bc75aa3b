"""Masked Language Modelling conditioned on frames (paper §3.2, MLM).

One sample per subtitle group: ``[CLS] + masked(tokens[:60])`` with the group's frames, through the
Cross-modal Transformer only (no Temporal Transformer), as in the reference. 15% of tokens are
chosen; of those 80% become ``<mask>``, 10% a random token, 10% stay. A group where nothing was
chosen gets its first token masked. The decoder is tied to the word embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hero.config import HeroConfig, TextTokens
from hero.data.batch import Clip, Randomness, as_randomness, clip_groups, collate_video
from hero.errors import check_settings
from hero.model.hero import VideoInputs

IGNORE = -1


@dataclass
class MlmConfig:
    mask_prob: float = 0.15
    max_txt_len: int = 60

    def __post_init__(self) -> None:
        check_settings(self, "mlm", mask_prob="[0,1]", max_txt_len=">=1")


class MlmHead(nn.Module):
    """``LN(gelu(dense(h)))·Wᵀ + bias`` with ``W`` the word table (reference ``BertLMPredictionHead``).

    Logits are cut to the real vocabulary (the padded rows of the table are never predicted).
    """

    def __init__(self, config: HeroConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size_padded))
        self.vocab_size = config.vocab_size

    def forward(self, h: Tensor, word_weight: Tensor) -> Tensor:
        """``h (M, D)``, ``word_weight (Vp, D)`` → logits ``(M, vocab_size)``."""
        x = self.LayerNorm(F.gelu(self.dense(h)))
        return F.linear(x, word_weight[: self.vocab_size], self.bias[: self.vocab_size])


@dataclass
class MlmBatch:
    """An MLM batch.

    Attributes:
        video: every subtitle group of the clips (frameless groups included), text masked.
        masked_rows: ``(M,)`` packed cross-modal rows of the masked tokens, in (group, position) order.
        labels: ``(M,)`` original tokens there.
    """

    video: VideoInputs
    masked_rows: Tensor
    labels: Tensor

    def to(self, device) -> MlmBatch:
        return MlmBatch(self.video.to(device), self.masked_rows.to(device), self.labels.to(device))


class MlmObjective:
    """MLM: collate (token masking) and loss."""

    name = "mlm"

    def __init__(self, cfg: MlmConfig | None = None, tokens: TextTokens | None = None) -> None:
        self.cfg = cfg or MlmConfig()
        self.tokens = tokens or TextTokens()

    def mask_tokens(self, tokens: list[int], generator: torch.Generator) -> tuple[list[int], list[int]]:
        """Reference ``random_word``: returns (masked tokens, labels with −1 where unmasked)."""
        n = len(tokens)
        if n == 0:
            return [], []
        chosen = torch.rand(n, generator=generator) < self.cfg.mask_prob
        kind = torch.rand(n, generator=generator)
        lo, hi = self.tokens.random_range
        rand_ids = torch.randint(lo, hi, (n,), generator=generator)
        out, labels = list(tokens), [IGNORE] * n
        for i in torch.nonzero(chosen).flatten().tolist():
            labels[i] = tokens[i]
            if kind[i] < 0.8:
                out[i] = self.tokens.mask_id
            elif kind[i] < 0.9:
                out[i] = int(rand_ids[i])
        if not chosen.any():
            labels[0], out[0] = tokens[0], self.tokens.mask_id
        return out, labels

    def collate(self, clips: list[Clip], generator: torch.Generator | Randomness | None = None,
                masked: list[list[tuple[list[int], list[int]]]] | None = None) -> MlmBatch:
        """Build an MLM batch.

        Args:
            generator: the batch's random streams (a plain generator derives them); clip ``b``'s
                masks come from stream ``b``.
            masked: per clip, per ``sub2frames`` entry, ``(masked tokens, labels)`` (labels −1 where
                not masked); drawn from ``generator`` when None.
        """
        cut = self.cfg.max_txt_len
        rng = None if masked is not None else as_randomness(generator, len(clips), "MLM")
        groups, labels = [], []
        for b, clip in enumerate(clips):
            override = {}
            for k, (sub_idx, _) in enumerate(clip.sub2frames):
                if masked is not None:
                    toks, lab = masked[b][k]
                else:
                    toks, lab = self.mask_tokens(clip.subtitles[sub_idx][:cut], rng.clips[b])
                override[sub_idx] = toks
                labels.append([IGNORE, *lab])  # position 0 is [CLS]
            groups.append(clip_groups(clip, self.tokens.cls_id, cut, override))
        video = collate_video([c.features for c in clips], groups, drop_frameless=False)
        flat = torch.tensor([x for lab in labels for x in lab], dtype=torch.long)
        chosen = torch.nonzero(flat != IGNORE).flatten()
        return MlmBatch(video, video.cross.num_frames + chosen, flat[chosen])

    def predict(self, model, batch: MlmBatch) -> Tensor:
        """Logits ``(M, vocab_size)`` of the masked tokens."""
        out = model.hero.cross_modal(batch.video)
        return model.mlm_head(out.index_select(0, batch.masked_rows), model.hero.word_embeddings.weight)

    def __call__(self, model, batch: MlmBatch, **_) -> dict[str, Tensor]:
        """Mean cross-entropy over the masked tokens; ``normalizer`` = their number (see
        `hero.train.engine`: the engine turns per-rank means into the global mean)."""
        logits = self.predict(model, batch)
        if batch.labels.numel() == 0:  # only empty subtitles: nothing to predict
            loss = logits.float().sum() * 0.0
        else:
            loss = F.cross_entropy(logits.float(), batch.labels)
        return {"loss": loss, "mlm_loss": loss, "normalizer": batch.labels.numel()}
