"""`Corpus`: clips, annotations, tokenizer, reference stores, DataLoader workers, a pre-training batch end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hero.data.alignment import loader_sub2frames
from hero.data.build import build_corpus
from hero.data.corpus import Corpus
from hero.data.problems import Problems
from hero.data.subtitles import Subtitle
from hero.errors import HeroError

DIM = 10
WORDS = ("alice bob carol takes gives the a red blue cup book and drinks reads coffee tea in kitchen "
         "office leaves enters door opens closes why where who").split()


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    from hero.data.tokenizer import train_tokenizer

    base = tmp_path_factory.mktemp("corpus")
    rs = np.random.RandomState(0)
    texts = [" ".join(rs.choice(WORDS, 6)) for _ in range(200)]
    tokenizer = train_tokenizer(texts, 320, base / "tok")
    videos, subtitles, tvr = [], {}, []
    for i in range(6):
        n = int(rs.randint(6, 16)) if i != 5 else 120  # one video longer than the frame limit
        vid = f"ep{i}"
        videos.append((vid, rs.rand(n, DIM).astype(np.float32)))
        if i == 4:
            continue  # video-only: pseudo subtitles
        t, lines = 0.0, []
        while t < n * 1.5 - 1:
            d = float(rs.uniform(1.0, 4.0))
            lines.append(Subtitle(round(t, 2), round(t + d, 2), " ".join(rs.choice(WORDS, 4)), None))
            t += d + float(rs.uniform(0, 1.5))
        subtitles[vid] = lines
        tvr.append({"qid": str(i), "vid": vid, "desc": "alice takes the cup",
                    "input_ids": tokenizer.encode("alice takes the cup"), "ts": [0.0, 3.0],
                    "duration": n * 1.5, "type": "v"})
    build_corpus(base / "tv", name="tv", frame_interval=1.5, videos=videos, subtitles=subtitles,
                 annotations={"tvr": {"train": tvr[:3], "val": tvr[3:]}}, tokenizer=tokenizer, problems=Problems())
    return base / "tv", dict(videos), subtitles, tokenizer


def test_clips_follow_the_reference_loader(corpus_dir):
    root, videos, subtitles, tokenizer = corpus_dir
    corpus = Corpus(root, max_clip_len=100)
    assert sorted(corpus.video_ids()) == sorted(videos) and len(corpus) == 6
    assert corpus.frame_interval == 1.5 and corpus.video_store.meta.dim == DIM
    for vid, arr in videos.items():
        clip = corpus.clip(vid)
        n = min(len(arr), 100)
        assert clip.vid == vid and clip.num_frames == n and clip.features.dtype == torch.float32
        np.testing.assert_array_equal(clip.features.numpy(), arr[:n].astype(np.float16).astype(np.float32))
        rec = corpus.subtitle_store.get(vid)
        groups, vonly, _ = loader_sub2frames(rec["unique_sub2frames"], rec["unmatched_frames"], len(arr), 100)
        assert clip.sub2frames == [(k, fr) for k, fr in groups]
        assert clip.extra["unmatched_frames"] == vonly
        if vid in subtitles:
            assert clip.subtitles == [tokenizer.encode(s.text) for s in subtitles[vid]]
            assert corpus.subtitles(vid) == subtitles[vid]
            assert not clip.extra["pseudo"]
        else:
            assert clip.extra["pseudo"] and corpus.subtitles(vid) == []
            assert all(ids == [] for ids in clip.subtitles)
        owned = sorted(f for _, fr in clip.sub2frames for f in fr) + clip.extra["unmatched_frames"]
        assert sorted(owned) == list(range(n)) or n < len(arr)
    with pytest.raises(HeroError, match="no video 'nope'"):
        corpus.clip("nope")
    short = Corpus(root, max_clip_len=4)
    assert all(short.clip(v).num_frames <= 4 for v in videos)
    assert all(f < 4 for v in videos for _, fr in short.clip(v).sub2frames for f in fr)


def test_annotations_tokenizer_tokens(corpus_dir):
    root, _, _, tokenizer = corpus_dir
    corpus = Corpus(root)
    assert corpus.datasets() == [("tvr", "train"), ("tvr", "val")]
    train = corpus.annotations("tvr", "train")
    assert [r["qid"] for r in train] == ["0", "1", "2"] and corpus.annotations("tvr", "train") is train
    with pytest.raises(HeroError, match=r"no annotations tvqa/train \(the corpus has: tvr/train, tvr/val\)"):
        corpus.annotations("tvqa", "train")
    # tokens are known from corpus.json without loading the tokenizer, and agree with it
    assert corpus.tokens == tokenizer.tokens and corpus.vocab_size == tokenizer.vocab_size
    assert corpus._tokenizer is None
    assert corpus.tokenizer.encode("alice takes the cup") == tokenizer.encode("alice takes the cup")
    assert corpus.tokens == corpus.tokenizer.tokens


def test_bad_corpus_directories(tmp_path, corpus_dir):
    root = corpus_dir[0]
    with pytest.raises(HeroError, match="corpus directory not found"):
        Corpus(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeroError, match="corpus.json: missing"):
        Corpus(tmp_path / "empty")
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    info = json.loads((copy / "corpus.json").read_text())
    (copy / "corpus.json").write_text(json.dumps({**info, "format_version": 7}))
    with pytest.raises(HeroError, match="format_version 7"):
        Corpus(copy)
    (copy / "corpus.json").write_text(json.dumps(info))
    (copy / "annotations" / "tvr" / "val.jsonl").write_text('{"qid": 1}\n{oops\n')
    with pytest.raises(HeroError, match=r"val.jsonl:2: invalid JSON"):
        Corpus(copy).annotations("tvr", "val")


class _Clips(torch.utils.data.Dataset):
    def __init__(self, corpus, vids):
        self.corpus, self.vids = corpus, vids

    def __len__(self):
        return len(self.vids)

    def __getitem__(self, i):
        return self.corpus.clip(self.vids[i]).features.sum().item()


def test_dataloader_workers_reopen_the_stores(corpus_dir):
    root = corpus_dir[0]
    corpus = Corpus(root)
    vids = corpus.video_ids()
    expected = [corpus.clip(v).features.sum().item() for v in vids]  # stores opened in this process
    loader = torch.utils.data.DataLoader(_Clips(corpus, vids), batch_size=None, num_workers=2,
                                         multiprocessing_context="fork")
    assert list(loader) == pytest.approx(expected)


def test_from_reference_stores(tmp_path, corpus_dir):
    from hero.data.reference_db import hero_to_reference_subtitles, write_reference_txt_db, write_reference_video_db

    root, videos, _, tokenizer = corpus_dir
    ours = Corpus(root)
    vids = ours.video_ids()
    write_reference_video_db(tmp_path / "video_db" / "tv", ((v, ours.video_store.get(v)) for v in vids),
                             compress=True)
    write_reference_txt_db(tmp_path / "sub.db", [(v, hero_to_reference_subtitles(ours.subtitle_store.get(v)))
                                                 for v in vids if v != "ep4"])  # ep4 video-only: no record
    tvr = [(r["qid"], {**r, "vid_name": r["vid"], "desc_id": int(r["qid"])}) for r in ours.annotations("tvr", "val")]
    write_reference_txt_db(tmp_path / "tvr_val.db", tvr)
    ref = Corpus.from_reference(tmp_path / "video_db" / "tv", tmp_path / "sub.db", tokenizer=tokenizer,
                                annotations={("tvr", "val"): tmp_path / "tvr_val.db"})
    assert sorted(ref.video_ids()) == sorted(vids) and ref.frame_interval == 1.5
    for v in vids:
        a, b = ours.clip(v), ref.clip(v)
        assert torch.equal(a.features, b.features) and a.sub2frames == b.sub2frames and a.subtitles == b.subtitles
    assert ref.datasets() == [("tvr", "val")]
    assert sorted(r["qid"] for r in ref.annotations("tvr", "val")) == [3, 5]  # int desc_ids stay ints
    assert ref.annotations("tvr", "val")[0]["input_ids"] == tokenizer.encode("alice takes the cup")
    assert ref.tokens == tokenizer.tokens


def test_pretraining_batch_end_to_end(corpus_dir):
    """Corpus → every pre-training objective's collate → HeroForPretraining (hero-tiny) forward."""
    from hero.objectives import OBJECTIVES, HeroForPretraining
    from hero.train.build import hero_config
    from hero.train.config import ModelSpec
    from hero.train.data import Mix, PretrainBatches
    from hero.train.pretrain import pretraining_videos

    corpus = Corpus(corpus_dir[0])
    config = hero_config(ModelSpec(preset="hero-tiny"), corpus)
    assert config.vfeat_dim == DIM and config.vocab_size == corpus.tokenizer.vocab_size
    torch.manual_seed(0)
    model = HeroForPretraining(config).eval()
    vids = pretraining_videos(corpus, "exclude-eval")
    assert sorted(vids) == ["ep0", "ep1", "ep2", "ep4"]  # ep3 and ep5 have val annotations
    objectives = {name: cls(cfg_cls(), corpus.tokens) for name, (cfg_cls, cls) in OBJECTIVES.items()}
    for name, objective in objectives.items():
        batches = PretrainBatches([(corpus, vids)], {name: objective}, Mix({name: 1.0}), batch_size=4, seed=1)
        meta, batch = batches[0]
        assert meta["objective"] == name
        out = objective(model, batch)
        assert torch.isfinite(out["loss"]), name


