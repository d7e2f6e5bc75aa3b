"""Every registered task (`hero.tasks.TASKS`) and pre-training objective (`hero.objectives.OBJECTIVES`)
against the contract (DEVELOPERS.md, "Downstream tasks" and "Adding a task"), on a tiny synthetic
corpus: the entry satisfies the protocol, collate is a function of its items and generator, the
loss is finite and is the sum of its terms, predictions round-trip through the task's writer and
evaluator, a saved model loads back identical, and the reference key map reaches every parameter.

A new task or objective is covered by registering it; nothing here names one.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from hero.config import HeroConfig
from hero.data import synth
from hero.model.checkpoint import map_reference_key
from hero.objectives import OBJECTIVES, HeroForPretraining, Objective
from hero.tasks import TASKS, dataset_tasks, get_task
from hero.tasks.spec import Task
from hero.train.build import corpus_sizes

TINY = synth.SynthConfig(videos=12, val_videos=3, test_videos=3, min_frames=8, max_frames=12, seed=3, dim=16,
                         vocab_size=300)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from hero.data.corpus import Corpus

    out = tmp_path_factory.mktemp("registry") / "corpus"
    synth.build(TINY, out, log=lambda *_: None)
    return Corpus(out)


@pytest.fixture(scope="module")
def config(corpus):
    return HeroConfig.from_name("hero-tiny", **corpus_sizes(corpus))


def same(a, b) -> bool:
    """Structural equality of batches: dataclasses, tensors, sequences, dicts, plain values."""
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and all(same(getattr(a, f.name), getattr(b, f.name))
                                          for f in dataclasses.fields(a))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def reachable_from_reference(key: str, key_map) -> bool:
    """True when some reference key maps onto ``key`` through ``key_map`` (first match wins)."""
    for ref, ours in key_map:
        if ours is not None and key.startswith(ours):
            if map_reference_key(ref + key[len(ours):], key_map)[0] == key:
                return True
    return False


def task_setup(name, corpus, config):
    task = get_task(name)
    assert task.demo is not None, f"task {name}: no demo dataset of the synthetic corpus (see 'Adding a task')"
    cfg = task.config_class(**task.demo.task_config)
    torch.manual_seed(0)
    model = task.model_class(config, cfg)
    items = task.train_items(corpus, task.demo.dataset, "train", cfg)
    return task, cfg, model, items


def batch_of(task, items, n=3):
    """The first ``n`` items that may share a batch (distinct ``group_key``, as the fine-tuning packer)."""
    if task.group_key is None:
        return items[:n]
    out, keys = [], set()
    for item in items:
        if task.group_key(item) not in keys:
            keys.add(task.group_key(item))
            out.append(item)
    return out[:n]


# ---------------------------------------------------------------------------------------------
# tasks
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TASKS))
def test_entry_satisfies_the_task_protocol(name):
    task = get_task(name)
    assert isinstance(task, Task) and task.name == name and task.datasets
    assert all(dataset_tasks()[d] == name for d in task.datasets)
    assert task.prediction_suffix in (".json", ".jsonl")
    assert dataclasses.is_dataclass(task.config_class)
    assert getattr(task.model_class, "task_config_class", None) is task.config_class


@pytest.mark.parametrize("name", list(TASKS))
def test_collate_is_a_function_of_items_and_generator(name, corpus, config):
    task, cfg, _, items = task_setup(name, corpus, config)
    assert items, f"{name}: no training item in the synthetic {task.demo.dataset} split"
    json.dumps(items)  # items are JSON-able
    chosen = batch_of(task, items)
    a = task.collate(corpus, chosen, cfg, torch.Generator().manual_seed(7))
    b = task.collate(corpus, json.loads(json.dumps(chosen)), cfg, torch.Generator().manual_seed(7))
    assert same(a, b)


@pytest.mark.parametrize("name", list(TASKS))
def test_loss_is_finite_sum_of_terms_and_trains_the_heads(name, corpus, config):
    task, cfg, model, items = task_setup(name, corpus, config)
    batch = task.collate(corpus, batch_of(task, items), cfg, torch.Generator().manual_seed(0))
    out = task.loss(model, batch, cfg, 10**6)  # a late step: every scheduled term is on
    terms = [v for k, v in out.items() if k.endswith("_loss")]
    assert terms and torch.isfinite(out["loss"])
    assert torch.allclose(out["loss"], sum(terms))
    out["loss"].backward()
    # (the heads need not all get a gradient on every step: retrieval's span head only on span steps)
    assert any(not n.startswith("hero.") for n, _ in model.named_parameters()), f"{name}: no task head"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n.startswith("hero."))


@pytest.mark.parametrize("name", list(TASKS))
def test_predictions_round_trip_through_writer_and_evaluator(name, corpus, config, tmp_path):
    task, cfg, model, _ = task_setup(name, corpus, config)
    model.eval()
    with torch.no_grad():
        preds = task.predict(model, corpus, task.demo.dataset, "val", cfg, 4, "cpu")
    path = tmp_path / f"pred{task.prediction_suffix}"
    task.write_predictions(preds, path, cfg)
    assert path.is_file() and path.stat().st_size > 0
    metrics = task.evaluate(preds, corpus, task.demo.dataset, "val", cfg)
    # (a per-type block with no query of its type is NaN, as the official evaluator's)
    assert metrics and all(isinstance(v, (int, float)) for v in metrics.values())
    for key, _label in task.demo.headline:
        assert key in metrics, f"{name}: headline metric {key!r} not among {sorted(metrics)}"
        assert math.isfinite(metrics[key])


@pytest.mark.parametrize("name", list(TASKS))
def test_eval_kind_scores_the_written_predictions(name, corpus, config, tmp_path):
    """The entry names a ``hero eval`` kind (`hero.eval.kinds.EVAL_KINDS`); a kind scored by the
    default readers gives the task's own accuracy on the file the task's writer wrote."""
    from hero.eval.kinds import EVAL_KINDS

    task, cfg, model, _ = task_setup(name, corpus, config)
    assert task.eval_kind in EVAL_KINDS, f"task {name}: eval_kind {task.eval_kind!r} not in {list(EVAL_KINDS)}"
    kind = EVAL_KINDS[task.eval_kind]
    if kind.run is not None:  # retrieval and caption: covered by their own metric tests
        return
    model.eval()
    with torch.no_grad():
        preds = task.predict(model, corpus, task.demo.dataset, "val", cfg, 4, "cpu")
    path = tmp_path / f"pred{task.prediction_suffix}"
    task.write_predictions(preds, path, cfg)
    gt = corpus.root / "annotations" / task.demo.dataset / "val.jsonl"
    metrics = kind.score(path, gt, out=tmp_path / "metrics.json")
    expected = task.evaluate(preds, corpus, task.demo.dataset, "val", cfg)
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"], abs=0.01)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize("name", list(TASKS))
def test_saved_model_loads_back_identical(name, corpus, config, tmp_path):
    task, cfg, model, _ = task_setup(name, corpus, config)
    loaded = task.model_class.from_pretrained(model.save_pretrained(tmp_path / "model"))
    assert type(loaded) is task.model_class and loaded.task_config == model.task_config
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("name", list(TASKS))
def test_reference_key_map_reaches_every_parameter(name, config):
    task = get_task(name)
    model = task.model_class(config, task.config_class(**task.demo.task_config) if task.demo else None)
    key_map = task.model_class.REFERENCE_KEY_MAP
    unreached = [k for k in model.state_dict() if not reachable_from_reference(k, key_map)]
    assert not unreached, f"{name}: no reference key maps to {unreached[:5]}"


# ---------------------------------------------------------------------------------------------
# objectives
# ---------------------------------------------------------------------------------------------


def clips_of(corpus, n=4):
    return [corpus.clip(v) for v in corpus.video_ids()[:n]]


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_satisfies_the_protocol_and_collates_deterministically(name, corpus):
    cfg_cls, obj_cls = OBJECTIVES[name]
    objective = obj_cls(cfg_cls(), corpus.tokens)
    assert isinstance(objective, Objective)
    a = objective.collate(clips_of(corpus), torch.Generator().manual_seed(3))
    b = objective.collate(clips_of(corpus), torch.Generator().manual_seed(3))
    assert same(a, b)


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_loss_is_finite_and_trains(name, corpus, config):
    cfg_cls, obj_cls = OBJECTIVES[name]
    objective = obj_cls(cfg_cls(), corpus.tokens)
    model = HeroForPretraining(config)
    out = objective(model, objective.collate(clips_of(corpus), torch.Generator().manual_seed(0)), step=10**6)
    terms = [v for k, v in out.items() if k.endswith("_loss")]
    assert terms and torch.isfinite(out["loss"]) and torch.allclose(out["loss"], sum(terms))
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_pretraining_model_round_trip_and_key_map(config, tmp_path):
    model = HeroForPretraining(config)
    loaded = HeroForPretraining.from_pretrained(model.save_pretrained(tmp_path / "pt"))
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    unreached = [k for k in ours if not reachable_from_reference(k, HeroForPretraining.REFERENCE_KEY_MAP)]
    assert not unreached, unreached[:5]


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_section_of_the_pretraining_config_is_read_off_the_registry(name):
    """``PretrainConfig`` has one section per registered objective, of its entry's config class,
    read from YAML/overrides under ``name`` with ``-`` as ``_``."""
    from hero.config import from_dict
    from hero.train.pretrain import PretrainConfig, objective_section

    config_class = OBJECTIVES[name][0]
    section = objective_section(name)
    assert section in {f.name for f in dataclasses.fields(PretrainConfig)}
    config = from_dict(PretrainConfig, {section: {}})
    assert type(config.objective_config(name)) is config_class
    with pytest.raises(Exception, match=rf"config\.{section}: unknown key"):
        from_dict(PretrainConfig, {section: {"no_such_setting": 1}})
