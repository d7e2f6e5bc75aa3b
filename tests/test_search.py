"""Search over an encoded corpus: exact max-over-frames scores, FAISS candidates with exact
re-scoring (recall against exact), index files, planted-video search, `hero index` / `hero search`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fake_corpus import FakeCorpus

from hero.errors import HeroError
from hero.search import IndexWriter, SearchIndex, build_index
from hero.search.rank import (
    build_faiss_index,
    exact_video_scores,
    faiss_top_videos,
    frame_owner,
    normalize_rows,
    rescore,
    set_search_effort,
    top_k,
)
from hero.tasks.retrieval import HeroForVcmr, RetrievalConfig


def clustered_corpus(num_videos=300, dim=32, min_frames=3, max_frames=9, topics=20, seed=0):
    """Frame embeddings around a few topic directions (real embeddings cluster; uniform noise in
    high dimension would make every approximate index look bad)."""
    rs = np.random.RandomState(seed)
    centers = rs.randn(topics, dim)
    lengths = rs.randint(min_frames, max_frames + 1, size=num_videos)
    topic = rs.randint(0, topics, size=num_videos)
    frames = np.concatenate([centers[t] + 0.6 * rs.randn(n, dim) for t, n in zip(topic, lengths)]).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return frames, offsets


def brute_force(qn, frames, offsets):
    fn = frames / np.maximum(np.linalg.norm(frames, axis=1, keepdims=True), 1e-5)
    cos = qn @ fn.T
    return np.stack([cos[:, offsets[v]:offsets[v + 1]].max(1) for v in range(len(offsets) - 1)], axis=1)


def queries_near_frames(frames, n=16, seed=1):
    rs = np.random.RandomState(seed)
    picks = rs.randint(0, len(frames), size=n)
    return normalize_rows(frames[picks] + 0.3 * rs.randn(n, frames.shape[1]).astype(np.float32))


# -- ranking stages ----------------------------------------------------------------------------


def test_exact_scores_are_the_max_over_each_videos_frames_in_any_chunking():
    frames, offsets = clustered_corpus(num_videos=50)
    qn = queries_near_frames(frames)
    want = brute_force(qn, frames, offsets)
    for chunk in (1, 7, 10_000):  # 1: one video per chunk (a chunk always holds a whole video)
        got = exact_video_scores(qn, frames.astype(np.float16) if chunk == 7 else frames, offsets, chunk)
        assert np.allclose(got, want, atol=2e-3 if chunk == 7 else 1e-5)
    assert frame_owner(offsets).tolist() == [v for v in range(50) for _ in range(offsets[v + 1] - offsets[v])]
    rows = np.array([3, 0, 41])
    assert np.allclose(rescore(qn[2], frames, offsets, rows), want[2, rows], atol=1e-5)
    # a perturbed frame changes its video's score, and only that one
    bumped = frames.copy()
    bumped[offsets[5]] = qn[0] * 10
    again = exact_video_scores(qn, bumped, offsets)
    assert np.isclose(again[0, 5], 1.0, atol=1e-5)
    assert np.allclose(np.delete(again, 5, axis=1), np.delete(want, 5, axis=1), atol=1e-5)


def recall_at(exact_rows, approx_rows):
    return np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(exact_rows, approx_rows)])


def test_faiss_route_equals_exact_with_a_flat_index_and_recalls_well_approximately():
    frames, offsets = clustered_corpus(num_videos=400, seed=3)
    qn = queries_near_frames(frames, n=32, seed=4)
    k = 10
    exact_s, exact_rows = top_k(exact_video_scores(qn, frames, offsets), k)

    flat = build_faiss_index(frames.shape[1], "flat")
    flat.add(normalize_rows(frames))
    s, rows = faiss_top_videos(flat, qn, frames, offsets, k, n_frames=len(frames))
    assert np.array_equal(rows, exact_rows) and np.allclose(s, exact_s, atol=1e-5)

    ivf = build_faiss_index(frames.shape[1], "ivf", nlist=16)
    ivf.train(normalize_rows(frames))
    ivf.add(normalize_rows(frames))
    set_search_effort(ivf, nprobe=16)  # every list: exact
    s, rows = faiss_top_videos(ivf, qn, frames, offsets, k, n_frames=len(frames))
    assert np.array_equal(rows, exact_rows)
    set_search_effort(ivf, nprobe=4)
    _, rows = faiss_top_videos(ivf, qn, frames, offsets, k, n_frames=200)
    assert recall_at(exact_rows, rows) > 0.8
    hnsw = build_faiss_index(frames.shape[1], "hnsw", hnsw_m=16)
    hnsw.add(normalize_rows(frames))
    set_search_effort(hnsw, ef_search=128)
    s, rows = faiss_top_videos(hnsw, qn, frames, offsets, k, n_frames=200)
    assert recall_at(exact_rows, rows) > 0.9
    # every returned score is the exact score of that video (re-scored), whatever the index
    full = exact_video_scores(qn, frames, offsets)
    assert np.allclose(s, np.take_along_axis(full, rows, 1), atol=1e-5)


def test_too_few_candidates_are_padded():
    frames, offsets = clustered_corpus(num_videos=30)
    flat = build_faiss_index(frames.shape[1], "flat")
    flat.add(normalize_rows(frames))
    s, rows = faiss_top_videos(flat, queries_near_frames(frames, n=3), frames, offsets, k=10, n_frames=1)
    assert (rows[:, 0] >= 0).all() and (rows[:, 1:] == -1).all() and np.isinf(s[:, 1:]).all()


# -- index files and search --------------------------------------------------------------------


def tiny_model(tiny_config, seed=0, **overrides):
    torch.manual_seed(seed)
    return HeroForVcmr(tiny_config, RetrievalConfig(**overrides)).eval()


def planted_index(tmp_path, model, query_ids, kind="flat", num_videos=40, planted=17, seed=0):
    """Random frame embeddings; video ``planted`` holds the query's own vector as its frame 4."""
    with torch.no_grad():
        from hero.tasks.retrieval import encode_queries

        class Toks:
            from hero.config import TextTokens

            tokens = TextTokens()

        q = encode_queries(model, Toks, [query_ids], model.task_config)[0].numpy()
    rs = np.random.RandomState(seed)
    d = model.config.hidden_size
    vids = [f"video_{i:03d}" for i in range(num_videos)]
    out = tmp_path / f"index_{kind}"
    with IndexWriter(out, d, dtype="float32") as writer:
        for i, vid in enumerate(vids):
            f = rs.randn(int(rs.randint(6, 12)), d).astype(np.float32)
            if i == planted:
                f[4] = 3 * q
            writer.add(vid, f)
        writer.finish(1.5, kind, nlist=4 if kind.startswith("ivf") else None,
                      extra_meta={"model": {"path": None}, "task_config": {}}, log=lambda *_: None)
    return out, vids[planted]


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_search_finds_the_planted_video(tmp_path, tiny_config, kind):
    model = tiny_model(tiny_config, min_pred_l=0, max_pred_l=4)
    ids = [11, 12, 13]
    path, want = planted_index(tmp_path, model, ids, kind)
    index = SearchIndex(path, model=model)
    for exact in (True, False):
        hits = index.search([ids], top=5, videos=5, exact=exact, nprobe=4)[0]
        assert hits[0].vid == want and abs(hits[0].video_score - 1.0) < 1e-4
        n = int(index.offsets[index.vids.index(want) + 1] - index.offsets[index.vids.index(want)])
        for h in hits:
            assert 0 <= h.start < h.end and (h.vid != want or h.end <= n * 1.5 + 1e-6)
            assert round((h.end - h.start) / 1.5) <= 4  # n - m + 1 <= max_pred_l
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)


