"""One bad-input case, the workspace it runs in, and the checks every outcome must pass.

A `Case` is a ``hero`` command line built from a `Workspace` (a fresh directory per case, plus
shared artifacts built once per session: a small synthetic corpus, a fine-tuned tiny VCMR run, a
search index). `run_case` runs it in-process through `hero.cli.main` (an escaping exception is a
traceback) or, for signals, umask, resource limits and environment changes, in a subprocess
(``python -m hero``). `check_outcome` asserts what every case promises:

* ``expect="error"``: exit status 2, no traceback, and exactly one stderr line carrying
  ``error:``, of the form ``hero <command>: error: ...``, matching ``match``;
* ``expect="ok"``: exit status 0, no traceback, ``match`` (if given) found in stdout + stderr;

then the case's own ``check`` (nothing lost, nothing half-written, a counted skip, ...).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ERROR_LINE = re.compile(r"^hero [\w-]+(?: [\w-]+)?: error: \S")


@dataclass
class Outcome:
    """What a run gave: exit status, captured streams, and whether a traceback escaped."""

    rc: int
    out: str
    err: str
    traceback: str | None
    seconds: float
    argv: list[str] = field(default_factory=list)

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if "error:" in ln]

    def summary(self) -> str:
        """One line for the matrix table: the exit status and the message the user sees."""
        if self.traceback:
            return f"exit {self.rc}, TRACEBACK: {self.traceback.strip().splitlines()[-1]}"
        lines = self.error_lines or [ln for ln in (self.err + self.out).splitlines() if ln.strip()][-1:]
        return f"exit {self.rc}: {lines[0].strip() if lines else '(no output)'}"


@dataclass
class Case:
    """One bad input or fault, the command that meets it, and the outcome it must have.

    Attributes:
        id: unique slug (the test id and the matrix row).
        area: a short group name for the matrix ("files", "stores", "weights", "data", ...).
        what: the input or fault, in words, for the matrix.
        argv: ``ws -> list[str]``, the command line after ``hero``; it may prepare files in
            ``ws.tmp`` first (that is the case's setup).
        defect: the defect number in issue 14, or None for a case that already behaved.
        expect: ``"error"`` (exit 2 with one named line) or ``"ok"`` (exit 0).
        match: regex searched in the error line (``"error"``) or in stdout + stderr (``"ok"``).
        check: ``(ws, outcome) -> None``, further assertions (files untouched, counts, ...).
        isolated: run as ``python -m hero`` in a subprocess (signals, SIGBUS, umask, rlimits).
        env: extra environment for an isolated run.
        preexec: callable run in the child before exec (isolated runs only), e.g. set a umask.
        timeout: seconds an isolated run may take.
    """

    id: str
    area: str
    what: str
    argv: Callable[[Workspace], list[str]]
    defect: int | None = None
    expect: str = "error"
    match: str | None = None
    check: Callable[[Workspace, Outcome], None] | None = None
    isolated: bool = False
    env: dict[str, str] = field(default_factory=dict)
    preexec: Callable[[], None] | None = None
    timeout: float = 300.0

    def __post_init__(self) -> None:
        if self.expect not in ("error", "ok"):
            raise ValueError(f"case {self.id}: expect must be 'error' or 'ok', not {self.expect!r}")


class Workspace:
    """A fresh directory for one case (``tmp``) and the session's shared artifacts.

    The shared artifacts are built once, lazily, under ``shared`` and must never be modified by a
    case: take a private copy with `copy` before corrupting anything.
    """

    def __init__(self, tmp: Path, shared: Path):
        self.tmp = Path(tmp)
        self.shared = Path(shared)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.shared.mkdir(parents=True, exist_ok=True)

    # -- shared artifacts (built once per session) -------------------------------------------

    def corpus(self) -> Path:
        """A small synthetic corpus (all four tasks, train/val/test), read-only for cases."""
        path = self.shared / "corpus"
        if not (path / "corpus.json").is_file():
            from hero.data.synth import SynthConfig, build

            build(SynthConfig(videos=18, val_videos=4, test_videos=3, queries_per_video=2, qa_per_video=2,
                              statements_per_video=2, captions_per_video=1, min_frames=10, max_frames=14,
                              vocab_size=400), path, log=lambda *_: None)
        return path

    def vcmr_run(self) -> Path:
        """A tiny VCMR model fine-tuned for a few steps on `corpus` (a run directory)."""
        run = self.shared / "vcmr_run"
        if not (run / "metrics.json").is_file():
            corpus = self.corpus()
            config = self.shared / "vcmr_tiny.yaml"
            config.write_text(
                f"output_dir: {run}\ntask: vcmr\ndataset: tvr\ncorpus: {corpus}\nmodel: {{preset: hero-tiny}}\n"
                "task_config: {vsm: {hard_negative_start_step: 5}, max_vcmr_video: 5, max_after_nms: 20}\n"
                "eval_batch_size: 4\noptim: {lr: 1.0e-3, warmup_steps: 2}\n"
                "train: {num_train_steps: 2, batch_size: 4, num_workers: 0, save_every: 2, progress: false, "
                "device: cpu}\n")
            _quiet_main(["finetune", "--config", str(config)])
        return run

    def index(self) -> Path:
        """A search index of `corpus` (val split) built with `vcmr_run`."""
        path = self.shared / "index"
        if not (path / "meta.json").is_file():
            _quiet_main(["index", "--model", str(self.vcmr_run()), "--corpus", str(self.corpus()), "--out", str(path),
                         "--dataset", "tvr", "--split", "val", "--device", "cpu"])
        return path

    # -- per-case helpers --------------------------------------------------------------------

    def copy(self, src: Path, name: str | None = None) -> Path:
        """A private copy of a file or directory under ``tmp`` (to corrupt or fill)."""
        dst = self.tmp / (name or Path(src).name)
        if Path(src).is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
        return dst

    def write(self, name: str, content: str | bytes) -> Path:
        """A file under ``tmp`` with ``content`` (bytes written as they are)."""
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path


def _quiet_main(argv: list[str]) -> None:
    from hero.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"building a shared artifact failed: hero {' '.join(argv)}\n{err.getvalue()}")


def run_case(case: Case, ws: Workspace) -> Outcome:
    """Run ``case`` in ``ws`` (in-process, or as a subprocess when ``case.isolated``)."""
    argv = [str(a) for a in case.argv(ws)]
    start = time.perf_counter()
    if case.isolated:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **case.env}
        proc = subprocess.run([sys.executable, "-m", "hero", *argv], capture_output=True, text=True, env=env,
                              cwd=ws.tmp, timeout=case.timeout, preexec_fn=case.preexec)
        tb = proc.stderr if ("Traceback (most recent call last)" in proc.stderr or proc.returncode < 0) else None
        if proc.returncode < 0 and not tb:
            tb = f"killed by signal {-proc.returncode}"
        return Outcome(proc.returncode, proc.stdout, proc.stderr, tb or None, time.perf_counter() - start, argv)
    from hero.cli import main

    out, err = io.StringIO(), io.StringIO()
    tb = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse: exit 2 with its usage line
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - an escaping exception is exactly what we look for
            rc, tb = 1, traceback.format_exc()
    return Outcome(int(rc or 0), out.getvalue(), err.getvalue(), tb, time.perf_counter() - start, argv)


def check_outcome(case: Case, ws: Workspace, outcome: Outcome) -> None:
    """Assert what ``case`` promises (see the module docstring); raises AssertionError."""
    assert outcome.traceback is None, f"{case.id}: a traceback escaped:\n{outcome.traceback}"
    if case.expect == "error":
        assert outcome.rc == 2, f"{case.id}: exit {outcome.rc}, want 2\nstderr: {outcome.err}\nstdout: {outcome.out}"
        lines = outcome.error_lines
        # argparse's own errors ("hero: error: ...", "hero search: error: argument --top: ...") count
        assert len(lines) == 1, f"{case.id}: want exactly one error line, got {lines!r}"
        line = lines[0]
        assert ERROR_LINE.match(line) or line.startswith("hero: error:"), f"{case.id}: malformed error line {line!r}"
        if case.match:
            assert re.search(case.match, line), f"{case.id}: {line!r} does not match {case.match!r}"
    else:
        assert outcome.rc == 0, f"{case.id}: exit {outcome.rc}, want 0\nstderr: {outcome.err}"
        if case.match:
            assert re.search(case.match, outcome.out + outcome.err), \
                f"{case.id}: output does not match {case.match!r}\n{outcome.out}\n{outcome.err}"
    if case.check:
        case.check(ws, outcome)
