"""The project's error type: bad input that the user can fix, named precisely."""

from __future__ import annotations


class HeroError(ValueError):
    """Bad input (a file, line, key or value) with a message that says where and what is wrong.

    Subclasses `ValueError`, so library callers can catch either. The CLI prints the message and
    exits with status 2.
    """


class NonFiniteError(HeroError):
    """Scores (or other model outputs) that are NaN or infinite: how many and the first query.

    Raised where predictions are made, before anything is written, so that a broken model (diverged
    training, corrupted weights) never yields a silently meaningless submission. The command that
    knows which model ran puts its name in front (`hero predict`).
    """

    def __init__(self, what: str, count: int, total: int, first) -> None:
        self.what, self.count, self.total, self.first = what, count, total, first
        super().__init__(f"{count:,} of {total:,} {what} are NaN or infinite (first at query {first!r})")
