"""Errors that come from what the user passed: reported as one clear line, never a traceback.

Everything else, a plain ValueError or RuntimeError included, is a bug: the command line lets
it through with its traceback.
"""

from __future__ import annotations

from pydantic import ValidationError

from sparseretr.index.errors import SparseIndexError, UnavailableError, UserInputError
from sparseretr.models import ModelNotFoundError

USER_ERRORS: tuple[type[BaseException], ...] = (
    UserInputError,  # includes CorpusError, WorkDirError, ReadOnlyIndexError
    SparseIndexError,
    ModelNotFoundError,
    FileExistsError,
    FileNotFoundError,  # includes DatasetNotFoundError
    ValidationError,  # settings given on the command line (serve)
    UnavailableError,  # pyserini / Java, Ray not installed
)
