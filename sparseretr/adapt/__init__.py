"""Zero-label adaptation of an inference-free model to one corpus: `sparseretr adapt`.

Heavy imports (torch, the trainer) happen when `adapt` runs, not when this package loads.
"""

from sparseretr.adapt.job import AdaptOptions, adapt, default_config, read_corpus
from sparseretr.adapt.pseudo_queries import GENERATORS, PseudoQuery, generate, sentences

__all__ = [
    "GENERATORS",
    "AdaptOptions",
    "PseudoQuery",
    "adapt",
    "default_config",
    "generate",
    "read_corpus",
    "sentences",
]
