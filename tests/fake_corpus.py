"""An in-memory stand-in for a prepared corpus (`hero.data.corpus.Corpus`), for the task tests.

The task code (`hero.tasks.*`, `hero.search`) reads a corpus only through a small duck-typed
interface (DEVELOPERS.md, "A prepared dataset directory"); `FakeCorpus` provides exactly that,
from clips and annotation records built in memory by each test:

* ``frame_interval``: seconds per frame, 1.5 as in the TV datasets;
* ``clip(vid)``: the `hero.data.batch.Clip` of a video (features, subtitle token ids, sub2frames);
* ``video_ids()``: the ids of the clips, in the order they were given;
* ``annotations(dataset, split)``: the annotation records of a task split, as decoded from
  ``annotations/<dataset>/<split>.jsonl`` (a `KeyError` for a split that was not given);
* ``tokens``: the special token ids (`hero.config.TextTokens`);
* ``tokenizer``: the tokenizer (anything with the methods the code under test calls), or None.

Tests may add or replace splits after construction through ``corpus._annotations[(dataset, split)]``.
"""

from __future__ import annotations

from hero.config import TextTokens


class FakeCorpus:
    """The duck-typed corpus interface the task code uses (see the module docstring).

    ``annotations`` maps ``(dataset, split)`` to a list of records. ``tokens`` come from
    ``vocab_size`` when it is given (the tiny vocabulary's ids: ``[MASK]`` is its last id, random
    replacement ids in ``[4, vocab_size - 1)``, like the ``tiny_tokens`` fixture), otherwise from
    ``tokenizer.tokens`` when a tokenizer is given, otherwise `TextTokens` defaults.
    """

    frame_interval = 1.5

    def __init__(self, clips, annotations=None, vocab_size=None, *, tokenizer=None):
        self._clips = {c.vid: c for c in clips}
        self._annotations = annotations if annotations is not None else {}
        self.tokenizer = tokenizer
        if vocab_size is not None:
            self.tokens = TextTokens(mask_id=vocab_size - 1, random_range=(4, vocab_size - 1))
        elif tokenizer is not None:
            self.tokens = tokenizer.tokens
        else:
            self.tokens = TextTokens()

    def clip(self, vid):
        return self._clips[vid]

    def annotations(self, dataset, split):
        return self._annotations[(dataset, split)]

    def video_ids(self):
        return list(self._clips)
