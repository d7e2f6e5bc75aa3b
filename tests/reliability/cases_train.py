"""Training runs (`hero pretrain`, `hero finetune`): bad configs, overrides and settings, progress
and log output, and a run killed with SIGKILL then resumed.

A run that fails to start must leave its output directory as it was (no ``config.yaml``), so the
corrected command starts in the same directory: the "fixed rerun" checks run it. Runs are tiny
(hero-tiny, 2 steps, the shared synthetic corpus; fine-tuning without evaluation where the case is
not about evaluation).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reliability.matrix import Case, Outcome, Workspace, _quiet_main


def _pretrain_yaml(ws: Workspace, name: str = "pre.yaml", extra: str = "", steps: int = 2, save_every: int = 2) -> Path:
    return ws.write(name, f"output_dir: {ws.tmp / 'run'}\ndata: {{corpora: [{ws.corpus()}]}}\n"
                          "model: {preset: hero-tiny}\noptim: {lr: 1.0e-3, warmup_steps: 1}\n"
                          f"train: {{num_train_steps: {steps}, batch_size: 4, num_workers: 0, "
                          f"save_every: {save_every}, progress: false, device: cpu, threads: 1}}\n" + extra)


def _finetune_yaml(ws: Workspace, name: str = "ft.yaml", evaluate: bool = False, extra: str = "") -> Path:
    return ws.write(name, f"output_dir: {ws.tmp / 'run'}\ntask: vcmr\ndataset: tvr\ncorpus: {ws.corpus()}\n"
                          "model: {preset: hero-tiny}\n"
                          "task_config: {vsm: {hard_negative_start_step: 5}, max_vcmr_video: 5, max_after_nms: 20}\n"
                          f"eval_batch_size: 4\neval_split: {'val' if evaluate else 'null'}\n"
                          "optim: {lr: 1.0e-3, warmup_steps: 1}\n"
                          "train: {num_train_steps: 2, batch_size: 4, num_workers: 0, save_every: 2, progress: false, "
                          "device: cpu}\n" + extra)


def _untouched_then_fixed(command: str, fixed: list[str] | None = None):
    """Check: the failed run wrote nothing into its directory; then the corrected command (the
    same config without the bad override, plus ``fixed``) starts there and finishes."""

    def check(ws: Workspace, outcome: Outcome) -> None:
        run = ws.tmp / "run"
        assert not (run / "config.yaml").exists(), "a run that failed to start left config.yaml behind"
        assert not run.exists() or not any(run.iterdir()), f"a failed run wrote into {run}: {list(run.iterdir())}"
        config = next(a for i, a in enumerate(outcome.argv) if outcome.argv[i - 1] == "--config")
        _quiet_main([command, "--config", config, *(fixed or [])])
        assert (run / "model" / "model.safetensors").is_file() and (run / "config.yaml").is_file()

    return check


def _print_config_fails_alike(ws: Workspace, outcome: Outcome) -> None:
    assert not (ws.tmp / "run").exists(), "--print-config wrote into the run directory"


def _nothing_written(ws: Workspace, outcome: Outcome) -> None:
    assert not (ws.tmp / "run").exists(), f"a refused run wrote {list((ws.tmp / 'run').iterdir())}"


# -- SIGKILL and resume ------------------------------------------------------------------------


def _killed_run(ws: Workspace) -> list[str]:
    """Start an uninterrupted run and a second one of the same config that is SIGKILLed right after
    its first checkpoint; the case resumes the killed one."""
    steps = 24
    straight = _pretrain_yaml(ws, "straight.yaml", steps=steps, save_every=4)
    straight.write_text(straight.read_text().replace(str(ws.tmp / "run"), str(ws.tmp / "straight")))
    victim = _pretrain_yaml(ws, "victim.yaml", steps=steps, save_every=4)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = lambda cfg: subprocess.Popen([sys.executable, "-m", "hero", "pretrain", "--config", str(cfg)],  # noqa: E731
                                       env=env, cwd=ws.tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ref, proc = run(straight), run(victim)
    latest = ws.tmp / "run" / "checkpoints" / "latest"
    deadline = time.monotonic() + 240
    while not latest.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert alive, f"the run ended before it could be killed: {proc.stderr.read().decode()[-500:]}"
    assert ref.wait(timeout=240) == 0, ref.stderr.read().decode()[-2000:]
    (ws.tmp / "killed_at.txt").write_text(latest.read_text() if latest.is_file() else "none")
    return ["pretrain", "--config", str(victim)]


def _resumed_equals_straight(ws: Workspace, outcome: Outcome) -> None:
    from safetensors.torch import load_file

    killed_at = (ws.tmp / "killed_at.txt").read_text().strip()
    assert killed_at != "step-00000024", "the kill came after the last step"
    assert "training from step" in outcome.out and "training from step 0 " not in outcome.out or killed_at == "none"
    a = load_file(str(ws.tmp / "run" / "model" / "model.safetensors"))
    b = load_file(str(ws.tmp / "straight" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    differ = [k for k in a if not (a[k].shape == b[k].shape and bool((a[k] == b[k]).all()))]
    assert not differ, f"resumed weights differ from the uninterrupted run's: {differ[:5]}"
    log = [json.loads(line) for line in (ws.tmp / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 25)), "the resumed log is not one clean curve"


# -- output checks -----------------------------------------------------------------------------


def _progress_lines(ws: Workspace, outcome: Outcome) -> None:
    assert "\r" not in outcome.err + outcome.out, "carriage-return frames in a non-terminal log"


def _compact_eval(ws: Workspace, outcome: Outcome) -> None:
    lines = [ln for ln in outcome.out.splitlines() if ln.strip()]
    assert len(lines) <= 12, f"{len(lines)} lines of output for a 2-step run with one evaluation:\n{outcome.out}"
    assert "\r" not in outcome.err + outcome.out
    evals = [json.loads(ln) for ln in (ws.tmp / "run" / "log.jsonl").read_text().splitlines() if '"eval"' in ln]
    assert evals and len(evals[-1]["eval"]) > 100, "the full metric set is not in log.jsonl"


def _stale_config(ws: Workspace) -> list[str]:
    """A run directory where an earlier hero left config.yaml of a run that never saved a checkpoint."""
    (ws.tmp / "run").mkdir()
    (ws.tmp / "run" / "config.yaml").write_text("model: {preset: hero-huge}\n")
    return ["finetune", "--config", str(_finetune_yaml(ws))]


def _finished_run_other_config(ws: Workspace) -> list[str]:
    config = _finetune_yaml(ws)
    _quiet_main(["finetune", "--config", str(config)])
    return ["finetune", "--config", str(config), "optim.lr=2.0e-3"]


def _run_kept(ws: Workspace, outcome: Outcome) -> None:
    assert (ws.tmp / "run" / "model" / "model.safetensors").is_file()
    assert "lr: 0.001" in (ws.tmp / "run" / "config.yaml").read_text()


P, F = "pretrain", "finetune"
CASES = [
    # -- defect 8: a run that fails before its first step leaves nothing; the fixed rerun starts --
    Case("train-bad-preset-then-fixed", "train", "`hero finetune` with an unknown `model.preset`, then the fixed rerun "
         "in the same output directory",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "model.preset=hero-huge"], defect=8,
         match=r"model\.preset: unknown preset 'hero-huge'", check=_untouched_then_fixed(F)),
    Case("train-bad-mix-then-fixed", "train", "`hero pretrain` with an unknown objective in `mix`, then the fixed "
         "rerun",
         lambda ws: [P, "--config", str(_pretrain_yaml(ws)), "mix.mlmm=1"], defect=8,
         match=r"mix: unknown objective 'mlmm'", check=_untouched_then_fixed(P)),
    Case("train-zero-mix-then-fixed", "train", "`hero pretrain` with every `mix` ratio 0, then the fixed rerun",
         lambda ws: [P, "--config", str(_pretrain_yaml(ws)), "mix={mlm: 0, vsm: 0}"], defect=8,
         match=r"mix: no objective has a ratio > 0", check=_untouched_then_fixed(P)),
    Case("train-bad-model-override-then-fixed", "train", "`hero pretrain` with an unknown `model.overrides` key, "
         "then the fixed rerun", lambda ws: [P, "--config", str(_pretrain_yaml(ws)), "model.overrides={hiden_size: 8}"],
         defect=8, match=r"model\.overrides: unknown HeroConfig key\(s\) \['hiden_size'\]",
         check=_untouched_then_fixed(P)),
    Case("train-missing-init-then-fixed", "train", "`hero finetune` with `model.init` naming a path that does not "
         "exist, then the fixed rerun", lambda ws: [F, "--config", str(_finetune_yaml(ws)),
                                                     f"model.init={ws.tmp / 'no-such-run'}"],
         defect=8, match=r"model\.init: .*no-such-run: no such file or directory", check=_untouched_then_fixed(F)),
    Case("train-init-not-a-model-then-fixed", "train", "`hero pretrain` with `model.init` naming a directory that "
         "holds no model (the corpus), then the fixed rerun",
         lambda ws: [P, "--config", str(_pretrain_yaml(ws)), f"model.init={ws.corpus()}"], defect=8,
         match=r"model\.init: .*: no model here", check=_untouched_then_fixed(P)),
    Case("train-missing-reference-init", "train", "`hero finetune` with `model.init=reference:FILE` and no such file",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), f"model.init=reference:{ws.tmp / 'hero.pt'}"],
         defect=8, match=r"model\.init: .*hero\.pt: no such file", check=_untouched_then_fixed(F)),
    Case("train-bad-corpus-then-fixed", "train", "`hero finetune` with a `corpus` that does not exist, then the fixed "
         "rerun", lambda ws: [F, "--config", str(_finetune_yaml(ws)), f"corpus={ws.tmp / 'nothing'}"], defect=8,
         match=r"nothing: corpus directory not found", check=_untouched_then_fixed(F)),
    Case("train-unknown-task", "train", "`hero finetune` with an unknown `task`",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "task=vmcr"], defect=None, match=r"unknown task 'vmcr'",
         check=_untouched_then_fixed(F)),
    Case("train-task-dataset-mismatch", "train", "`hero finetune` of task vcmr on dataset tvqa",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "dataset=tvqa"], defect=8,
         match=r"dataset: model task vcmr reads datasets tvr, how2r, didemo; got tvqa "
               r"\(tvqa is read by task video_qa\)",
         check=_untouched_then_fixed(F)),
    Case("train-batch-too-large", "train", "`hero finetune` with a batch larger than the training videos",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "train.batch_size=500"], defect=8,
         match=r"cannot fill a global batch of 500", check=_untouched_then_fixed(F)),
    Case("train-missing-eval-split", "train", "`hero finetune` with an `eval_split` the corpus does not have",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "eval_split=dev"], defect=8,
         match=r"no annotations tvr/dev", check=_untouched_then_fixed(F)),
    Case("train-bad-task-config", "train", "`hero finetune` with a task setting out of range in `task_config`",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "task_config.vsm.max_txt_len=0"], defect=8,
         match=r"task_config.*vsm\.max_txt_len must be >= 1, got 0", check=_untouched_then_fixed(F)),
    Case("train-print-config-bad-preset", "train", "`hero pretrain --print-config` with an unknown preset",
         lambda ws: [P, "--config", str(_pretrain_yaml(ws)), "--print-config", "model.preset=hero-huge"], defect=8,
         match=r"model\.preset: unknown preset", check=_print_config_fails_alike),
    Case("train-print-config-missing-init", "train", "`hero finetune --print-config` with a missing `model.init`",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "--print-config", "model.init=/no/such/run"], defect=8,
         match=r"model\.init: /no/such/run: no such file", check=_print_config_fails_alike),
    Case("train-print-config-bad-corpus", "train", "`hero finetune --print-config` with a corpus that does not exist",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "--print-config", f"corpus={ws.tmp / 'nothing'}"],
         defect=8, match=r"corpus directory not found", check=_print_config_fails_alike),
    Case("train-print-config-ok", "train", "`hero finetune --print-config` of a good config",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "--print-config"], expect="ok",
         match=r"task: vcmr", check=_print_config_fails_alike),
    Case("train-stale-config-of-unstarted-run", "train", "`hero finetune` into a directory where an earlier version "
         "left `config.yaml` of a run that never saved a checkpoint", _stale_config, defect=8, expect="ok",
         match=r"replacing the config of a run that never saved a checkpoint"),
    Case("train-finished-run-other-config", "train", "`hero finetune` into the directory of a finished run with a "
         "different `optim.lr`", _finished_run_other_config, match=r"holds a run with a different config "
         r"\(optim\.lr: 0\.001 -> 0\.002\)", check=_run_kept),
    # -- defect 10: every numeric setting is range-checked, naming the key and the range --------
    Case("train-log-every-zero", "train", "`train.log_every: 0` in the run config",
         lambda ws: [P, "--config", str(ws.write("pre0.yaml", _pretrain_yaml(ws).read_text().replace(
             "threads: 1}", "threads: 1, log_every: 0}")))], defect=10,
         match=r"pre0\.yaml\.train\.log_every must be >= 1, got 0", check=_nothing_written),
    Case("train-eval-every-negative", "train", "`train.eval_every=-1` on the command line",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "train.eval_every=-1"], defect=10,
         match=r"train\.eval_every must be >= 0 \(0: only at the end\), got -1", check=_nothing_written),
    Case("train-lr-zero", "train", "`optim.lr=0`", lambda ws: [P, "--config", str(_pretrain_yaml(ws)), "optim.lr=0"],
         defect=10, match=r"optim\.lr must be > 0, got 0", check=_nothing_written),
    Case("train-lr-nan", "train", "`optim.lr=.nan` (YAML's NaN)",
         lambda ws: [P, "--config", str(_pretrain_yaml(ws)), "optim.lr=.nan"], defect=10,
         match=r"optim\.lr must be > 0, got nan", check=_nothing_written),
    Case("train-batch-size-zero", "train", "`train.batch_size=0`",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "train.batch_size=0"], defect=None,
         match=r"train\.batch_size must be >= 1, got 0", check=_nothing_written),
    Case("train-warmup-negative", "train", "`optim.warmup_steps=-5`",
         lambda ws: [P, "--config", str(_pretrain_yaml(ws)), "optim.warmup_steps=-5"], defect=10,
         match=r"optim\.warmup_steps must be >= 0, got -5", check=_nothing_written),
    Case("train-beta-one", "train", "`optim.betas=[0.9, 1.0]`",
         lambda ws: [P, "--config", str(_pretrain_yaml(ws)), "optim.betas=[0.9, 1.0]"], defect=10,
         match=r"optim\.betas\[1\] must be in \[0, 1\), got 1\.0", check=_nothing_written),
    Case("train-mask-prob-above-one", "train", "`mlm.mask_prob=1.5` (a probability)",
         lambda ws: [P, "--config", str(_pretrain_yaml(ws)), "mlm.mask_prob=1.5"], defect=10,
         match=r"mlm\.mask_prob must be in \[0, 1\], got 1\.5", check=_nothing_written),
    Case("train-save-every-zero", "train", "`train.save_every=0`",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "train.save_every=0"], defect=None,
         match=r"train\.save_every must be >= 1, got 0", check=_nothing_written),
    Case("train-num-workers-negative", "train", "`train.num_workers=-1`",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "train.num_workers=-1"], defect=10,
         match=r"train\.num_workers must be >= 0", check=_nothing_written),
    Case("train-eval-batch-zero", "train", "`eval_batch_size=0`",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "eval_batch_size=0"], defect=10,
         match=r"eval_batch_size must be >= 1, got 0", check=_nothing_written),
    # -- defect 22: a bad override is named as the override ------------------------------------
    Case("train-override-unknown-key", "train", "`hero pretrain ... train.bad_key=1` (an unknown key on the command "
         "line)", lambda ws: [P, "--config", str(_pretrain_yaml(ws)), "train.bad_key=1"], defect=22,
         match=r"override 'train\.bad_key=1': unknown key 'train\.bad_key'", check=_nothing_written),
    Case("train-override-wrong-type", "train", "`optim.lr=fast` on the command line",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "optim.lr=fast"], defect=22,
         match=r"override 'optim\.lr=fast': optim\.lr: expected a number", check=_nothing_written),
    Case("train-override-no-equals", "train", "an override without `=`",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "optim.lr"],
         match=r"override 'optim\.lr': expected key=value", check=_nothing_written),
    Case("train-yaml-unknown-key", "train", "an unknown key in the YAML file (named with the file)",
         lambda ws: [F, "--config", str(ws.write("typo.yaml", _finetune_yaml(ws).read_text() + "optimm: {}\n"))],
         match=r"typo\.yaml: unknown key\(s\) 'optimm'", check=_nothing_written),
    # -- defect 15: progress outside a terminal ------------------------------------------------
    Case("train-progress-lines-without-terminal", "train", "`hero finetune` with stderr not a terminal: progress "
         "lines (step, loss, throughput, ETA) instead of a bar",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "train.progress=true", "train.progress_every=0.001"],
         defect=15, expect="ok", match=r"run step 2/2 \(100%\): loss \d+\.\d+ \(step 2\), [\d.]+ items/s, "
         r"[\d.]+ steps/s, ETA 0s", check=_progress_lines),
    Case("train-progress-env", "train", "`HERO_PROGRESS_EVERY=0.001 hero pretrain ...` (the environment switch)",
         lambda ws: [P, "--config", str(_pretrain_yaml(ws))], defect=15, expect="ok", isolated=True,
         env={"HERO_PROGRESS_EVERY": "0.001"}, match=r"run step 1/2 \(50%\): loss .*ETA", check=_progress_lines),
    Case("train-progress-env-bad", "train", "`HERO_PROGRESS_EVERY=often`",
         lambda ws: [P, "--config", str(_pretrain_yaml(ws))],
         defect=15, isolated=True, env={"HERO_PROGRESS_EVERY": "often"},
         match=r"HERO_PROGRESS_EVERY must be a number of seconds >= 0", check=_nothing_written),
    Case("train-progress-every-negative", "train", "`train.progress_every=-1`",
         lambda ws: [F, "--config", str(_finetune_yaml(ws)), "train.progress_every=-1"], defect=15,
         match=r"train\.progress_every must be >= 0 \(0: never\), got -1", check=_nothing_written),
    # -- defect 20: a compact evaluation table, the full set in log.jsonl ----------------------
    Case("train-compact-eval-output", "train", "`hero finetune` with an evaluation: a few lines of main metrics, "
         "not 144 (the full set goes to log.jsonl)",
         lambda ws: [F, "--config", str(_finetune_yaml(ws, evaluate=True))], defect=20, expect="ok",
         match=r"step 2: eval\n  VCMR: 0\.5-r1 .*\n  SVMR: .*\n  VR: r1 .*\n  \(\+\d+ more metrics in log\.jsonl\)",
         check=_compact_eval),
    # -- SIGKILL mid-training, then resume -----------------------------------------------------
    Case("train-sigkill-then-resume", "train", "`hero pretrain` killed with SIGKILL right after its first checkpoint, "
         "then run again: it resumes and ends with the weights of an uninterrupted run", _killed_run, expect="ok",
         isolated=True, match=r"training from step [1-9]", check=_resumed_equals_straight),
]
