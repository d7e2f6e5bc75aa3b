"""The synthetic TV-show corpus (`hero.data.synth`): determinism, valid records for every task,
the planted structure, and a pre-training batch end to end."""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
import torch

from hero.data import synth
from hero.errors import HeroError

TINY = synth.SynthConfig(videos=30, val_videos=6, test_videos=6, min_frames=12, max_frames=22, seed=3,
                         dim=16, video_only_fraction=0.2)


@pytest.fixture(scope="module")
def generated():
    return synth.generate(TINY)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "corpus"
    synth.build(TINY, out, log=lambda *_: None)
    return out


@pytest.fixture(scope="module")
def corpus(built):
    from hero.data.corpus import Corpus

    return Corpus(built)


# ---------------------------------------------------------------------------------------------
# record checks (also run on perturbed records, which they must reject)
# ---------------------------------------------------------------------------------------------


def check_record(dataset: str, r: dict, nframes: int, interval: float, tokenizer) -> None:
    """Raise AssertionError if ``r`` is not a valid ``dataset`` record of a video of ``nframes``."""
    duration = nframes * interval
    if dataset in ("tvr", "tvqa", "tvc"):
        st, ed = r["ts"]
        assert 0 <= st < ed <= duration + 1e-6, f"moment {r['ts']} outside the video (0, {duration})"
    if dataset == "tvr":
        assert r["type"] in ("v", "t", "vt")
        assert round((ed - st) / interval) >= synth.MIN_MOMENT_FRAMES, f"moment {r['ts']} too short"
        assert math.isclose(r["duration"], duration)
        assert r["input_ids"] == tokenizer.encode(r["desc"], unescape=False)
    elif dataset == "tvqa":
        assert len(r["answers"]) == 5 and len(set(r["answers"])) == 5
        assert isinstance(r["answer_idx"], int) and 0 <= r["answer_idx"] < 5
        assert r["q_type"] in synth.QA_MODALITY
        assert r["q_ids"] == tokenizer.encode(r["q"], unescape=False)
        assert r["a_ids"] == [tokenizer.encode(a, unescape=False) for a in r["answers"]]
    elif dataset == "violin":
        assert r["label"] in (0, 1)
        assert r["input_ids"] == tokenizer.encode(r["statement"], unescape=False)
    elif dataset == "msrvtt_qa":
        assert r["answer"] in synth.OPEN_QA_ANSWERS and r["q_type"] in synth.OPEN_QA_TYPES
        assert r["q_ids"] == tokenizer.encode(r["q"], unescape=False) and "a_ids" not in r
    elif dataset == "tvc":
        assert math.isclose(r["duration"], duration)
        assert r["captions"] and all(c["input_ids"] == tokenizer.encode(c["desc"], unescape=False)
                                     for c in r["captions"])


def test_every_dataset_and_split_has_valid_records(corpus):
    tok = corpus.tokenizer
    datasets = ("tvr", "tvqa", "violin", "tvc", "msrvtt_qa")
    assert sorted(corpus.datasets()) == sorted((d, s) for d in datasets for s in synth.SPLITS)
    for dataset in datasets:
        for split in synth.SPLITS:
            records = corpus.annotations(dataset, split)
            assert records, f"{dataset}/{split} is empty"
            for r in records:
                assert r["vid"] in corpus
                check_record(dataset, r, corpus.video_store.num_frames(r["vid"]), corpus.frame_interval, tok)
            if dataset == "violin":
                assert {r["label"] for r in records} == {0, 1}
                # pairs: "<n>-1" (true) and "<n>-0" (false) of the same video
                stems: dict[str, list] = {}
                for r in records:
                    stem, label = r["qid"].rsplit("-", 1)
                    assert int(label) == r["label"]
                    stems.setdefault(stem, []).append((r["vid"], r["label"]))
                assert all(len({v for v, _ in p}) == 1 and sorted(lab for _, lab in p) == [0, 1]
                           for p in stems.values())
            ids = [r.get("qid", r.get("clip_id")) for r in records]
            assert len(set(ids)) == len(ids)
    assert {r["type"] for r in corpus.annotations("tvr", "train")} == {"v", "t", "vt"}
    # no video is in two splits
    split_vids = [{r["vid"] for d in ("tvr", "tvqa") for r in corpus.annotations(d, s)} for s in synth.SPLITS]
    assert sum(len(v) for v in split_vids) == len(set().union(*split_vids))


@pytest.mark.parametrize("dataset, field, value", [
    ("tvr", "ts", [3.0, 1000.0]),
    ("tvr", "type", "x"),
    ("tvr", "ts", [3.0, 4.5]),
    ("tvqa", "answer_idx", 5),
    ("tvqa", "answers", ["a", "a", "b", "c", "d"]),
    ("violin", "label", 2),
    ("tvc", "ts", [6.0, 4.5]),
])
def test_record_check_rejects_perturbed_records(corpus, dataset, field, value):
    r = dict(corpus.annotations(dataset, "val")[0])
    n = corpus.video_store.num_frames(r["vid"])
    check_record(dataset, r, n, corpus.frame_interval, corpus.tokenizer)
    r[field] = value
    with pytest.raises(AssertionError):
        check_record(dataset, r, n, corpus.frame_interval, corpus.tokenizer)


