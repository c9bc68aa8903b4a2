"""sparseretr: learned sparse retrieval, SPLADE-class relevance at BM25-class cost.

The Python API, one name per job (documented in the README's "Python API" section):

- build an index: `build_from_corpus` (the resumable batch job of `sparseretr index build`);
  encoders `create_encoder`, `SpladeEncoder`, `InferenceFreeEncoder`, `BM25Encoder`,
  `DenseEncoder`; `sparseretr.adapt.adapt(AdaptOptions(...))` fits an inference-free model to
  a corpus with no labels (`adapt` is also the subpackage's name, so it is not re-exported)
- open and search it: `Engine` (sparse, dense, bm25 and hybrid modes, explain, live writes);
  `open_sharded` gives the same Engine over Ray shard servers (read-only)
- fuse runs of your own: `rrf`, `convex`
- evaluate: `load_beir`, `evaluate` (nDCG, recall, MRR, MAP)
- the storage underneath: `SparseIndex`, `SparseVectors`

Names load on first use, so `import sparseretr` stays cheap (no torch until an encoder is
needed).
"""

from __future__ import annotations

import importlib
from typing import Any

from sparseretr._checkout import prefer_installed_kernels

prefer_installed_kernels()

__version__ = "0.1.0"

_API = {
    "BM25Encoder": "sparseretr.encoders",
    "DenseEncoder": "sparseretr.dense",
    "Engine": "sparseretr.engine",
    "InferenceFreeEncoder": "sparseretr.encoders",
    "SearchResult": "sparseretr.engine",
    "SparseIndex": "sparseretr.index",
    "SparseVectors": "sparseretr.index.vectors",
    "SpladeEncoder": "sparseretr.encoders",
    "build_from_corpus": "sparseretr.batch",
    "convex": "sparseretr.fusion",
    "create_encoder": "sparseretr.encoders",
    "evaluate": "sparseretr.metrics",
    "load_beir": "sparseretr.beir",
    "open_sharded": "sparseretr.cluster.deploy",
    "rrf": "sparseretr.fusion",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'sparseretr' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
