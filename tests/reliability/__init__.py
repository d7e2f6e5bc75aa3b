"""The bad-input and fault matrix (issue 14): every case a user can type or suffer, run through
the ``hero`` command line, with the outcome it must have.

Each ``cases_<area>.py`` module here defines ``CASES: list[Case]``. `all_cases()` collects them;
``tests/test_reliability_matrix.py`` runs each one as a test, and
``scripts/reliability_matrix.py`` runs them all and writes ``docs/reliability.md``.
"""

from __future__ import annotations

import importlib
import pkgutil

from reliability.matrix import Case, Outcome, Workspace, check_outcome, run_case

__all__ = ["Case", "Outcome", "Workspace", "all_cases", "check_outcome", "run_case"]


def all_cases() -> list[Case]:
    """Every case of every ``cases_*`` module, in module then definition order (ids are unique)."""
    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cases_"):
            cases.extend(importlib.import_module(f"reliability.{info.name}").CASES)
    ids = [c.id for c in cases]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate reliability case ids: {dupes}")
    return cases