def test_tvr_queries_are_unique_within_a_split(generated):
    for split, records in generated.annotations["tvr"].items():
        descs = [r["desc"] for r in records]
        assert len(set(descs)) == len(descs), split


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_corpus(built, tmp_path):
    again = tmp_path / "again"
    synth.build(TINY, again, log=lambda *_: None)
    files = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert {"video/data.mdb", "subtitles/data.mdb", "tokenizer/tokenizer.json"} <= {str(f) for f in files}
    for rel in files:
        assert (built / rel).read_bytes() == (again / rel).read_bytes(), f"{rel} differs between two builds"


def test_generation_is_deterministic_and_depends_on_the_seed(generated):
    again = synth.generate(TINY)
    other = synth.generate(dataclasses.replace(TINY, seed=TINY.seed + 1))
    assert all(np.array_equal(a.features, b.features) for a, b in zip(generated.episodes, again.episodes))
    assert generated.annotations == again.annotations
    assert [line.subtitle_text for e in generated.episodes for line in e.lines] == \
        [line.subtitle_text for e in again.episodes for line in e.lines]
    assert generated.annotations["tvr"] != other.annotations["tvr"]
    assert not np.array_equal(generated.episodes[0].features, other.episodes[0].features)


def test_annotation_knobs_leave_videos_unchanged(generated):
    fewer = synth.generate(dataclasses.replace(TINY, queries_per_video=1, qa_per_video=1))
    assert all(np.array_equal(a.features, b.features) for a, b in zip(generated.episodes, fewer.episodes))
    assert len(fewer.annotations["tvr"]["train"]) < len(generated.annotations["tvr"]["train"])


# ---------------------------------------------------------------------------------------------
# planted structure
# ---------------------------------------------------------------------------------------------


def test_scripts_keep_their_order_and_events_tile_time(generated):
    for ep in generated.episodes:
        by_instance: dict[int, list] = {}
        for e in ep.events:
            by_instance.setdefault(e.instance, []).append(e)
        for events in by_instance.values():
            script = synth.SCRIPTS[events[0].script]
            assert [e.action for e in events] == [a for a, _ in script[: len(events)]]
            assert len(events) >= 2
            assert all(a.end == b.start for a, b in zip(events, events[1:]))
        starts = [e.start for e in ep.events]
        assert starts == sorted(starts) and 0 <= ep.events[0].start and ep.events[-1].end <= ep.num_frames
        assert TINY.min_frames <= ep.num_frames <= TINY.max_frames


def test_moment_frames_show_their_object_and_action(generated):
    """The frames of a v/vt query's moment are closer to its object and action prototypes than the
    frames where that object is not visible."""
    world = generated.world
    wins = total = 0
    for ep in generated.episodes:
        for e in ep.events:
            if not e.object_visible:
                continue
            proto = world.vector("object", e.obj) + world.vector("action", e.action)
            score = ep.features @ proto
            inside = score[e.start:e.end].mean()
            without = [f for f in range(ep.num_frames)
                       if not any(x.obj == e.obj and x.object_visible and x.start <= f < x.end for x in ep.events)]
            if without:
                total += 1
                wins += inside > score[without].max()
    assert total > 50 and wins / total > 0.9, (wins, total)


def test_perturbed_features_lose_the_planted_signal(generated):
    """The check above is not vacuous: on shuffled features it fails."""
    world = generated.world
    rng = np.random.default_rng(0)
    wins = total = 0
    for ep in generated.episodes:
        feats = ep.features[rng.permutation(ep.num_frames)]
        for e in ep.events:
            if e.object_visible:
                score = feats @ (world.vector("object", e.obj) + world.vector("action", e.action))
                others = np.ones(ep.num_frames, bool)
                others[e.start:e.end] = False
                total += 1
                wins += score[e.start:e.end].mean() > score[others].max()
    assert wins / total < 0.6


def test_subtitles_align_to_the_narrated_frames(generated, corpus):
    ep = next(e for e in generated.episodes if not e.video_only and any(x.kind == "narration" for x in e.lines))
    record = corpus.subtitle_store.get(ep.vid)
    assert not record["pseudo"]
    assert [s["text"] for s in record["subs"]] == [x.subtitle_text for x in ep.lines]
    aligned = {int(k): list(fr) for k, fr in record["unique_sub2frames"]}
    for k, line in enumerate(ep.lines):
        assert aligned[k] == list(range(line.first, line.last))
        if line.kind == "narration":
            event = ep.events[line.fact["event"]]
            assert (line.first, line.last) == (event.start, event.end)