def test_index_files_are_checked(tmp_path, tiny_config):
    model = tiny_model(tiny_config)
    path, _ = planted_index(tmp_path, model, [5, 6])
    meta = json.loads((path / "meta.json").read_text())
    assert meta["num_videos"] == 40 and np.load(path / "offsets.npy")[-1] == meta["num_frames"]
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(HeroError, match="exists"):
        IndexWriter(path, 32)
    meta["num_frames"] += 1
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(HeroError, match="disagree"):
        SearchIndex(path, model=model)
    with pytest.raises(HeroError, match="not a search index"):
        SearchIndex(tmp_path, model=model)
    with pytest.raises(HeroError, match="non-finite"), IndexWriter(tmp_path / "bad", 4) as writer:
        writer.add("v", np.full((2, 4), np.nan))
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.tmp*"))


def test_built_index_matches_corpus_inference_and_guards_its_model(tmp_path, tiny_config):
    from conftest import make_clips

    from hero.tasks.retrieval import encode_corpus

    model = tiny_model(tiny_config, seed=2)
    model.save_pretrained(tmp_path / "model")
    corpus = FakeCorpus(make_clips(tiny_config, n=7, seed=2, min_frames=5, max_frames=9))
    build_index(tmp_path / "idx", model, corpus, model_dir=tmp_path / "model", chunk_videos=3, dtype="float32",
                log=lambda *_: None)
    index = SearchIndex(tmp_path / "idx")  # the model is loaded from meta.json
    enc = encode_corpus(model, corpus, corpus.video_ids(), 4)
    assert index.vids == corpus.video_ids()
    for v in range(len(index.vids)):
        stored = index.frames[index.offsets[v]:index.offsets[v + 1]]
        assert np.allclose(stored, enc.frames[v][enc.mask[v]].numpy(), atol=1e-5)
    hits = index.search([[7, 8, 9]], top=3, videos=3)[0]
    assert len(hits) == 3 and all(h.vid in corpus.video_ids() for h in hits)
    # the same query, exact and through the flat index, gives the same moments
    exact = index.search([[7, 8, 9]], top=3, videos=3, exact=True)[0]
    assert [(h.vid, h.start, h.end) for h in exact] == [(h.vid, h.start, h.end) for h in hits]
    assert np.allclose([h.score for h in exact], [h.score for h in hits], rtol=1e-5)
    tiny_model(tiny_config, seed=9).save_pretrained(tmp_path / "model")  # weights change
    with pytest.raises(HeroError, match="changed since the index was built"):
        SearchIndex(tmp_path / "idx")


