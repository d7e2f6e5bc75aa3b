"""Which task a record or a prediction file belongs to, so a mix-up is named as such.

Feeding VIOLIN predictions to the QA evaluator, or a TVR annotation file to the captioning one,
would otherwise fail on a detail ("no prediction for 600 of the 600 qids", "missing 'clip_id'")
that hides the real mistake. The guesses use the keys of the formats in DEVELOPERS.md (corpus
annotations) and the official formats (raw TVQA lines, TVR and TVC records, submissions); the
kinds are the ``hero eval`` kinds: ``retrieval``, ``qa``, ``violin``, ``caption``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_QA_KEYS = ("answers", "a_ids", "a0", "answer_idx", "q_ids")
_VIOLIN_KEYS = ("statement", "label")
_CAPTION_KEYS = ("captions", "descs", "clip_id")
_RETRIEVAL_KEYS = ("ts", "desc", "desc_id", "vid_name")
_VIOLIN_QID = re.compile(r"-[01]$")


def annotation_kind(record: Any) -> str | None:
    """``"qa"``, ``"violin"``, ``"caption"`` or ``"retrieval"``: the task an annotation record is
    for, judged by its keys; None when it cannot be told."""
    if not isinstance(record, Mapping):
        return None
    if any(k in record for k in _QA_KEYS):
        return "qa"
    if any(k in record for k in _VIOLIN_KEYS):
        return "violin"
    if any(k in record for k in _CAPTION_KEYS):
        return "caption"
    if any(k in record for k in _RETRIEVAL_KEYS):
        return "retrieval"
    return None


def prediction_kind(predictions: Any) -> str | None:
    """The task a loaded prediction file looks like it is for, or None.

    * ``{"video2idx", "VCMR"/"SVMR"/"VR"}``: retrieval;
    * ``{qid: int}``: violin when every value is 0 or 1 and every qid ends in ``-0``/``-1`` (a statement
      and its false twin), qa when some value is above 1;
    * a list of ``{"clip_id", "descs"}`` records: caption.
    """
    if isinstance(predictions, Mapping):
        if "video2idx" in predictions or any(k in predictions for k in ("VCMR", "SVMR", "VR")):
            return "retrieval"
        values = list(predictions.values())
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return None
        if any(v > 1 for v in values):
            return "qa"
        if all(_VIOLIN_QID.search(str(k)) for k in predictions):
            return "violin"
        return None
    if isinstance(predictions, list) and predictions and isinstance(predictions[0], Mapping):
        return "caption" if "clip_id" in predictions[0] else None
    return None


def non_finite(values: Mapping[Any, Any]) -> list[Any]:
    """Keys whose value is a NaN or infinite float, in order."""
    return [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
