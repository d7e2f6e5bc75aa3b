"""Every shell block of README.md and docs/*.md runs as written.

A fenced ```bash / ```sh / ```console block is run (``\\`` continuations joined, comment lines
dropped, ``$ `` prompts of console blocks stripped, their output lines ignored) as one bash script
(``-e -o pipefail``: variables set by a line reach the next), in a fresh directory per document
holding only links to the checkout's ``configs/``, ``scripts/``, ``tests/`` and ``benchmarks/``
(what commands name by relative path). Blocks of one document share that directory, in order, so
a walk-through builds on its own earlier steps. ``hero`` and ``python`` are the test's virtual
environment; ``HF_HUB_OFFLINE=1``.

Budgets: a line that starts a training job gets its documented budget options appended (`TINY`),
so a 2,000-step pre-training runs 2 steps. Nothing else is changed: no environment variable alters
what a command does.

A block that cannot run here (released data or weights, GPUs, several nodes, the install itself,
or a long multi-seed study whose one-seed form runs in the next block) carries
``<!-- not run: REASON -->`` on the line right above it. Its lines are still checked: every
``hero ...`` (also after ``torchrun ... -m hero``) must parse with the real CLI parser, every
``configs/``, ``scripts/``, ``tests/`` or ``benchmarks/`` path it names must exist, and
``make TARGET`` must be a target of the Makefile (``make -n``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELLS = {"bash", "sh", "console", "shell"}
MARKER = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")
LINKED = ("configs", "scripts", "tests", "benchmarks")

# Documented budget options appended to the commands that train (first words -> extra arguments).
TINY: list[tuple[tuple[str, ...], list[str]]] = [
    (("hero", "pretrain"), ["train.num_train_steps=2"]),
    (("hero", "finetune"), ["train.num_train_steps=2"]),
    (("hero", "quickstart"), ["--pretrain-steps", "2", "--finetune-steps", "2"]),
    (("hero", "ablate"), ["--pretrain-steps", "2", "--finetune-steps", "2"]),
    (("python", "scripts/downstream_study.py"), ["--pretrain-steps", "2",
                                                 "--steps", "vcmr=2,video_qa=2,violin=2,tvc=2"]),
]
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&"}


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    commands: list[str]
    not_run: str | None  # the reason, when marked

    @property
    def name(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def shell_blocks(doc: Path) -> list[Block]:
    """The fenced shell blocks of ``doc`` with their logical command lines and markers."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)```\s*([\w-]*)", lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(2).lower(), i
        j = i + 1
        while j < len(lines) and not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        if lang in SHELLS:
            body = [ln.strip() for ln in lines[start + 1:j]]
            if lang == "console":
                body = [ln[2:] for ln in body if ln.startswith("$ ")]
            commands, current = [], ""
            for ln in body:
                current += ln
                if current.endswith("\\"):
                    current = current[:-1] + " "
                    continue
                if current.strip() and not current.lstrip().startswith("#"):
                    commands.append(current.strip())
                current = ""
            k = start - 1
            while k >= 0 and not lines[k].strip():
                k -= 1
            marker = MARKER.match(lines[k]) if k >= 0 else None
            blocks.append(Block(doc, start + 1, commands, marker.group("reason").strip() if marker else None))
        i = j + 1
    return blocks


