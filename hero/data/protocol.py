"""`CorpusLike`: what the task, search and figure code reads of a corpus.

`hero.data.corpus.Corpus` (a prepared dataset directory) satisfies it, and so does any object with
these members, such as the in-memory corpus of the tests (``tests/fake_corpus.py``). Code that needs
more of a prepared directory (its stores, ``corpus.json``, the list of annotation files) takes a
`hero.data.corpus.Corpus` instead.

A leaf module: typing only, so anything may import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from hero.config import TextTokens
    from hero.data.batch import Clip


@runtime_checkable
class CorpusLike(Protocol):
    """The corpus interface of DEVELOPERS.md ("A prepared dataset directory", Corpus).

    Attributes:
        frame_interval: seconds per frame (1.5 for the TV datasets).
        tokens: the special token ids (`hero.config.TextTokens`).
        tokenizer: the `hero.data.tokenizer.Tokenizer` of the annotations' token ids, or None
            where a caller only needs ids.
    """

    frame_interval: float

    @property
    def tokens(self) -> TextTokens: ...

    @property
    def tokenizer(self) -> Any: ...

    def video_ids(self) -> list[str]:
        """The ids of the videos, in a fixed order."""
        ...

    def clip(self, vid: str) -> Clip:
        """The `hero.data.batch.Clip` of a video: features ``(n, d)`` cut to the corpus's clip length,
        subtitle token ids and the frames of each subtitle."""
        ...

    def annotations(self, dataset: str, split: str) -> list[dict]:
        """The records of ``annotations/<dataset>/<split>.jsonl`` (formats in DEVELOPERS.md)."""
        ...


__all__ = ["CorpusLike"]
