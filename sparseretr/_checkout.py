"""Running from a checkout: keep the repository's `kernels/` folder from hiding PyPI `kernels`.

The top-level folders of this repository install as `sparseretr.kernels`, `sparseretr.index`,
... (pyproject's package-dir). But `python -m ...` and `python -m pytest` started in the
repository root put that root on sys.path, where `kernels/` then also answers to the plain name
`kernels`: the name of Hugging Face's kernel-hub package, which transformers (5.25 and later)
depends on and imports while loading any model. transformers would get our Numba kernels
and fail with "cannot import name 'CUDAProperties' from 'kernels'".
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _is_root(entry: str) -> bool:
    try:
        return Path(entry or ".").resolve() == ROOT
    except OSError:
        return False


class InstalledKernelsFinder(importlib.abc.MetaPathFinder):
    """Finds the top-level name `kernels` on sys.path without the checkout's root, i.e. the
    installed distribution; anything else, or no installed `kernels`, goes to the usual
    finders. Lazy: nothing is imported until someone imports `kernels`."""

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "kernels":
            return None
        entries = [p for p in sys.path if not _is_root(p)]
        return importlib.machinery.PathFinder.find_spec(fullname, entries)


def prefer_installed_kernels() -> None:
    """When `kernels` would resolve to the checkout's folder, make the installed distribution
    of that name (if any) answer to it instead, for every later `import kernels`.

    Cheap: one spec lookup, no import."""
    if "kernels" in sys.modules or any(
        isinstance(f, InstalledKernelsFinder) for f in sys.meta_path
    ):
        return
    try:
        spec = importlib.util.find_spec("kernels")
    except (ImportError, ValueError):
        return
    if spec is None or spec.origin is None:
        return
    if Path(spec.origin).resolve().parent == ROOT / "kernels":
        sys.meta_path.insert(0, InstalledKernelsFinder())
