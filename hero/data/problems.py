"""Bad input during data preparation: counted, reported skips that the user can make fatal.

Every converter and store builder takes a `Problems` collector. A problem that makes a whole
conversion meaningless (a missing file, an unreadable header) is raised at once as a `HeroError`.
A problem confined to one record (a missing video, a NaN feature, an empty subtitle) goes through
`Problems.skip`: with ``strict=True`` it raises immediately, otherwise it is counted by kind and
listed with where it happened, and the caller drops only that record. Adjustments that keep the
record (a video truncated to the frame limit, like the reference) go through `Problems.note`.
Nothing is dropped silently: `summary()` is printed by every command and written next to the
output as ``problems.json``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hero.errors import HeroError
from hero.io import write_json_atomic

MAX_EXAMPLES = 20
"""How many locations are kept per kind of problem (the count is always exact)."""


@dataclass
class Problems:
    """Collects skipped records (`skip`) and kept-but-adjusted records (`note`).

    Args:
        strict: raise a `HeroError` at the first skip instead of counting it.
    """

    strict: bool = False
    skipped: Counter = field(default_factory=Counter)
    noted: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, kind: str, where: str, what: str) -> None:
        """Record that the record at ``where`` is dropped because of ``what``.

        Args:
            kind: short category, e.g. ``"missing video"``, ``"non-finite features"``.
            where: file and line, or store and key, e.g. ``"tvr_train.jsonl:17"``.
            what: what is wrong, in words the user can act on.
        """
        message = f"{where}: {what}"
        if self.strict:
            raise HeroError(f"{message} (strict mode: {kind} is fatal)")
        self.skipped[kind] += 1
        self._example(kind, message)

    def note(self, kind: str, where: str, what: str) -> None:
        """Record an adjustment that keeps the record (e.g. truncation to the frame limit)."""
        self.noted[kind] += 1
        self._example(kind, f"{where}: {what}")

    def _example(self, kind: str, message: str) -> None:
        examples = self.examples.setdefault(kind, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(message)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """Human-readable report: one line per kind with its count, then example locations."""
        if not self.skipped and not self.noted:
            return "no problems"
        lines = []
        for title, counter in (("skipped", self.skipped), ("adjusted", self.noted)):
            for kind, count in sorted(counter.items()):
                lines.append(f"{title} {count} × {kind}")
                lines += [f"    {ex}" for ex in self.examples.get(kind, [])]
                if count > MAX_EXAMPLES:
                    lines.append(f"    ... and {count - MAX_EXAMPLES} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"strict": self.strict, "skipped": dict(self.skipped), "adjusted": dict(self.noted),
                "examples": self.examples}

    def write(self, path: str | Path) -> None:
        """Write ``to_dict()`` as JSON (atomically: temp file, then rename); the directory must exist."""
        write_json_atomic(path, self.to_dict(), indent=2, sort_keys=True, mkdir=False)