def test_hero_search_cli_prints_moments(tmp_path, tiny_config, capsys):
    from conftest import make_clips

    from hero.cli import main
    from hero.data.tokenizer import train_tokenizer

    words = ["alice", "bob", "cup", "door", "kitchen", "opens", "drinks", "the", "from", "a"]
    tok = train_tokenizer([" ".join(words)] * 5, vocab_size=300, out_dir=tmp_path / "tok")
    config = tiny_config
    model = tiny_model(config, seed=1)
    model.save_pretrained(tmp_path / "model")
    corpus = FakeCorpus(make_clips(config, n=5, seed=1, min_frames=6, max_frames=9), tokenizer=tok)
    build_index(tmp_path / "idx", model, corpus, model_dir=tmp_path / "model", log=lambda *_: None)
    assert main(["search", "--index", str(tmp_path / "idx"), "alice", "opens", "the", "door", "--top", "3"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert out.startswith("query: alice opens the door") and len(lines) == 3
    assert all(ln.split()[1] in corpus.video_ids() for ln in lines)
    assert main(["search", "--index", str(tmp_path / "idx"), "alice", "--json", "--top", "2", "--exact"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["moments"]) == 2 and data["moments"][0]["start"] < data["moments"][0]["end"]
    assert main(["search", "--index", str(tmp_path / "nothing"), "alice"]) == 2