def stray_markers(doc: Path) -> list[int]:
    """Lines of ``not run`` markers that are not right above a fenced shell block."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    bad = []
    for n, ln in enumerate(lines):
        if "not run" in ln and "<!--" in ln:
            k = n + 1
            while k < len(lines) and not lines[k].strip():
                k += 1
            fence = re.match(r"^\s*```\s*([\w-]*)", lines[k]) if k < len(lines) else None
            if not MARKER.match(ln) or not fence or fence.group(1).lower() not in SHELLS:
                bad.append(n + 1)
    return bad


def with_budget(command: str) -> str:
    """``command`` with the tiny budget of `TINY` appended when it starts a training job."""
    words = shlex.split(command, comments=True)
    for prefix, extra in TINY:
        if tuple(words[:len(prefix)]) == prefix:
            if SHELL_OPERATORS & set(words):
                raise AssertionError(f"cannot append a budget to a compound command: {command}")
            return shlex.join(words + extra)
    return command


def hero_argv(words: list[str]) -> list[str] | None:
    """The ``hero`` arguments of a command line (``hero ...``, ``torchrun ... -m hero ...``)."""
    if words[:1] == ["hero"]:
        return words[1:]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "hero":
            return words[i + 2:]
    return None


def _all_blocks() -> list[Block]:
    return [b for doc in DOCS for b in shell_blocks(doc)]


def test_every_doc_block_is_found_and_every_not_run_marker_has_a_reason():
    blocks = _all_blocks()
    assert len(blocks) >= 15 and any(b.doc.name == "README.md" for b in blocks)
    for b in blocks:
        assert b.commands, f"{b.name}: an empty shell block"
        if b.not_run is not None:
            assert len(b.not_run) >= 10, f"{b.name}: a 'not run' marker needs a reason"
    for doc in DOCS:
        assert not stray_markers(doc), f"{doc.name}: 'not run' markers not right above a shell block"


def test_parser_reads_continuations_prompts_and_markers(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text("text\n\n<!-- not run: needs eight GPUs -->\n```bash\n# a comment\nhero pretrain \\\n"
                   "    --config c.yaml   # trailing\n```\n\n```console\n$ hero --help\nusage: hero\n```\n"
                   "```python\nprint(1)\n```\n")
    first, second = shell_blocks(doc)
    assert first.not_run == "needs eight GPUs" and len(first.commands) == 1
    assert shlex.split(first.commands[0], comments=True) == ["hero", "pretrain", "--config", "c.yaml"]
    assert second.not_run is None and second.commands == ["hero --help"]
    assert with_budget(first.commands[0]) == "hero pretrain --config c.yaml train.num_train_steps=2"
    assert with_budget("hero plot runs/x") == "hero plot runs/x"


def static_problems(block: Block) -> list[str]:
    """What is wrong in the commands of a block that is not run (unknown commands, options, files)."""
    from hero.cli import build_parser

    parser = build_parser()
    problems = []
    for command in block.commands:
        words = shlex.split(command, comments=True)
        argv = hero_argv(words)
        if argv is not None:
            try:
                parser.parse_args(argv)
            except SystemExit:
                problems.append(f"{block.name}: `{command}` does not parse with the hero CLI")
        if words[:1] == ["make"]:
            proc = subprocess.run(["make", "-n", "-C", str(REPO), *words[1:]], capture_output=True, text=True)
            if proc.returncode != 0:
                problems.append(f"{block.name}: `{command}`: {proc.stderr.strip()}")
        for w in words:
            for part in w.split("="):
                if part.startswith(LINKED) and not (REPO / part).exists():
                    problems.append(f"{block.name}: `{command}` names {part}, which does not exist")
    return problems


def test_static_check_catches_unknown_options_files_and_targets(capsys):
    block = Block(REPO / "README.md", 1, ["hero pretrain --config configs/pretrain/nope.yaml",
                                          "torchrun --nproc-per-node 8 -m hero predict --bogus 1",
                                          "make no-such-target", "hero info checkpoints/x"], "a reason here")
    problems = static_problems(block)
    assert len(problems) == 3 and "nope.yaml" in problems[0] and "--bogus" in problems[1]
    assert "no-such-target" in problems[2]


@pytest.mark.parametrize("block", [b for b in _all_blocks() if b.not_run is not None], ids=lambda b: b.name)
def test_blocks_not_run_still_name_real_commands_options_and_files(block, capsys):
    assert static_problems(block) == []


def _run_doc(doc: Path, tmp_path: Path) -> None:
    for name in LINKED:
        (tmp_path / name).symlink_to(REPO / name)
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1",
           "VIRTUAL_ENV": str(Path(bindir).parent)}
    for block in shell_blocks(doc):
        if block.not_run is not None:
            continue
        # One bash per block, as if pasted into a terminal: variables set by a line reach the next.
        script = "\n".join(with_budget(c) for c in block.commands)
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c",
                               "trap 'echo \"failed: $BASH_COMMAND\" >&2' ERR\n" + script],
                              cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, (f"{block.name} exited {proc.returncode}:\n{script}\n"
                                      f"{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("doc", [d for d in DOCS if any(b.not_run is None for b in shell_blocks(d))],
                         ids=lambda d: str(d.relative_to(REPO)))
def test_doc_commands_run_as_written(doc, tmp_path):
    _run_doc(doc, tmp_path)
