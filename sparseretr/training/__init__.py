"""Training learned sparse retrievers (inference-free and siamese SPLADE): `sparseretr train`.

Heavy imports (torch models, teachers) stay in the submodules; this package only re-exports.
"""

from sparseretr.training.config import TrainConfig, load_config
from sparseretr.training.trainer import Trainer, sparsity_stats, train_from_config

__all__ = ["TrainConfig", "Trainer", "load_config", "sparsity_stats", "train_from_config"]
