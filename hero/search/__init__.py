"""Text search over an encoded video corpus (`hero index`, `hero search`).

`build_index` encodes a corpus once with a fine-tuned retrieval model and writes frame embeddings
plus a FAISS index; `SearchIndex` answers text queries with moments (video, start–end seconds,
score). `hero.search.rank` holds the model-free ranking stages (exact max-over-frames scores and
FAISS candidates with exact re-scoring) that the benchmark measures.
"""

from hero.search.index import IndexWriter, Moment, SearchIndex, build_index, weights_sha256

__all__ = ["IndexWriter", "Moment", "SearchIndex", "build_index", "weights_sha256"]
