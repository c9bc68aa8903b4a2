"""Index errors: one base class so callers can catch everything index-related in one place.

Each subclass names one failure the operator can act on; messages carry the path and the fix.
"""

from __future__ import annotations

REBUILD_HINT = "rebuild it with `sparseretr index build`"


class UserInputError(ValueError):
    """Bad input from the caller (an argument, a setting, a file's content): the command line
    reports it as one line and exit code 2. A plain ValueError elsewhere is a bug and keeps its
    traceback. Lives at the bottom layer so every layer can raise it."""


class UnavailableError(RuntimeError):
    """An optional tool this command needs is not installed here (pyserini and Java, Ray):
    one line with the install hint, as for bad input."""


class SparseIndexError(Exception):
    """Base class for every error raised while building or opening an index."""


class IndexNotFoundError(SparseIndexError, FileNotFoundError):
    """The index folder, or its manifest.json, does not exist."""


class IndexExistsError(SparseIndexError, FileExistsError):
    """build_index would replace an existing path without overwrite=True."""


class IndexVersionError(SparseIndexError):
    """The manifest names another format, or a format_version this code cannot read."""


class CorruptIndexError(SparseIndexError):
    """The index is present but damaged: bad manifest, missing or mismatched file."""


class ManifestError(CorruptIndexError):
    """manifest.json is not valid JSON or lacks required fields."""


class ChecksumMismatchError(CorruptIndexError):
    """A file's sha256 differs from the manifest (only checked with verify=True)."""
