"""Errors that come from what the user passed: reported as one clear line, never a traceback."""

from __future__ import annotations

from sparseretr.corpus import CorpusError
from sparseretr.index.errors import SparseIndexError
from sparseretr.models import ModelNotFoundError

USER_ERRORS: tuple[type[BaseException], ...] = (
    SparseIndexError,
    ModelNotFoundError,
    CorpusError,
    FileExistsError,
    FileNotFoundError,  # includes eval's DatasetNotFoundError
    ValueError,
    RuntimeError,  # includes eval's PyseriniUnavailableError
)
