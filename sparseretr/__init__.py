"""sparseretr: learned sparse retrieval, SPLADE-class relevance at BM25-class cost."""

from sparseretr.index.vectors import SparseVectors

__all__ = ["SparseVectors"]
__version__ = "0.1.0"