def test_dialogue_only_and_frame_only_facts(generated):
    for ep in generated.episodes:
        visible = {c for frame in ep.present for c in frame}
        said = " ".join(x.text for x in ep.lines)
        for line in ep.lines:
            if line.kind == "plan":
                assert line.fact["place"] != ep.location  # a place never shown
            if line.kind == "absent":
                assert line.fact["person"] not in visible  # a person never shown
        for r in generated.annotations["tvqa"][ep.split]:
            if r["vid"] != ep.vid:
                continue
            if r["q_type"] == "what_color":  # the colour is only in the frames
                obj = r["q"].split()[-2]
                color = r["answers"][r["answer_idx"]]
                assert f"{color} {obj}" not in said
            if r["q_type"] == "fetch":  # object named in dialogue, its taker only in frames
                taker = r["answers"][r["answer_idx"]]
                pick = [e for e in ep.events if e.action == "pick_up" and e.actor == taker]
                assert pick and not any(e.narrated for e in pick if e.obj in said)


def test_video_only_subset(generated, corpus):
    vonly = set(generated.video_only)
    assert vonly and len(vonly) < len(generated.episodes)
    assert set(corpus.info["source"]["video_only"]) == vonly
    for vid in vonly:
        assert corpus.subtitle_store.get(vid)["pseudo"]
        assert corpus.clip(vid).extra["pseudo"]
    frames_only = {q for q, m in synth.QA_MODALITY.items() if "dialogue" not in m}
    for split in synth.SPLITS:
        assert all(r["type"] == "v" for r in generated.annotations["tvr"][split] if r["vid"] in vonly)
        assert all(r["q_type"] in frames_only for r in generated.annotations["tvqa"][split] if r["vid"] in vonly)
    assert {e.split for e in generated.episodes if e.video_only} == set(synth.SPLITS)


def test_queries_share_the_dialogue_vocabulary(corpus):
    sub_tokens = set()
    for vid in corpus.video_ids():
        for ids in corpus.subtitle_store.get(vid)["input_ids"]:
            sub_tokens.update(ids)
    query_tokens = Counter(t for r in corpus.annotations("tvr", "train") for t in r["input_ids"])
    covered = sum(c for t, c in query_tokens.items() if t in sub_tokens) / sum(query_tokens.values())
    assert covered > 0.9


# ---------------------------------------------------------------------------------------------
# end to end: corpus -> clips -> every pre-training objective -> HeroForPretraining
# ---------------------------------------------------------------------------------------------


def test_pretraining_batch_end_to_end(corpus):
    from hero.config import HeroConfig
    from hero.objectives import OBJECTIVES, HeroForPretraining
    from hero.train.build import corpus_sizes

    sizes = corpus_sizes(corpus)
    assert sizes["vfeat_dim"] == TINY.dim and sizes["vocab_size"] == corpus.tokenizer.vocab_size
    config = HeroConfig.from_name("hero-tiny", **sizes)
    model = HeroForPretraining(config)
    vids = corpus.video_ids()
    vonly = set(corpus.info["source"]["video_only"])
    clips = [corpus.clip(v) for v in [v for v in vids if v not in vonly][:4] + sorted(vonly)[:1]]
    for name, (cfg_cls, obj_cls) in OBJECTIVES.items():
        objective = obj_cls(cfg_cls(), corpus.tokens)
        batch = objective.collate(clips, torch.Generator().manual_seed(0))
        out = objective(model, batch)
        assert torch.isfinite(out["loss"]), name
        model.zero_grad()
        out["loss"].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), name


# ---------------------------------------------------------------------------------------------
# settings and CLI
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [dict(videos=2), dict(min_frames=30, max_frames=20), dict(narrate_prob=1.5),
                                 dict(videos=10, val_videos=5, test_videos=5), dict(queries_per_video=-1)])
def test_bad_settings_are_named(bad):
    with pytest.raises(HeroError, match="synthetic corpus settings"):
        synth.SynthConfig(**bad)


def test_cli_run_prints_a_summary_and_refuses_to_overwrite(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    out = tmp_path / "c"
    argv = ["--out", str(out), "--videos", "12", "--min-frames", "10", "--max-frames", "14", "--dim", "8",
            "--seed", "5", "--vocab-size", "400"]
    assert synth.run(parser.parse_args(argv)) == 0
    text = capsys.readouterr().out
    assert "12 (train 8, val 2, test 2" in text and "tvr:" in text and "8-d" in text
    from hero.data.corpus import Corpus

    c = Corpus(out)
    assert c.video_store.meta.dim == 8 and len(c.video_ids()) == 12
    assert c.tokenizer.vocab_size <= 400
    with pytest.raises(HeroError, match="already exists"):
        synth.run(parser.parse_args(argv))
    assert synth.run(parser.parse_args(argv + ["--overwrite"])) == 0
