"""The service over the real ``sparseretr.engine.Engine``: first-start build of a tiny BEIR corpus
(SPLADE + dense + BM25), then every mode through HTTP. Slower than test_service.py (models load)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sparseretr.service import Settings, create_app


@pytest.fixture(scope="module")
def client(tiny_beir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    index = tmp_path_factory.mktemp("svc") / "idx"
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, index_path=index, data_path=tiny_beir, api_key=None,
        load_in_background=False, workers=1,
    )
    gc.unfreeze()  # whatever an earlier test froze: test_ready_and_stats sees this start's own
    with TestClient(create_app(settings)) as c:
        yield c
    seg = index / "segments" / "seg-000000"
    assert (seg / "dense").is_dir() and (seg / "bm25").is_dir()


def test_ready_and_stats(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200
    # warmed up before ready (the first test here: no search has run yet): the kernels'
    # per-term arrays are decoded, so no user's first query pays for it
    assert client.app.state.engine.snapshot.first.sparse._kernel_postings is not None
    # and what it loaded is frozen out of the collector's full passes (no pauses at large k)
    assert gc.get_freeze_count() > 100_000
    s = client.get("/stats").json()
    assert s["index"]["n_docs"] == 6
    assert s["modes"] == ["sparse", "dense", "hybrid", "bm25"]
    metrics = client.get("/metrics").text
    assert "sparseretr_index_documents 6.0" in metrics


@pytest.mark.parametrize("mode", ["sparse", "dense", "hybrid", "bm25"])
def test_search_every_mode(client: TestClient, mode: str) -> None:
    r = client.post("/search", json={"query": "vitamin D deficiency cancer", "mode": mode,
                                     "k": 3, "explain": True})
    assert r.status_code == 200, r.text
    body = r.json()
    top = body["hits"][0]
    assert top["id"] == "d1" and top["title"] == "Vitamin D and cancer"
    # the index has a BM25 side, so the default hybrid fuses all three sides
    expected = {"hybrid": {"sparse", "dense", "bm25"}}.get(mode, {mode})
    assert set(top["components"]) == expected
    if mode == "hybrid":
        assert body["options"]["bm25_weight"] == pytest.approx(1 / 3)
    if mode == "dense":
        assert top["matched"] is None  # no tokens to explain
    else:
        tokens = {m["token"] for m in top["matched"]}
        assert "vitamin" in tokens
        marked = {top["snippet"][h["start"]:h["end"]].lower() for h in top["highlights"]}
        assert {"vitamin", "deficiency", "cancer"} <= marked
    assert body["timing"]["encode_ms"] > 0


def test_batch_and_documents(client: TestClient) -> None:
    r = client.post("/search/batch", json={"queries": ["how do proteins fold",
                                                       "exercise and blood pressure"], "k": 2})
    assert r.status_code == 200
    assert [res["hits"][0]["id"] for res in r.json()["results"]] == ["d2", "d5"]
    doc = client.get("/documents/d3").json()
    assert doc["title"] == "Sleep" and "memory" in doc["text"]
    assert client.get("/documents/nope").status_code == 404

