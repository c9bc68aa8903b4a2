"""The slice of ``sparseretr.engine.Engine`` the service relies on (structural typing only).

The service imports the real engine lazily, in the default engine factory, so this package (and
its tests, which use a fake) work without it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class DocStoreLike(Protocol):
    def get(self, doc_id: str) -> dict | None: ...


def engine_modes(engine: Any) -> list[str]:
    return [str(m) for m in (getattr(engine, "modes", None) or [])]


def engine_docstore(engine: Any) -> DocStoreLike | None:
    return getattr(engine, "docstore", None)