# -- the corpus interface of the task code (`hero.data.protocol.CorpusLike`) -------------------------


def test_corpus_and_the_test_corpus_satisfy_corpus_like(corpus_dir):
    from fake_corpus import FakeCorpus

    from hero.data.protocol import CorpusLike

    corpus = Corpus(corpus_dir[0])
    assert isinstance(corpus, CorpusLike)
    assert isinstance(FakeCorpus([]), CorpusLike)

    class NoClips:  # the annotations alone are not a corpus
        frame_interval, tokens, tokenizer = 1.5, None, None

        def video_ids(self):
            return []

        def annotations(self, dataset, split):
            return []

    assert not isinstance(NoClips(), CorpusLike)


def test_no_corpus_parameter_of_the_package_is_untyped():
    """A ``corpus`` parameter has a real type: `CorpusLike` (what the task, search and figure code
    reads), `Corpus` (code that needs a prepared directory's stores or files), a path, ...; never
    ``Any`` and never none."""
    import ast
    from pathlib import Path

    import hero

    untyped = []
    for path in sorted(Path(hero.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                for arg in args:
                    if arg.arg == "corpus":
                        text = "" if arg.annotation is None else ast.unparse(arg.annotation)
                        if not text or "Any" in text.replace("|", " ").split():
                            untyped.append(f"{path.name}:{node.lineno} {node.name}(corpus: {text})")
    assert untyped == []
