"""The bad-input and fault matrix (``tests/reliability``): every case, run through the CLI."""

from __future__ import annotations

import pytest
from reliability import Workspace, all_cases, check_outcome, run_case

CASES = all_cases()


@pytest.fixture(scope="session")
def shared_artifacts(tmp_path_factory):
    return tmp_path_factory.mktemp("reliability_shared")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, tmp_path, shared_artifacts):
    ws = Workspace(tmp_path / "case", shared_artifacts)
    check_outcome(case, ws, run_case(case, ws))


def test_the_matrix_covers_every_defect_of_issue_14():
    assert {c.defect for c in CASES if c.defect} >= set(range(1, 23)) - {11, 16, 17}
