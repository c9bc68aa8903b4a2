"""Running from a checkout: keep the repository's `kernels/` folder from hiding PyPI `kernels`.

The top-level folders of this repository install as `sparseretr.kernels`, `sparseretr.index`,
... (pyproject's package-dir). But `python -m ...` and `python -m pytest` started in the
repository root put that root on sys.path, where `kernels/` then also answers to the plain name
`kernels`: the name of Hugging Face's kernel-hub package, which transformers (5.25 and later)
depends on and imports while loading any model. transformers would get our Numba kernels
and fail with "cannot import name 'CUDAProperties' from 'kernels'".
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _is_root(entry: str) -> bool:
    try:
        return Path(entry or ".").resolve() == ROOT
    except OSError:
        return False


def import_installed_kernels() -> None:
    """When `kernels` would resolve to the checkout's folder, import the installed
    distribution of that name (if any) first, so that every later `import kernels` gets it.

    Cheap when there is nothing to do: one spec lookup, no import."""
    if "kernels" in sys.modules:
        return
    try:
        spec = importlib.util.find_spec("kernels")
    except (ImportError, ValueError):
        return
    if spec is None or spec.origin is None:
        return
    if Path(spec.origin).resolve().parent != ROOT / "kernels":
        return
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if not _is_root(p)]
    try:
        importlib.import_module("kernels")
    except ImportError:
        sys.modules.pop("kernels", None)  # not installed: transformers will not ask for it
    finally:
        sys.path[:] = saved
