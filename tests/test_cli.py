"""The ``hero`` command line, end to end on synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hero.cli import COMMANDS, build_parser, main


def _listed_commands(help_text: str) -> dict[str, str]:
    """``{name: help}`` of the sub-command listing of an argparse help text (wrapped lines joined)."""
    listed: dict[str, str] = {}
    section = help_text.split("positional arguments:")[1].split("options:")[0]
    name = None
    for line in section.splitlines()[2:]:  # skip the metavar line
        indent = len(line) - len(line.lstrip())
        words = line.split(None, 1)
        if indent == 4:  # a command name, with its help on the same line or the next
            name = words[0]
            listed[name] = words[1] if len(words) > 1 else ""
        elif words and name is not None:
            listed[name] = (listed[name] + " " + line.strip()).strip()
    return listed


def test_parser_lists_every_command_with_its_help(capsys):
    listed = _listed_commands(build_parser().format_help())
    assert list(listed) == list(COMMANDS)
    assert listed == {name: " ".join(text.split()) for name, (text, _) in COMMANDS.items()}
    for name in COMMANDS:  # every command builds its own parser and explains itself
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: hero {name} ") and " ".join(COMMANDS[name][0].split()) in " ".join(out.split())


@pytest.mark.slow
def test_quickstart_end_to_end_with_a_tiny_budget(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--pretrain-steps", "4", "--finetune-steps", "3",
                 "--tasks", "vcmr,violin"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"vcmr", "violin"}
    for metrics in results["results"].values():
        for values in metrics.values():
            assert set(values) == {"pretrained", "scratch", "baseline"}
            assert all(0.0 <= v <= 100.0 for v in values.values())
    assert "VCMR R@10 (IoU 0.7)" in results["results"]["vcmr"]
    assert (out / "pretrain" / "model" / "model.safetensors").is_file()
    assert (out / "finetune" / "vcmr-scratch" / "metrics.json").is_file()
    report = (out / "report.md").read_text()
    for name in ("loss_curves", "moments", "attention"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"figures/{name}.png" in report
    printed = capsys.readouterr().out
    assert "| moment retrieval (tvr) | VCMR R@10 (IoU 0.7) |" in printed and str(out) in printed
    assert results["results"]["violin"]["VIOLIN accuracy"]["baseline"] == pytest.approx(50.0, abs=15.0)


def test_quickstart_rejects_an_unknown_task(tmp_path, capsys):
    assert main(["quickstart", "--out", str(tmp_path / "q"), "--tasks", "vcmr,nope"]) == 2
    assert "unknown task(s) ['nope']" in capsys.readouterr().err


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "hero", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "quickstart" in proc.stdout


def test_bad_checkpoint_directory_is_a_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "not a HERO checkpoint directory" in capsys.readouterr().err


@pytest.mark.slow
def test_ablate_writes_both_tables_with_every_seed(tmp_path, capsys):
    out = tmp_path / "ab"
    assert main(["ablate", "--out", str(out), "--seeds", "0,1", "--tables", "2", "--pretrain-steps", "2",
                 "--finetune-steps", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["table1"] == {}
    rows = results["table2"]
    assert set(rows) == {f"{m}, {p}" for m in ("F-TRM", "H-TRM", "HERO") for p in ("no pre-training", "pre-trained")}
    for cols in rows.values():
        assert "VCMR R@10 (IoU 0.7)" in cols and "QA accuracy" in cols
        assert all(len(v) == 2 for v in cols.values())  # one value per seed
    text = (out / "ablations.md").read_text()
    assert "Table 2 in miniature" in text and "± " in text
    assert (out / "runs" / "pretrain-f-trm-mlm+mnce-seed1" / "model" / "config.json").is_file()


def test_ablate_rejects_bad_arguments(tmp_path, capsys):
    assert main(["ablate", "--out", str(tmp_path / "a"), "--tables", "3"]) == 2
    assert "--tables" in capsys.readouterr().err
