"""docker-compose.yml and Dockerfile, checked by parsing (there is no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service["environment"]
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _container_port(mapping: str) -> tuple[str, str]:
    *host, container = str(mapping).split(":")
    return ":".join(host), container


@pytest.mark.parametrize("name", ["sparseretr", "sparseretr-gpu"])
def test_service_definition(compose: dict[str, Any], name: str) -> None:
    svc = compose["services"][name]
    assert svc["build"]["context"] == "."
    assert svc["command"] == "sparseretr serve"
    host, container = _container_port(svc["ports"][0])
    assert container == "8000"
    assert host.startswith("127.0.0.1:")  # published on loopback only
    env = _env(svc)
    assert env["SPARSERETR_HOST"] == "0.0.0.0" and env["SPARSERETR_PORT"] == "8000"
    assert env["SPARSERETR_INDEX_PATH"].startswith("/indexes")
    assert env["HF_HOME"].startswith("/cache")
    assert "SPARSERETR_API_KEY" in env
    mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
    assert mounts["/indexes"] == "indexes"  # named volume: index survives restarts
    assert mounts["/cache/huggingface"] == "model-cache"
    hc = svc["healthcheck"]
    assert hc["test"][0] == "CMD" and "curl" in hc["test"]
    assert any(re.fullmatch(r"http://(127\.0\.0\.1|localhost):8000/healthz", t) for t in hc["test"])
    for key in ("interval", "timeout", "retries"):
        assert key in hc


def test_named_volumes_declared(compose: dict[str, Any]) -> None:
    assert {"indexes", "model-cache"} <= set(compose["volumes"])


def test_default_service_has_no_profile_or_gpu(compose: dict[str, Any]) -> None:
    svc = compose["services"]["sparseretr"]
    assert "profiles" not in svc and "deploy" not in svc


def test_gpu_variant(compose: dict[str, Any]) -> None:
    svc = compose["services"]["sparseretr-gpu"]
    assert svc["profiles"] == ["gpu"]
    (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["count"] == "all"
    assert device["capabilities"] == ["gpu"]
    # not on the same host port as the CPU service
    cpu_host = _container_port(compose["services"]["sparseretr"]["ports"][0])[0]
    assert _container_port(svc["ports"][0])[0] != cpu_host
    assert "cpu" not in svc["build"]["args"]["TORCH_INDEX_URL"]


def test_dockerfile(dockerfile: str) -> None:
    lines = [ln.strip() for ln in dockerfile.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "FROM python:3.11-slim"
    torch_at = next(i for i, ln in enumerate(lines) if "pip install" in ln and "torch" in ln)
    project_at = next(i for i, ln in enumerate(lines) if re.search(r"pip install \.$", ln))
    assert torch_at < project_at  # the CPU torch wheel first, then the project
    assert "download.pytorch.org/whl/cpu" in dockerfile
    assert re.search(r"^EXPOSE 8000$", dockerfile, re.M)
    assert re.search(r'^CMD \["sparseretr", "serve"\]$', dockerfile, re.M)
    assert "curl" in dockerfile and "/healthz" in dockerfile
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)  # not root


def test_dockerfile_copies_every_package(dockerfile: str) -> None:
    import tomllib

    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = set(mapping["package-dir"].values())
    assert folders == {"sparseretr", "index", "kernels", "service", "eval"}
    for folder in folders:
        assert re.search(rf"^COPY {folder} \./{folder}$", dockerfile, re.M), folder
