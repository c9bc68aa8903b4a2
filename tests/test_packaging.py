"""The distribution installs under one namespace: only `sparseretr` at the top of site-packages.

Builds the real wheel (what `pip install .` installs) and reads its file list, so a package
folder missing from pyproject's list, or a generic top-level name, fails here.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CARD = {"sparseretr": "sparseretr", "index": "sparseretr/index", "kernels": "sparseretr/kernels"}
CARD |= {"service": "sparseretr/service", "eval": "sparseretr/eval"}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, cwd=build,
    )  # fmt: skip
    (whl,) = out.glob("sparseretr-*.whl")
    with zipfile.ZipFile(whl) as z:
        return z.namelist()


def test_only_sparseretr_at_the_top(wheel_names: list[str]) -> None:
    tops = {n.split("/", 1)[0] for n in wheel_names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"sparseretr"}


def test_every_module_of_the_card_folders_is_installed(wheel_names: list[str]) -> None:
    names = set(wheel_names)
    missing = [
        f"{folder}/{py.relative_to(ROOT / folder)}"
        for folder, installed in CARD.items()
        for py in (ROOT / folder).rglob("*.py")
        if "__pycache__" not in py.parts
        and f"{installed}/{py.relative_to(ROOT / folder).as_posix()}" not in names
    ]
    assert not missing, f"not in the wheel (add the package to pyproject.toml): {missing}"
    assert "sparseretr/service/static/index.html" in names


def test_a_checkout_on_sys_path_does_not_hide_pypi_kernels() -> None:
    """`python -m ...` in the repository root puts the root on sys.path, where the card's
    `kernels/` folder shadows PyPI `kernels` (which transformers >= 5.25 imports). Importing
    sparseretr must leave the name to the installed distribution."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("kernels")
    except PackageNotFoundError:
        pytest.skip("PyPI `kernels` is not installed here, so nothing can hide it")
    code = "import sparseretr, kernels; print(kernels.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(out).resolve().parent != ROOT / "kernels", out
