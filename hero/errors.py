"""The project's error type: bad input that the user can fix, named precisely."""

from __future__ import annotations


class HeroError(ValueError):
    """Bad input (a file, line, key or value) with a message that says where and what is wrong.

    Subclasses `ValueError`, so library callers can catch either. The CLI prints the message and
    exits with status 2.
    """


class SettingError(HeroError):
    """A setting of a config dataclass outside its range.

    ``key`` is the field name; the config loader (`hero.train.config.from_dict`) puts where the
    setting came from in front of it (``configs/x.yaml.train.log_every must be >= 1, got 0``).
    ``section`` names the dataclass's usual place in a run config, for a message raised outside
    the loader.
    """

    def __init__(self, key: str, rule: str, value, section: str = "") -> None:
        self.key, self.rule, self.value = key, rule, value
        super().__init__(f"{section + '.' if section else ''}{key} must be {rule}, got {value!r}")

    def at(self, where: str) -> HeroError:
        """The same error with ``where`` (a file and key path) in front of the key."""
        return HeroError(f"{where + '.' if where else ''}{self.key} must be {self.rule}, got {self.value!r}")


_RULES = {
    ">0": (lambda v: v > 0, "> 0"),
    ">=0": (lambda v: v >= 0, ">= 0"),
    ">=1": (lambda v: v >= 1, ">= 1"),
    "[0,1]": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "[0,1)": (lambda v: 0 <= v < 1, "in [0, 1)"),
}


def check_settings(obj, section: str = "", **rules: str) -> None:
    """Range-check numeric fields of dataclass ``obj``: ``name=rule``, rule one of ``>0``, ``>=0``,
    ``>=1``, ``[0,1]``, ``[0,1)``, optionally followed by a note (``">=0 (0: never)"``).

    None values pass (optional settings); NaN and infinities never do. Raises `SettingError` for
    the first field out of range.
    """
    import math

    for name, rule in rules.items():
        value = getattr(obj, name)
        if value is None:
            continue
        code, _, note = rule.partition(" ")
        test, text = _RULES[code]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and test(value)
        if not ok:
            raise SettingError(name, f"{text} {note}".strip(), value, section)


class NonFiniteError(HeroError):
    """Scores (or other model outputs) that are NaN or infinite: how many and the first query.

    Raised where predictions are made, before anything is written, so that a broken model (diverged
    training, corrupted weights) never yields a silently meaningless submission. The command that
    knows which model ran puts its name in front (`hero predict`).
    """

    def __init__(self, what: str, count: int, total: int, first) -> None:
        self.what, self.count, self.total, self.first = what, count, total, first
        super().__init__(f"{count:,} of {total:,} {what} are NaN or infinite (first at query {first!r})")
