"""The one reader of the project's versioned JSON files: index manifests, commit points, dense
configs and batch work-folder manifests. Each is {"format": NAME, "format_version": N, ...};
each failure (unreadable, not an object, another format, another version) gets its own clear
error, of the exception type the caller's layer uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class VersionedJson:
    """How one kind of file is checked. version=None reads any version (the caller decides);
    version_fix(found, path) says what to do about another version (default: hint)."""

    fmt: str
    version: int | None
    what: str  # what a file of this format is, for "not a ..." messages
    invalid: type[Exception]  # unreadable, not a JSON object, a non-integer version
    foreign: type[Exception]  # another format
    outdated: type[Exception]  # another version
    hint: str = ""  # appended to every message: what to do
    version_fix: Callable[[int, Path], str] | None = None

    def read(self, path: Path) -> dict[str, Any]:
        tail = f"; {self.hint}" if self.hint else ""
        try:
            obj = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise self.invalid(
                f"{path} is not a readable {self.what}: not valid JSON ({e}){tail}"
            ) from e
        if not isinstance(obj, dict):
            raise self.invalid(f"{path} must hold a JSON object{tail}")
        if obj.get("format") != self.fmt:
            raise self.foreign(
                f"{path} has format {obj.get('format')!r}, expected {self.fmt!r}: not a "
                f"{self.what}{tail}"
            )
        version = obj.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise self.invalid(f"{path}: format_version must be an integer, got {version!r}")
        if self.version is not None and version != self.version:
            fix = self.version_fix(version, Path(path)) if self.version_fix else self.hint
            raise self.outdated(
                f"{path} has format_version {version}, this sparseretr reads version "
                f"{self.version}" + (f": {fix}" if fix else "")
            )
        return obj
