"""Tokenizer: reference conventions, trained byte-level BPE, special ids, save/load (offline)."""

from __future__ import annotations

import pytest

from hero.config import TextTokens
from hero.data.tokenizer import Tokenizer, normalize_text, train_tokenizer
from hero.errors import HeroError

TEXTS = [
    " Chase : That's all this is?",
    "Leonard : Penny, would you like to come over for dinner?",
    "Sheldon picks up the red cup from the table.",
    "Tom &amp; Jerry run around the kitchen.",
    "WHAT ARE YOU DOING HERE?",
] * 20


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(TEXTS, 400, tmp_path_factory.mktemp("tok") / "tokenizer")


def test_normalize_text():
    assert normalize_text("WHAT ARE YOU DOING?") == "what are you doing?"
    assert normalize_text("What are you doing?") == "What are you doing?"
    assert normalize_text("Tom &amp; Jerry") == "Tom & Jerry"
    # the query rule: no unescaping; upper-case test on the raw text
    assert normalize_text("Tom &amp; Jerry", unescape=False) == "Tom &amp; Jerry"
    assert normalize_text("TOM &amp; JERRY", unescape=False) == "TOM &amp; JERRY"  # 'amp' is lower-case
    assert normalize_text("TOM &amp; JERRY") == "tom & jerry"


def test_special_ids_and_tokens(tok):
    hf = tok.hf
    assert hf.convert_ids_to_tokens([0, 1, 2, 3]) == ["<s>", "<pad>", "</s>", "<unk>"]
    assert hf.convert_tokens_to_ids("<mask>") == tok.vocab_size - 1
    tokens = tok.tokens
    assert isinstance(tokens, TextTokens)
    assert (tokens.cls_id, tokens.pad_id, tokens.sep_id, tokens.unk_id) == (0, 1, 2, 3)
    assert tokens.mask_id == tok.vocab_size - 1
    assert tokens.random_range == (4, tokens.mask_id)
    assert 261 <= tok.vocab_size <= 400


def test_encode_conventions(tok):
    ids = tok.encode("Sheldon picks up the red cup")
    assert ids and all(4 <= i < tok.vocab_size - 1 for i in ids)  # no special tokens
    assert tok.decode(ids) == "Sheldon picks up the red cup"
    assert tok.encode("WHAT ARE YOU DOING HERE?") == tok.encode("what are you doing here?")
    assert tok.encode("Mixed CASE") != tok.encode("mixed case")
    assert tok.encode("Tom &amp; Jerry") == tok.encode("Tom & Jerry")
    assert tok.encode("Tom &amp; Jerry", unescape=False) != tok.encode("Tom & Jerry", unescape=False)
    assert tok.encode("") == []
    texts = ["Tom &amp; Jerry", "WHAT", "a"]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts, unescape=False) == [tok.encode(t, unescape=False) for t in texts]
    # unseen characters are still encodable (byte level), and round trip
    assert tok.decode(tok.encode("Zoë ☕")) == "Zoë ☕"


def test_save_load_round_trip(tok, tmp_path):
    out = tok.save(tmp_path / "copy")
    again = Tokenizer.load(out)
    assert again.vocab_size == tok.vocab_size
    assert again.tokens == tok.tokens
    for text in TEXTS[:5]:
        assert again.encode(text) == tok.encode(text)
    # saving over an existing directory replaces it whole and leaves no temp dir behind
    tok.save(tmp_path / "copy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


def test_training_is_deterministic(tmp_path):
    a = train_tokenizer(TEXTS, 300, tmp_path / "a")
    b = train_tokenizer(TEXTS, 300, tmp_path / "b")
    assert a.hf.get_vocab() == b.hf.get_vocab()


def test_errors(tmp_path):
    with pytest.raises(HeroError, match="at least 261"):
        train_tokenizer(TEXTS, 100, tmp_path / "small")
    with pytest.raises(HeroError, match="cannot load tokenizer"):
        Tokenizer.load(tmp_path / "nothing-here")
