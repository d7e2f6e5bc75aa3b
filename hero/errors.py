"""The project's error type: bad input that the user can fix, named precisely."""

from __future__ import annotations


class HeroError(ValueError):
    """Bad input (a file, line, key or value) with a message that says where and what is wrong.

    Subclasses `ValueError`, so library callers can catch either. The CLI prints the message and
    exits with status 2.
    """
