"""Index storage: quantized impact postings on disk, external ids, doc store, atomic builds.

The search hot path lives in `kernels`; this package owns the format and its guarantees.
"""

from sparseretr.index.build import build_index
from sparseretr.index.docstore import DocStore
from sparseretr.index.errors import (
    ChecksumMismatchError,
    CorruptIndexError,
    IndexExistsError,
    IndexNotFoundError,
    IndexVersionError,
    ManifestError,
    SparseIndexError,
)
from sparseretr.index.format import FORMAT_NAME, FORMAT_VERSION
from sparseretr.index.quantize import dequantize, quantize
from sparseretr.index.sparse_index import SparseIndex

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ChecksumMismatchError",
    "CorruptIndexError",
    "DocStore",
    "IndexExistsError",
    "IndexNotFoundError",
    "IndexVersionError",
    "ManifestError",
    "SparseIndex",
    "SparseIndexError",
    "build_index",
    "dequantize",
    "quantize",
]
