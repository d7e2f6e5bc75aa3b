"""Command-line basics: unknown options, paths that are not what they should be."""

from __future__ import annotations

from reliability.matrix import Case

CASES = [
    Case("info-not-a-model-dir", "cli", "`hero info` on an empty directory",
         lambda ws: ["info", str(ws.tmp)], match="not a HERO checkpoint directory"),
    Case("search-missing-index", "cli", "`hero search` with an index directory that does not exist",
         lambda ws: ["search", "--index", str(ws.tmp / "nothing"), "alice"], match="nothing"),
]
