"""The training engine: configs, schedule, mixing, step-indexed batches, resume, DDP equality."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hero.config import TextTokens, hero_tiny
from hero.data.synthetic import random_clips
from hero.errors import HeroError
from hero.objectives import OBJECTIVES, HeroForPretraining
from hero.train import checkpoint as ckpt
from hero.train.config import OptimConfig, TrainConfig, apply_override, from_dict, load_config
from hero.train.data import Mix, PretrainBatches, derive_seed
from hero.train.engine import Engine
from hero.train.optim import lr_factor, param_groups, set_lr
from hero.train.pretrain import PretrainConfig, PretrainStep

JOB = Path(__file__).parent / "jobs" / "tiny_pretrain.py"
REPO = Path(__file__).resolve().parents[1]


class InMemory:
    def __init__(self, clips):
        self.clips = {c.vid: c for c in clips}

    def clip(self, vid):
        return self.clips[vid]


@pytest.fixture
def setup_tiny():
    config = hero_tiny()
    tokens = TextTokens(mask_id=config.vocab_size - 1, random_range=(4, config.vocab_size - 1))
    clips = random_clips(24, config.vfeat_dim, min_frames=5, max_frames=12, min_tokens=3, max_tokens=7,
                         token_range=tokens.random_range, seed=1)
    objectives = {n: OBJECTIVES[n][1](OBJECTIVES[n][0](), tokens) for n in ("mlm", "mfm-nce", "fom", "vsm")}
    return config, tokens, clips, objectives


def make_batches(clips, objectives, batch_size=4, rank=0, world=1, seed=0, mix=None):
    mix = mix or Mix({"mlm": 2, "mfm-nce": 2, "fom": 1, "vsm": 2})
    return PretrainBatches([(InMemory(clips), [c.vid for c in clips])], objectives, mix, batch_size, seed,
                           rank=rank, world_size=world)


def train_cfg(steps, **kw):
    base = dict(num_train_steps=steps, batch_size=4, num_workers=0, save_every=5, keep_last=2, progress=False)
    return TrainConfig(**{**base, **kw})


# -- config ------------------------------------------------------------------------------------


def test_config_rejects_unknown_and_mistyped_keys(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(HeroError, match=r"run.yaml.optim: unknown key\(s\) 'lrr'"):
        load_config(PretrainConfig, path)
    with pytest.raises(HeroError, match=r"train.batch_size: expected an integer"):
        from_dict(PretrainConfig, {"train": {"batch_size": "big"}})
    with pytest.raises(HeroError, match="precision"):
        from_dict(PretrainConfig, {"train": {"precision": "fp8"}})
    with pytest.raises(HeroError, match=r"config.mlm.mask_prob: expected a number"):
        from_dict(PretrainConfig, {"mlm": {"mask_prob": "x"}})


def test_config_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 1e-4\nmix: {mlm: 1, vsm: 3}\ntrain:\n  num_train_steps: 50\n")
    cfg = load_config(PretrainConfig, path, ["optim.lr=2e-4", "vsm.margin=0.2", "optim.betas=[0.9, 0.99]"])
    assert cfg.optim.lr == 2e-4 and cfg.train.num_train_steps == 50
    assert cfg.mix == {"mlm": 1.0, "vsm": 3.0} and cfg.vsm.margin == 0.2 and cfg.optim.betas == (0.9, 0.99)
    assert cfg.mffr.loss == "mffr" and cfg.mfm_nce.loss == "nce"
    with pytest.raises(HeroError, match="key=value"):
        apply_override({}, "optim.lr")


# -- optimizer and schedule --------------------------------------------------------------------


def test_lr_schedule_is_the_reference_warmup_linear():
    assert lr_factor(5, 10, 100) == 0.5
    assert lr_factor(10, 10, 100) == 1.0
    assert lr_factor(55, 10, 100) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100) == 0.0
    assert lr_factor(50, 10, 100, "constant") == 1.0


def test_param_groups_split_decay_and_heads(setup_tiny):
    config, *_ = setup_tiny
    model = HeroForPretraining(config)
    groups = param_groups(model, OptimConfig(lr_mul=10.0))
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            n = names[id(p)]
            assert (g["weight_decay"] == 0.0) == (n.endswith("bias") or "LayerNorm" in n), n
            assert (g["lr_scale"] == 10.0) == (not n.startswith("hero.")), n
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_tvc_lm_head_trains_at_the_base_rate_and_the_decoder_at_lr_mul(setup_tiny):
    """The reference's TVC LM head lives inside its video encoder (base rate); only the decoder and
    its input embeddings are outside it and get ``lr_mul`` (configs/finetune/tvc.yaml: 10)."""
    from hero.tasks.captioning import HeroForTvc, TvcConfig

    config, *_ = setup_tiny
    model = HeroForTvc(config, TvcConfig(num_attention_heads=4, intermediate_size=64, max_position_embeddings=64))
    groups = param_groups(model, OptimConfig(lr=1e-4, lr_mul=10.0))
    scale = {n: g["lr_scale"] for g in groups for p in g["params"] for n, q in model.named_parameters() if q is p}
    assert len(scale) == len(list(model.parameters()))
    fast = sorted({n.split(".")[0] for n, s in scale.items() if s == 10.0})
    slow = sorted({n.split(".")[0] for n, s in scale.items() if s == 1.0})
    assert fast == ["decoder", "emb_LayerNorm", "position_embeddings"]
    assert slow == ["hero", "mlm_head"]
    # and the rate each group trains at, after the schedule has set it
    optimizer = torch.optim.AdamW(groups, lr=1e-4)
    set_lr(optimizer, 1e-4, 1.0)
    rate = {n: g["lr"] for g in optimizer.param_groups for p in g["params"] for n, q in model.named_parameters()
            if q is p}
    assert {r for n, r in rate.items() if n.split(".")[0] in slow} == {1e-4}
    assert [r for n, r in rate.items() if n.split(".")[0] in fast] == pytest.approx([1e-3] * sum(
        n.split(".")[0] in fast for n in rate))


# -- mixing and batches ------------------------------------------------------------------------


def test_mix_is_reproducible_and_follows_the_ratios():
    mix = Mix({"mlm": 2, "mfm-nce": 2, "fom": 1, "vsm": 2})
    draws = [mix.draw(seed=7, step=s)[0] for s in range(7000)]
    assert draws == [mix.draw(seed=7, step=s)[0] for s in range(7000)]
    assert draws != [mix.draw(seed=8, step=s)[0] for s in range(7000)]
    for name, ratio in {"mlm": 2, "mfm-nce": 2, "fom": 1, "vsm": 2}.items():
        assert abs(draws.count(name) / 7000 - ratio / 7) < 0.02, name
    with pytest.raises(HeroError):
        Mix({"mlm": 0})


def test_batches_are_a_function_of_the_step(setup_tiny):
    _, _, clips, objectives = setup_tiny
    batches = make_batches(clips, objectives)
    (m1, b1), (m2, b2) = batches[13], make_batches(clips, objectives)[13]
    assert m1 == m2
    assert torch.equal(b1.video.frame_feats, b2.video.frame_feats)


def test_ranks_read_disjoint_slices_of_the_global_batch(setup_tiny):
    _, _, clips, objectives = setup_tiny
    one = make_batches(clips, objectives, batch_size=8)
    two = [make_batches(clips, objectives, batch_size=4, rank=r, world=2) for r in range(2)]
    for step in range(6):  # crosses an epoch boundary (24 clips, 8 per global batch)
        whole = one.video_ids(0, one.positions(step))
        parts = [b.video_ids(0, b.positions(step)) for b in two]
        assert whole == parts[0] + parts[1]
        assert len(set(whole)) == len(whole)
    # every clip once per epoch
    epoch = [v for s in range(3) for v in one.video_ids(0, one.positions(s))]
    assert sorted(epoch) == sorted(c.vid for c in clips)


def test_clip_masks_do_not_depend_on_the_rank(setup_tiny):
    """A clip is masked the same way whether one process or two read it."""
    _, _, clips, objectives = setup_tiny
    mix = Mix({"mlm": 1})
    one = make_batches(clips, objectives, batch_size=4, mix=mix)[3][1]
    two = make_batches(clips, objectives, batch_size=2, rank=1, world=2, mix=mix)[3][1]
    m = two.masked_rows.numel()
    assert torch.equal(one.labels[-m:], two.labels)


def test_derive_seed_is_stable():
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3) != derive_seed(1, 2, 4)
    assert 0 <= derive_seed(5) < 2**63


# -- the loop ----------------------------------------------------------------------------------


def run_engine(run_dir, config, clips, objectives, steps, loss_fn=None, **kw):
    torch.manual_seed(0)
    model = HeroForPretraining(config)
    engine = Engine(model, train_cfg(steps, **kw), OptimConfig(lr=2e-3, warmup_steps=3), run_dir,
                    make_batches(clips, objectives), loss_fn or PretrainStep(objectives), find_unused_parameters=True)
    return model, engine


@pytest.mark.slow  # ~65 s of CPU: the longest test outside the slow set
def test_training_lowers_each_objective_loss(tmp_path, setup_tiny):
    config, _, clips, objectives = setup_tiny
    model, engine = run_engine(tmp_path, config, clips, objectives, 60)
    engine.run()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 61))
    for name in ("mlm", "mfm-nce"):  # random clips: frame order (FOM) carries no signal here
        losses = [r["loss"] for r in records if r["objective"] == name]
        assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, name
    assert (tmp_path / "tb").is_dir() and ckpt.latest_checkpoint(tmp_path).name == "step-00000060"


def test_interrupted_run_resumes_to_identical_weights(tmp_path, setup_tiny):
    config, _, clips, objectives = setup_tiny
    straight, engine = run_engine(tmp_path / "a", config, clips, objectives, 14)
    engine.run()

    step_fn = PretrainStep(objectives)

    def dies_at_12(model, meta, batch, step):
        if step == 12:
            raise KeyboardInterrupt
        return step_fn(model, meta, batch, step)

    _, engine = run_engine(tmp_path / "b", config, clips, objectives, 14, loss_fn=dies_at_12, num_workers=1)
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    resumed, engine = run_engine(tmp_path / "b", config, clips, objectives, 14)
    assert engine.step == 10
    engine.run()
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 15))


def test_checkpoints_keep_the_last_n(tmp_path, setup_tiny):
    config, _, clips, objectives = setup_tiny
    _, engine = run_engine(tmp_path, config, clips, objectives, 12, save_every=3, keep_last=2)
    engine.run()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step-00000009", "step-00000012"]
    saved = tmp_path / "checkpoints" / "step-00000012"
    assert {p.name for p in saved.iterdir()} == {"config.json", "model.safetensors", "optimizer.safetensors",
                                                 "rng.safetensors", "trainer_state.json"}
    assert HeroForPretraining.from_pretrained(saved).load_report.missing == []


def test_non_finite_loss_stops_with_step_and_objective(tmp_path, setup_tiny):
    config, _, clips, objectives = setup_tiny
    step_fn = PretrainStep(objectives)

    def nan_at_4(model, meta, batch, step):
        out = step_fn(model, meta, batch, step)
        if step == 4:
            out["loss"] = out["loss"] * float("nan")
        return out

    _, engine = run_engine(tmp_path, config, clips, objectives, 8, loss_fn=nan_at_4)
    with pytest.raises(HeroError, match=r"non-finite loss at step 4 \(objective (mlm|mfm-nce|fom|vsm)\)"):
        engine.run()


def test_gradient_accumulation_averages_by_default(tmp_path, setup_tiny):
    """With 'mean', two micro-batches of one batch give the gradient of one; 'sum' doubles it."""
    config, _, clips, objectives = setup_tiny
    batch_meta, batch = make_batches(clips, objectives, mix=Mix({"fom": 1}))[0]
    grads = {}
    for reduction in ("mean", "sum"):
        torch.manual_seed(0)
        model = HeroForPretraining(config).eval()
        engine = Engine(model, train_cfg(1, grad_accum_steps=2, grad_accum_reduction=reduction), OptimConfig(),
                        tmp_path / reduction, [], PretrainStep(objectives), find_unused_parameters=True)
        scale = 0.5 if reduction == "mean" else 1.0
        for last in (False, True):
            engine._micro_step(batch_meta, batch, scale, sync=last)
        grads[reduction] = model.fom_head.linear_2.weight.grad.clone()
    assert torch.allclose(grads["sum"], 2 * grads["mean"], atol=1e-7)


# -- processes ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / f"step-{step:08d}" / "model.safetensors"))


@pytest.mark.slow
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path):
    """torchrun + gloo: 2 processes × 4 clips train like 1 process × 8 clips (dropout off)."""
    common = ["--steps", "10", "--save-every", "10", "--no-dropout"]
    subprocess.run([sys.executable, str(JOB), str(tmp_path / "one"), "--batch-size", "8", *common],
                   check=True, env=_env(), capture_output=True)
    torchrun = Path(sys.executable).with_name("torchrun")
    subprocess.run([str(torchrun), "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                    str(_free_port()), str(JOB), str(tmp_path / "two"), "--batch-size", "4", *common],
                   check=True, env=_env(), capture_output=True)
    logs = [[json.loads(line) for line in (tmp_path / d / "log.jsonl").read_text().splitlines()]
            for d in ("one", "two")]
    assert [r["objective"] for r in logs[0]] == [r["objective"] for r in logs[1]]
    assert {r["objective"] for r in logs[0]} == {"mlm", "mfm-nce", "fom", "vsm"}
    for a, b in zip(*logs):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-5), a["step"]
    wa, wb = _weights(tmp_path / "one", 10), _weights(tmp_path / "two", 10)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=2e-6, msg=k)


def _torchrun(run_dir: Path, *args: str) -> subprocess.Popen:
    torchrun = Path(sys.executable).with_name("torchrun")
    return subprocess.Popen([str(torchrun), "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                             str(_free_port()), str(JOB), str(run_dir), *args], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _losses(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_processes_equal_one_after_one_step_without_dropout(tmp_path):
    """What the README promises exactly: dropout off, 2 processes × 4 clips and 1 process × 8 clips
    give the same first loss and the same weights after one optimizer step (fp32 tolerance)."""
    common = ["--steps", "1", "--save-every", "1", "--no-dropout"]
    two = _torchrun(tmp_path / "two", "--batch-size", "4", *common)
    subprocess.run([sys.executable, str(JOB), str(tmp_path / "one"), "--batch-size", "8", *common],
                   check=True, env=_env(), capture_output=True)
    assert two.wait() == 0, two.stderr.read().decode()[-2000:]
    (a,), (b,) = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert a["objective"] == b["objective"]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-6)
    wa, wb = _weights(tmp_path / "one", 1), _weights(tmp_path / "two", 1)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow
def test_two_processes_with_dropout_match_one_within_seed_noise(tmp_path):
    """Dropout on: each rank draws its own masks, so 2 processes do not reproduce 1 process step by
    step, but over 200 steps their loss curve is that of 1 process up to the dropout noise.

    ``--train-seed`` changes only the dropout draws (data, objective order, masks and initial weights
    stay fixed), so the spread of 1-process runs over train seeds is exactly that noise. The mean loss
    of the last 50 steps of the 2-process run must lie within 3 standard deviations of the 1-process
    means, and that spread must be small against what training changes (the first-50 to last-50
    drop), so a real difference (e.g. unsynchronised gradients) would not hide in it."""
    steps, seeds = 200, (5, 6, 7)
    common = ["--steps", str(steps), "--save-every", str(steps)]
    two = _torchrun(tmp_path / "two", "--batch-size", "4", "--train-seed", "5", *common)
    ones = [subprocess.Popen([sys.executable, str(JOB), str(tmp_path / f"one-{s}"), "--batch-size", "8",
                              "--train-seed", str(s), *common], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for s in seeds]
    for proc in (two, *ones):
        assert proc.wait() == 0, proc.stderr.read().decode()[-2000:]
    logs = {name: _losses(tmp_path / name) for name in ("two", *(f"one-{s}" for s in seeds))}
    order = [r["objective"] for r in logs["two"]]
    assert len(order) == steps and all([r["objective"] for r in log] == order for log in logs.values())
    first = {name: sum(r["loss"] for r in log[:50]) / 50 for name, log in logs.items()}
    last = {name: sum(r["loss"] for r in log[-50:]) / 50 for name, log in logs.items()}
    one_last = [last[f"one-{s}"] for s in seeds]
    mean = sum(one_last) / len(one_last)
    std = (sum((x - mean) ** 2 for x in one_last) / (len(one_last) - 1)) ** 0.5
    assert std > 0  # dropout is on: the seeds really differ
    drop = first["one-5"] - last["one-5"]
    assert drop > 10 * std, (drop, std)
    assert abs(last["two"] - mean) <= 3 * std, (last["two"], one_last)


@pytest.mark.slow
def test_sigkill_at_any_moment_resumes_to_identical_weights(tmp_path):
    """Kill -9 the job at several moments (some during checkpoint writes); resuming always reaches
    the weights of the uninterrupted run."""
    args = ["--steps", "16", "--save-every", "2", "--workers", "1"]
    subprocess.run([sys.executable, str(JOB), str(tmp_path / "straight"), *args], check=True, env=_env(),
                   capture_output=True)
    reference = _weights(tmp_path / "straight", 16)
    run = tmp_path / "killed"
    for kill_after_lines in (3, 8, 11):
        proc = subprocess.Popen([sys.executable, str(JOB), str(run), *args], env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = run / "log.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if log.is_file() and len(log.read_text().splitlines()) >= kill_after_lines:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    subprocess.run([sys.executable, str(JOB), str(run), *args], check=True, env=_env(), capture_output=True)
    resumed = _weights(run, 16)
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 17))
