"""Converters of the HowTo100M-derived benchmarks (frames every 2 s): How2R and How2QA.

Only the processed releases exist (notes §3.2; VALUE StarterCode). Their JSONL follows TVR and TVQA:

* How2R: ``{"desc_id", "desc", "vid_name", "ts": [st, ed], "duration"}`` → `retrieval_record`.
* How2QA: ``{"qid", "q", "a0".."a3", "answer_idx", "vid_name", "ts": "st-ed" | [st, ed]}``: like
  TVQA but with however many answers the line has (How2QA has 4, TVQA 5).
"""

from __future__ import annotations

from typing import Any

from hero.data.prepare.tv import qa_record, retrieval_record


def how2qa_record(rec: Any) -> dict:
    """A How2QA question with every consecutive ``a<i>`` answer (at least 2)."""
    return qa_record(rec, num_answers=None)


__all__ = ["how2qa_record", "retrieval_record"]
