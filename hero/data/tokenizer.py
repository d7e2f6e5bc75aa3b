"""Text tokenisation with the reference conventions, over any Hugging Face tokenizer.

The reference tokenizes with ``RobertaTokenizer('roberta-base')`` (``tokenize`` then
``convert_tokens_to_ids``, no special tokens). Before that:

* subtitles (``scripts/prepro_sub.py``): ``html.unescape``, then lower-case if the whole line is
  upper-case (``str.isupper``);
* queries, QA, statements and captions (``scripts/prepro_query.py``, ``prepro_tvc.py``): the same
  upper-case rule, *without* HTML unescaping.

`Tokenizer.encode` does the subtitle variant by default; ``encode(text, unescape=False)`` is the
query variant, which the dataset converters use for annotation text, so ids match the reference.

`train_tokenizer` trains a small byte-level BPE (what the offline synthetic corpus ships) with
RoBERTa's special ids: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3 and ``<mask>`` last.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from hero.config import TextTokens
from hero.errors import HeroError

DEFAULT_TOKENIZER = "roberta-base"
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"


def normalize_text(text: str, unescape: bool = True) -> str:
    """The reference text rules: optional ``html.unescape``, then all-caps → lower case."""
    if unescape:
        text = html.unescape(text)
    if text.isupper():
        text = text.lower()
    return text


class Tokenizer:
    """A Hugging Face tokenizer with the reference conventions.

    Args:
        hf_tokenizer: a loaded ``transformers`` tokenizer.
        name_or_path: what it was loaded from (recorded in ``corpus.json``).
    """

    def __init__(self, hf_tokenizer: object, name_or_path: str) -> None:
        self.hf = hf_tokenizer
        self.name_or_path = name_or_path

    @classmethod
    def load(cls, name_or_dir: str | os.PathLike = DEFAULT_TOKENIZER) -> Tokenizer:
        """Load by hub name (e.g. ``roberta-base``; needs the network or the HF cache) or from a
        directory written by `save`/`train_tokenizer`/``save_pretrained``."""
        from transformers import AutoTokenizer

        name = str(name_or_dir)
        try:
            hf = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as err:
            where = "directory" if Path(name).is_dir() else "name"
            raise HeroError(
                f"cannot load tokenizer {name!r} (given as a {where}): {err}. Offline, pass a local "
                "tokenizer directory (e.g. <corpus>/tokenizer) or set HF_HOME to a cache that has it."
            ) from None
        return cls(hf, name)

    # -- encoding -------------------------------------------------------------------------------

    def encode(self, text: str, unescape: bool = True) -> list[int]:
        """Token ids of ``text`` without special tokens, after `normalize_text`."""
        return list(self.hf(normalize_text(text, unescape), add_special_tokens=False)["input_ids"])

    def encode_batch(self, texts: Sequence[str], unescape: bool = True) -> list[list[int]]:
        """`encode` of many texts at once (one call into the fast tokenizer)."""
        if not texts:
            return []
        norm = [normalize_text(t, unescape) for t in texts]
        return [list(ids) for ids in self.hf(norm, add_special_tokens=False)["input_ids"]]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens)

    # -- vocabulary -----------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens (e.g. ``<mask>``) included."""
        return len(self.hf)

    def _id(self, attr: str, fallback: str) -> int:
        value = getattr(self.hf, f"{attr}_token_id", None)
        if value is None:
            value = getattr(self.hf, f"{fallback}_token_id", None)
        if value is None:
            raise HeroError(f"tokenizer {self.name_or_path!r} has no {attr} token")
        return int(value)

    @property
    def tokens(self) -> TextTokens:
        """Special ids and the MLM random-replacement range.

        The range follows the reference ``meta.json`` (``v_range``): from ``'.'`` to
        ``'<|endoftext|>'`` inclusive when the vocabulary has both (roberta-base); otherwise every
        id after the four leading special tokens, up to ``<mask>`` when it is the last id.
        """
        cls_id, pad_id = self._id("cls", "bos"), self._id("pad", "eos")
        sep_id, unk_id = self._id("sep", "eos"), self._id("unk", "unk")
        mask_id = self._id("mask", "unk")
        vocab = self.hf.get_vocab()
        if "." in vocab and "<|endoftext|>" in vocab and vocab["."] < vocab["<|endoftext|>"]:
            lo, hi = vocab["."], vocab["<|endoftext|>"] + 1
        else:
            n = self.vocab_size
            lo = 1 + max(cls_id, pad_id, sep_id, unk_id, mask_id if mask_id < n - 1 else -1)
            hi = mask_id if mask_id == n - 1 else n
        return TextTokens(cls_id=cls_id, pad_id=pad_id, sep_id=sep_id, unk_id=unk_id,
                          mask_id=mask_id, random_range=(lo, hi))

    # -- files ----------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the tokenizer files into ``directory`` (atomically: temp sibling, then rename)."""
        from hero.io import atomic_dir

        directory = Path(directory)
        with atomic_dir(directory, kind="hero-tokenizer",
                        how="only a tokenizer directory is replaced; move it away or choose another path") as tmp:
            self.hf.save_pretrained(str(tmp))
            (tmp / "hero_tokenizer.json").write_text(json.dumps({"name_or_path": self.name_or_path}, indent=2) + "\n")
        return directory

    def __repr__(self) -> str:
        return f"Tokenizer({self.name_or_path!r}, vocab_size={self.vocab_size})"


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike,
                    min_frequency: int = 1) -> Tokenizer:
    """Train a byte-level BPE tokenizer (offline, seconds) and save it to ``out_dir``.

    Special ids are RoBERTa's: ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3; ``<mask>`` is the
    last id. Texts are normalised with `normalize_text` first, as they will be at encode time.
    ``vocab_size`` counts every id (``<mask>`` included); byte-level BPE needs at least 261
    (256 bytes, the four specials and ``<mask>``).

    Returns:
        The trained `Tokenizer`, loaded back from ``out_dir``.
    """
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import PreTrainedTokenizerFast

    minimum = 256 + len(SPECIAL_TOKENS) + 1
    if vocab_size < minimum:
        raise HeroError(f"train_tokenizer: vocab_size must be at least {minimum}, got {vocab_size}")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        (normalize_text(t) for t in texts), vocab_size=vocab_size - 1, min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS), show_progress=False,
    )
    # added after training so that it takes the id after the whole vocabulary, like RoBERTa's
    bpe.add_special_tokens([MASK_TOKEN])
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    hf = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token=MASK_TOKEN,
    )
    Tokenizer(hf, "trained-byte-level-bpe").save(out_dir)
    loaded = Tokenizer.load(out_dir)
    loaded.name_or_path = str(out_dir)
    return loaded


__all__ = ["DEFAULT_TOKENIZER", "Tokenizer", "normalize_text", "train_tokenizer"]
