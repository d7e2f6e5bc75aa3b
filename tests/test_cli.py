"""The ``hero`` command line, end to end on synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys

from hero.cli import COMMANDS, build_parser, main


def test_parser_lists_every_command(capsys):
    help_text = build_parser().format_help()
    for name in COMMANDS:
        assert name in help_text


def test_quickstart_runs_and_reloads(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "run"), "--steps", "14"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["reload_identical"] is True
    assert (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()
    assert set(summary["loss_first_last"]) <= {"mlm", "mfm-nce", "fom", "vsm"}
    assert "reloaded outputs identical: True" in capsys.readouterr().out


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "hero", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "quickstart" in proc.stdout


def test_bad_checkpoint_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "not a HERO checkpoint directory" in capsys.readouterr().err
