"""Readers of files the user may hand back to hero (here: a run's log.jsonl) name file:line for bad lines."""

from __future__ import annotations

import pytest

from hero.errors import HeroError
from hero.train.logging import read_log, truncate_log


def test_run_log_reader_names_bad_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo', encoding="utf-8")
    assert [r["step"] for r in read_log(log)] == [1, 2]  # a last line cut short by a kill is dropped
    truncate_log(log, 1)
    assert [r["step"] for r in read_log(log)] == [1]
    log.write_text('{"step": 1}\nnull\n{"step": 2}\n', encoding="utf-8")
    with pytest.raises(HeroError, match=r"log\.jsonl:2: expected a JSON object, got NoneType"):
        read_log(log)
    truncate_log(log, 5)  # a line that is not a record is dropped, not a traceback
    assert [r["step"] for r in read_log(log)] == [1, 2]
    log.write_bytes(b'{"step": 1}\n{"note": "\xe9"}\n')
    with pytest.raises(HeroError, match=r"log\.jsonl:2: not UTF-8 text"):
        read_log(log)
