"""HTTP service tests: every endpoint, every kind of bad input, auth, metrics, readiness,
micro-batching. A fake engine (tests/test_service_fakes.py) keeps them fast and independent of
the retrieval core."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sparseretr.service import Settings, create_app
from sparseretr.service.batcher import MicroBatcher, Overloaded
from sparseretr.service.engine_loader import ensure_index
from sparseretr.service.server import serve, settings_from_args
from sparseretr.service.snippets import ELLIPSIS, highlight, make_snippet
from test_service_fakes import DOCS, FakeEngine


def make_settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"api_key": None, "microbatch_window_ms": 2.0, "refresh_interval_s": 0}
    base.update(kw)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def client(engine: FakeEngine):
    with TestClient(create_app(make_settings(), engine)) as c:
        yield c


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    if code is not None:
        assert err["code"] == code, err
    return err


# --------------------------------------------------------------------------- health & ops


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_ready_with_injected_engine(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["ready"] is True


def test_readyz_503_until_engine_loaded() -> None:
    gate = threading.Event()
    engine = FakeEngine()

    def slow_factory(settings: Settings, progress: Any) -> FakeEngine:
        progress.building(1000, 5000)  # as a first-start build reports it
        assert gate.wait(10)
        return engine

    app = create_app(make_settings(), engine_factory=slow_factory)
    with TestClient(app) as c:
        deadline = time.monotonic() + 10
        while ((r := c.get("/readyz")).json().get("progress") or {}).get("docs_done") is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert r.status_code == 503
        assert r.json()["status"] == "loading" and r.json()["ready"] is False
        progress = r.json()["progress"]
        assert progress["phase"] == "building the index"
        assert (progress["docs_done"], progress["docs_total"]) == (1000, 5000)
        assert c.get("/healthz").status_code == 200  # alive while loading
        assert_error(c.post("/search", json={"query": "cancer"}), 503, "not_ready")
        assert_error(c.get("/stats"), 503, "not_ready")
        assert "sparseretr_engine_ready 0.0" in c.get("/metrics").text
        gate.set()
        deadline = time.monotonic() + 10
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "engine never became ready"
            time.sleep(0.01)
        assert c.post("/search", json={"query": "cancer"}).status_code == 200
        assert "sparseretr_engine_ready 1.0" in c.get("/metrics").text


def test_readyz_reports_a_failed_load() -> None:
    def broken(settings: Settings, progress: Any) -> Any:
        raise FileNotFoundError("index not found: /nowhere")

    with TestClient(create_app(make_settings(), engine_factory=broken)) as c:
        deadline = time.monotonic() + 10
        while c.get("/readyz").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["status"] == "failed" and "/nowhere" in r.json()["detail"]
        err = assert_error(c.post("/search", json={"query": "x"}), 503, "engine_unavailable")
        assert "/nowhere" in err["details"]
        assert c.get("/healthz").status_code == 200


def test_blocking_load_when_not_in_background(engine: FakeEngine) -> None:
    app = create_app(make_settings(load_in_background=False), engine_factory=lambda s, p: engine)
    with TestClient(app) as c:
        assert c.get("/readyz").status_code == 200


def test_stats(client: TestClient) -> None:
    r = client.get("/stats")
    assert r.status_code == 200
    s = r.json()
    assert s["index"]["n_docs"] == len(DOCS)
    assert s["modes"] == ["sparse", "dense", "hybrid", "bm25"]
    assert s["defaults"]["mode"] == "hybrid" and s["defaults"]["fusion"] == "convex"
    assert s["limits"] == {"max_k": 1000, "max_query_chars": 2048, "max_batch": 64,
                           "max_body_bytes": 1 << 20}
    assert s["writes_need_key"] is False


def test_metrics_count_requests_by_endpoint_and_mode(client: TestClient) -> None:
    client.post("/search", json={"query": "vitamin d cancer"})
    client.post("/search", json={"query": "vitamin d cancer", "mode": "bm25"})
    client.post("/search/batch", json={"queries": ["sleep", "exercise"], "mode": "sparse"})
    client.post("/search", json={"query": ""})
    client.get("/documents/4983")
    client.get("/documents/nope")
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    for line in (
        'sparseretr_http_requests_total{endpoint="/search",method="POST",mode="hybrid",'
        'status="200"} 1.0',
        'sparseretr_http_requests_total{endpoint="/search",method="POST",mode="bm25",'
        'status="200"} 1.0',
        'sparseretr_http_requests_total{endpoint="/search/batch",method="POST",mode="sparse",'
        'status="200"} 1.0',
        'sparseretr_http_requests_total{endpoint="/search",method="POST",mode="none",'
        'status="422"} 1.0',
        'sparseretr_http_requests_total{endpoint="/documents/{doc_id}",method="GET",'
        'mode="none",status="404"} 1.0',
        'sparseretr_queries_total{mode="sparse"} 2.0',
        f"sparseretr_index_documents {float(len(DOCS))}",
        "sparseretr_index_postings 1234.0",
        "sparseretr_index_vocab 30522.0",
    ):
        assert line in text, line
    assert 'sparseretr_http_request_duration_seconds_bucket{endpoint="/search",le="+Inf",' \
           'mode="hybrid"} 1.0' in text
    assert 'sparseretr_engine_batch_size_count{source="batch"} 1.0' in text


def test_many_apps_in_one_process_have_separate_registries(engine: FakeEngine) -> None:
    apps = [create_app(make_settings(), engine) for _ in range(3)]
    with TestClient(apps[0]) as c0, TestClient(apps[1]) as c1:
        c0.get("/healthz")
        assert 'endpoint="/healthz"' in c0.get("/metrics").text
        assert 'endpoint="/healthz"' not in c1.get("/metrics").text


def test_ui_page(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    for needle in ('id="q"', 'value="sparse"', 'value="dense"', 'value="hybrid"', 'value="bm25"',
                   'id="fusion"', "explain", 'el("mark"', "/search"):
        assert needle in html, needle
    assert "http://" not in html and "https://" not in html  # offline: no CDN
    assert "default-src 'none'" in r.headers["content-security-policy"]


def test_openapi_lists_routes(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/search", "/search/batch", "/documents", "/documents/{doc_id}", "/healthz",
              "/readyz", "/metrics", "/stats"):
        assert p in paths


# --------------------------------------------------------------------------------- search


def test_search_returns_hits_with_docs_and_timing(client: TestClient, engine: FakeEngine) -> None:
    r = client.post("/search", json={"query": "  vitamin D cancer  ", "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "vitamin D cancer"  # stripped
    assert body["mode"] == "hybrid"
    assert body["options"]["fusion"] == "convex" and body["options"]["k"] == 3
    assert 1 <= len(body["hits"]) <= 3
    top = body["hits"][0]
    assert top["id"] == "4983" and top["rank"] == 1
    assert top["title"].startswith("Vitamin D deficiency")
    assert "vitamin D" in top["snippet"]
    assert set(top["components"]) == {"sparse", "dense"}
    assert set(top["components"]["sparse"]) == {"score", "rank"}
    assert top["matched"] is None  # explain off
    assert [h["rank"] for h in body["hits"]] == list(range(1, len(body["hits"]) + 1))
    assert set(body["timing"]) >= {"encode_ms", "search_ms", "fuse_ms", "total_ms"}
    assert body["timing"]["total_ms"] > 0
    call = engine.calls[-1]
    assert call["queries"] == ["vitamin D cancer"] and call["k"] == 3 and call["explain"] is False


def test_search_explain_gives_matched_tokens_and_highlights(client: TestClient) -> None:
    r = client.post("/search", json={"query": "chaperone binding folding", "explain": True})
    assert r.status_code == 200, r.text
    hit = r.json()["hits"][0]
    assert hit["id"] == "5836"
    tokens = [m["token"] for m in hit["matched"]]
    assert "##ing" in tokens and "chaperone" in tokens
    contribs = [m["contribution"] for m in hit["matched"]]
    assert contribs == sorted(contribs, reverse=True)
    snippet = hit["snippet"]
    marked = {snippet[h["start"]:h["end"]]: h["token"] for h in hit["highlights"]}
    assert marked["chaperones"] == "chaperone"
    assert marked["binding"] == "##ing" or marked.get("bind") == "bind"
    assert all(h["token"] in tokens for h in hit["highlights"])


@pytest.mark.parametrize("mode", ["sparse", "dense", "hybrid", "bm25"])
def test_every_mode(client: TestClient, engine: FakeEngine, mode: str) -> None:
    r = client.post("/search", json={"query": "blood pressure exercise", "mode": mode})
    assert r.status_code == 200 and r.json()["mode"] == mode
    assert engine.calls[-1]["mode"] == mode


def test_convex_fusion_options_are_passed(client: TestClient, engine: FakeEngine) -> None:
    r = client.post("/search", json={"query": "sleep", "fusion": "convex", "alpha": 0.3,
                                     "normalization": "zscore", "k": 5})
    assert r.status_code == 200
    assert engine.calls[-1]["fusion"] == "convex" and engine.calls[-1]["alpha"] == 0.3
    assert r.json()["options"]["normalization"] == "zscore"


def test_pruning_knobs_are_passed_and_checked(client: TestClient, engine: FakeEngine) -> None:
    r = client.post("/search", json={"query": "sleep", "mode": "sparse"})
    assert r.json()["options"]["prune_alpha"] == 1.0 and engine.calls[-1]["term_fraction"] == 1.0
    r = client.post("/search", json={"query": "sleep", "mode": "sparse", "prune_alpha": 0.8,
                                     "term_fraction": 0.5})  # fmt: skip
    assert r.status_code == 200
    assert (engine.calls[-1]["prune_alpha"], engine.calls[-1]["term_fraction"]) == (0.8, 0.5)
    assert r.json()["options"]["term_fraction"] == 0.5
    for bad in ({"prune_alpha": 0}, {"term_fraction": 1.5}):
        assert_error(client.post("/search", json={"query": "x", **bad}), 422)


def test_defaults_come_from_settings(engine: FakeEngine) -> None:
    s = make_settings(default_mode="bm25", default_fusion="convex", default_alpha=0.8)
    with TestClient(create_app(s, engine)) as c:
        body = c.post("/search", json={"query": "sleep"}).json()
    assert body["mode"] == "bm25" and body["options"]["alpha"] == 0.8
    assert engine.calls[-1]["mode"] == "bm25" and engine.calls[-1]["fusion"] == "convex"


def test_bm25_weight_default_applies_only_where_the_bm25_side_is() -> None:
    s = make_settings(default_bm25_weight=0.25)
    with_bm25, without = FakeEngine(), FakeEngine(modes=("sparse", "dense", "hybrid"))
    with TestClient(create_app(s, with_bm25)) as c:
        body = c.post("/search", json={"query": "sleep", "mode": "hybrid"}).json()
        assert body["options"]["bm25_weight"] == 0.25 and with_bm25.calls[-1]["bm25_weight"] == 0.25
        body = c.post("/search", json={"query": "sleep", "bm25_weight": 0.5}).json()
        assert body["options"]["bm25_weight"] == 0.5 and with_bm25.calls[-1]["bm25_weight"] == 0.5
        assert c.get("/stats").json()["defaults"]["bm25_weight"] == 0.25
        assert_error(c.post("/search", json={"query": "x", "bm25_weight": 1.5}), 422)
    with TestClient(create_app(s, without)) as c:
        body = c.post("/search", json={"query": "sleep", "mode": "hybrid"}).json()
        assert body["options"]["bm25_weight"] == 0.0 and without.calls[-1]["bm25_weight"] == 0.0


def test_unavailable_mode_is_400() -> None:
    eng = FakeEngine(modes=("sparse", "bm25"))
    with TestClient(create_app(make_settings(), eng)) as c:
        err = assert_error(c.post("/search", json={"query": "x", "mode": "dense"}), 400,
                           "mode_unavailable")
        assert err["details"]["available"] == ["sparse", "bm25"]
        assert_error(c.post("/search/batch", json={"queries": ["x"], "mode": "hybrid"}), 400,
                     "mode_unavailable")


def test_engine_value_error_is_400() -> None:
    class Picky(FakeEngine):
        def search(self, queries: list[str], **kw: Any) -> list[Any]:
            raise ValueError("normalization zscore needs at least 2 candidates")

    with TestClient(create_app(make_settings(), Picky())) as c:
        err = assert_error(c.post("/search", json={"query": "x"}), 400, "invalid_search")
        assert "zscore" in err["message"]
        assert_error(c.post("/search/batch", json={"queries": ["x", "y"]}), 400, "invalid_search")


def test_a_shard_down_is_503() -> None:
    from sparseretr.index.errors import UnavailableError

    class ShardDown(FakeEngine):
        def search(self, queries: list[str], **kw: Any) -> list[Any]:
            raise UnavailableError("a shard of /idx is down (ActorDiedError)")

    app = create_app(make_settings(), ShardDown())
    with TestClient(app, raise_server_exceptions=False) as c:
        for r in (c.post("/search", json={"query": "x"}),
                  c.post("/search/batch", json={"queries": ["x", "y"]})):  # fmt: skip
            err = assert_error(r, 503, "service_unavailable")
            assert "shard of /idx is down" in err["message"]
            assert r.headers["retry-after"] == "5"


def test_engine_crash_is_a_clean_500() -> None:
    class Broken(FakeEngine):
        def search(self, queries: list[str], **kw: Any) -> list[Any]:
            raise RuntimeError("segfault-ish")

    app = create_app(make_settings(), Broken())
    with TestClient(app, raise_server_exceptions=False) as c:
        err = assert_error(c.post("/search", json={"query": "x"}), 500, "internal_error")
        assert "segfault" not in json.dumps(err)


def test_batch_search(client: TestClient, engine: FakeEngine) -> None:
    queries = ["vitamin d cancer", "protein folding", "blood pressure"]
    r = client.post("/search/batch", json={"queries": queries, "k": 2, "explain": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [res["query"] for res in body["results"]] == queries
    assert [res["hits"][0]["id"] for res in body["results"]] == ["4983", "5836", "9120"]
    assert all(len(res["hits"]) <= 2 for res in body["results"])
    assert body["results"][0]["hits"][0]["matched"]
    assert body["timing"]["batch_size"] == 3
    assert [c["queries"] for c in engine.calls] == [queries]  # one engine call


def test_document_get(client: TestClient) -> None:
    r = client.get("/documents/4983")
    assert r.status_code == 200
    doc = r.json()
    assert doc["id"] == "4983" and doc["title"].startswith("Vitamin D")
    assert doc["metadata"] == {"year": 2011} and "quintile" in doc["text"]


def test_document_missing_is_404(client: TestClient) -> None:
    err = assert_error(client.get("/documents/does-not-exist"), 404, "document_not_found")
    assert err["details"] == {"id": "does-not-exist"}


def test_document_without_docstore_is_404() -> None:
    eng = FakeEngine()
    eng.docstore = None  # type: ignore[assignment]
    with TestClient(create_app(make_settings(), eng)) as c:
        assert_error(c.get("/documents/4983"), 404, "document_not_found")
        r = c.post("/search", json={"query": "vitamin cancer"})
        assert r.status_code == 200 and r.json()["hits"][0]["title"] == ""


# --------------------------------------------------------------------------------- writes

UPSERT = {"documents": [{"id": "new1", "title": "T", "text": "some text"}]}


def test_upsert_then_refresh_makes_it_searchable(client: TestClient, engine: FakeEngine) -> None:
    doc = {"id": "new1", "title": "Sleeping owls", "text": "owls sleep through the day"}
    r = client.post("/documents", json={"documents": [doc]})
    assert r.status_code == 200, r.text
    ack = r.json()
    assert ack == {"seq": 1, "ids": ["new1"], "durable": True, "searchable": False}
    hits = client.post("/search", json={"query": "owls", "mode": "sparse"}).json()["hits"]
    assert "new1" not in [h["id"] for h in hits]  # not before the refresh
    r = client.post("/refresh")
    assert r.status_code == 200 and r.json()["n_docs"] == len(DOCS) + 1
    assert f"sparseretr_index_documents {float(len(DOCS) + 1)}" in client.get("/metrics").text
    hits = client.post("/search", json={"query": "owls", "mode": "sparse"}).json()["hits"]
    assert hits[0]["id"] == "new1" and hits[0]["title"] == "Sleeping owls"
    assert client.get("/documents/new1").json()["text"] == doc["text"]


def test_delete_with_refresh_and_404(client: TestClient) -> None:
    r = client.delete("/documents/4983", params={"refresh": "true"})
    assert r.status_code == 200 and r.json()["searchable"] is True
    assert_error(client.get("/documents/4983"), 404, "document_not_found")
    err = assert_error(client.delete("/documents/4983"), 404, "document_not_found")
    assert err["details"] == {"id": "4983"}


def test_read_only_index_is_409() -> None:
    with TestClient(create_app(make_settings(), FakeEngine(writable=False))) as c:
        err = assert_error(c.post("/documents", json=UPSERT), 409, "read_only_index")
        assert "sparseretr index build" in err["message"]
        assert_error(c.delete("/documents/4983"), 409, "read_only_index")
        assert_error(c.post("/refresh"), 409, "read_only_index")


@pytest.fixture
def keyed_client(engine: FakeEngine):
    with TestClient(create_app(make_settings(api_key="s3cret"), engine)) as c:
        yield c


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""},
                                     {"Authorization": "Bearer s3cret"}])
def test_writes_need_the_key(keyed_client: TestClient, headers: dict[str, str]) -> None:
    r = keyed_client.post("/documents", json=UPSERT, headers=headers)
    assert_error(r, 401, "unauthorized")
    assert "X-API-Key" in r.headers["www-authenticate"]
    assert_error(keyed_client.delete("/documents/4983", headers=headers), 401, "unauthorized")
    # auth is checked before the body is validated: no information for unauthenticated callers
    assert_error(keyed_client.post("/documents", json={"bogus": 1}, headers=headers), 401)


def test_writes_with_the_key_go_through(keyed_client: TestClient) -> None:
    h = {"X-API-Key": "s3cret"}
    assert keyed_client.post("/documents", json=UPSERT, headers=h).status_code == 200
    assert keyed_client.delete("/documents/4983", headers=h).status_code == 200
    assert_error(keyed_client.post("/refresh"), 401, "unauthorized")
    assert keyed_client.post("/refresh", headers=h).status_code == 200
    assert_error(keyed_client.post("/documents", json={"documents": []}, headers=h), 422)
    assert_error(keyed_client.post("/documents", json={"documents": [{"title": "no id"}]},
                                   headers=h), 422)
    # reads stay open
    assert keyed_client.get("/documents/5836").status_code == 200
    assert keyed_client.post("/search", json={"query": "sleep"}).status_code == 200
    assert keyed_client.get("/stats").json()["writes_need_key"] is True


# ------------------------------------------------------------------------------ bad input

BAD_SEARCH_BODIES = {
    "empty query": {"query": ""},
    "whitespace query": {"query": "   \n\t "},
    "missing query": {"k": 5},
    "k=0": {"query": "x", "k": 0},
    "k negative": {"query": "x", "k": -3},
    "k=1001": {"query": "x", "k": 1001},
    "k=10001": {"query": "x", "k": 10001},
    "k string": {"query": "x", "k": "10"},
    "k float": {"query": "x", "k": 2.5},
    "k bool": {"query": "x", "k": True},
    "query number": {"query": 42},
    "query list": {"query": ["a", "b"]},
    "query null": {"query": None},
    "huge query": {"query": "word " * 1000},
    "unknown mode": {"query": "x", "mode": "semantic"},
    "unknown fusion": {"query": "x", "fusion": "max"},
    "alpha > 1": {"query": "x", "alpha": 1.5},
    "alpha string": {"query": "x", "alpha": "half"},
    "rrf_k 0": {"query": "x", "rrf_k": 0},
    "normalization": {"query": "x", "normalization": "l2"},
    "explain string": {"query": "x", "explain": "yes"},
    "unknown field": {"query": "x", "top_k": 5},
    "body is a list": [{"query": "x"}],
    "body is a string": "vitamin d",
    "body is null": None,
}


@pytest.mark.parametrize("body", BAD_SEARCH_BODIES.values(), ids=BAD_SEARCH_BODIES.keys())
def test_bad_search_input_is_422_with_details(client: TestClient, body: Any) -> None:
    err = assert_error(client.post("/search", json=body), 422, "validation_error")
    assert isinstance(err["details"], list) and err["details"]
    assert all({"loc", "msg", "type"} <= set(d) for d in err["details"])
    assert err["details"][0]["loc"][0] == "body"


def test_validation_details_name_the_field(client: TestClient) -> None:
    err = assert_error(client.post("/search", json={"query": "x", "k": 0}), 422)
    assert err["details"][0]["loc"] == ["body", "k"]
    assert err["details"][0]["type"] == "greater_than_equal"
    assert "k" in err["message"]


BAD_BATCH_BODIES = {
    "empty list": {"queries": []},
    "not a list": {"queries": "abc"},
    "blank item": {"queries": ["ok", "  "]},
    "number item": {"queries": ["ok", 3]},
    "too many": {"queries": ["q"] * 65},
    "k=0": {"queries": ["q"], "k": 0},
    "huge item": {"queries": ["x" * 5000]},
    "single query key": {"query": "x"},
}


@pytest.mark.parametrize("body", BAD_BATCH_BODIES.values(), ids=BAD_BATCH_BODIES.keys())
def test_bad_batch_input_is_422(client: TestClient, body: Any) -> None:
    assert_error(client.post("/search/batch", json=body), 422, "validation_error")


@pytest.mark.parametrize("raw", [b'{"query": ', b"{query: 'x'}", b"\xff\xfe\x00", b"{}}",
                                 b'{"query": "x",}'])
def test_malformed_json_is_400(client: TestClient, raw: bytes) -> None:
    r = client.post("/search", content=raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "malformed_json")


def test_non_json_content_type_is_415(client: TestClient) -> None:
    r = client.post("/search", content=b'{"query": "x"}', headers={"Content-Type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")


def test_oversize_body_is_413(client: TestClient) -> None:
    big = json.dumps({"query": "x", "pad": "y" * (1 << 20)})
    err = assert_error(client.post("/search", content=big,
                                   headers={"Content-Type": "application/json"}),
                       413, "payload_too_large")
    assert err["details"]["max_body_bytes"] == 1 << 20


def test_oversize_streamed_body_without_length_is_413(engine: FakeEngine) -> None:
    with TestClient(create_app(make_settings(max_body_bytes=4096), engine)) as c:
        def chunks():
            for _ in range(10):
                yield b"x" * 1024

        r = c.post("/search", content=chunks(), headers={"Content-Type": "application/json"})
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert_error(r, 413, "payload_too_large")
        # a small streamed body still goes through
        r = c.post("/search", content=iter([b'{"query": ', b'"sleep"}']),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 200, r.text


def test_operator_limits_tighten_the_schema(engine: FakeEngine) -> None:
    s = make_settings(max_k=50, max_query_chars=20, max_batch=2)
    with TestClient(create_app(s, engine)) as c:
        err = assert_error(c.post("/search", json={"query": "x", "k": 51}), 422)
        assert err["details"][0]["loc"] == ["body", "k"]
        err = assert_error(c.post("/search", json={"query": "x" * 21}), 422)
        assert err["details"][0]["loc"] == ["body", "query"]
        assert err["details"][0]["type"] == "string_too_long"
        assert_error(c.post("/search/batch", json={"queries": ["a", "b", "c"]}), 422)
        err = assert_error(c.post("/search/batch", json={"queries": ["a", "y" * 30]}), 422)
        assert err["details"][0]["loc"] == ["body", "queries", 1]
        assert c.post("/search", json={"query": "x" * 20, "k": 50}).status_code == 200


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    err = assert_error(client.get("/nope"), 404, "not_found")
    assert "/nope" in err["message"]
    assert_error(client.get("/search"), 405, "method_not_allowed")
    assert_error(client.put("/documents/4983"), 405, "method_not_allowed")


def test_invalid_content_length_is_400(client: TestClient) -> None:
    r = client.post("/search", content=b"{}", headers={"Content-Type": "application/json",
                                                       "Content-Length": "-5"})
    err = assert_error(r, 400, "bad_request")
    assert "Content-Length" in err["message"]


_scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=30)
            | st.floats(allow_nan=False, allow_infinity=False))
_json = st.recursive(
    _scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids,
                                                              max_size=4),
    max_leaves=12,
)
_fields = st.fixed_dictionaries({}, optional={
    "query": _json | st.text(max_size=40), "queries": _json, "k": _json, "mode": _json,
    "fusion": _json, "alpha": _json, "rrf_k": _json, "normalization": _json,
    "candidates": _json, "explain": _json,
})


@hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_json | _fields, path=st.sampled_from(["/search", "/search/batch", "/documents"]))
def test_fuzzed_input_never_500(body: Any, path: str) -> None:
    app = _FUZZ_APP
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post(path, json=body)
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400:
        assert "error" in r.json()


_FUZZ_APP = create_app(make_settings(microbatch_window_ms=0), FakeEngine())


# ------------------------------------------------------------------------- micro-batching


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_batcher_groups_concurrent_requests() -> None:
    calls: list[tuple[list[str], Any]] = []

    def run_batch(queries: list[str], key: Any) -> list[str]:
        calls.append((list(queries), key))
        return [f"{key}:{q}" for q in queries]

    async def main() -> list[str]:
        b: MicroBatcher[str] = MicroBatcher(run_batch, window_ms=30, max_size=32)
        return await asyncio.gather(*(b.submit(f"q{i}", "opts") for i in range(10)))

    out = _run(main())
    assert out == [f"opts:q{i}" for i in range(10)]  # each caller gets its own result
    assert len(calls) == 1 and calls[0][0] == [f"q{i}" for i in range(10)]


def test_batcher_separates_different_options_and_caps_size() -> None:
    calls: list[tuple[list[str], Any]] = []

    def run_batch(queries: list[str], key: Any) -> list[str]:
        calls.append((list(queries), key))
        return [q.upper() for q in queries]

    async def main() -> list[str]:
        b: MicroBatcher[str] = MicroBatcher(run_batch, window_ms=30, max_size=4)
        jobs = [b.submit(f"a{i}", "A") for i in range(10)] + [b.submit("b0", "B")]
        return await asyncio.gather(*jobs)

    out = _run(main())
    assert out[-1] == "B0" and out[0] == "A0"
    sizes = sorted(len(q) for q, k in calls if k == "A")
    assert sizes == [2, 4, 4]
    assert [q for q, k in calls if k == "B"] == [["b0"]]


def test_batcher_bounded_queue_rejects_overload() -> None:
    def run_batch(queries: list[str], key: Any) -> list[str]:
        time.sleep(0.05)
        return queries

    async def main() -> list[Any]:
        b: MicroBatcher[str] = MicroBatcher(run_batch, window_ms=20, max_queue=3)
        return await asyncio.gather(*(b.submit(str(i), 0) for i in range(5)),
                                    return_exceptions=True)

    out = _run(main())
    assert out[:3] == ["0", "1", "2"]
    assert all(isinstance(e, Overloaded) for e in out[3:])


def test_batcher_isolates_a_failing_query() -> None:
    def run_batch(queries: list[str], key: Any) -> list[str]:
        if "bad" in queries:
            raise ValueError("bad query")
        return queries

    async def main() -> list[Any]:
        b: MicroBatcher[str] = MicroBatcher(run_batch, window_ms=20)
        return await asyncio.gather(*(b.submit(q, 0) for q in ["ok1", "bad", "ok2"]),
                                    return_exceptions=True)

    ok1, bad, ok2 = _run(main())
    assert (ok1, ok2) == ("ok1", "ok2") and isinstance(bad, ValueError)


def test_batcher_runs_off_the_event_loop() -> None:
    loop_threads: list[int] = []

    def run_batch(queries: list[str], key: Any) -> list[int]:
        loop_threads.append(threading.get_ident())
        return [0] * len(queries)

    async def main() -> int:
        b: MicroBatcher[int] = MicroBatcher(run_batch, window_ms=0)
        await b.submit("q", 0)
        return threading.get_ident()

    assert _run(main()) not in loop_threads


def test_http_microbatching_groups_concurrent_searches() -> None:
    engine = FakeEngine(delay=0.02)
    app = create_app(make_settings(microbatch_window_ms=40), engine)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            queries = ["vitamin cancer", "protein folding", "sleep memory", "blood exercise"]
            jobs = [c.post("/search", json={"query": q, "k": 3}) for q in queries * 2]
            jobs.append(c.post("/search", json={"query": "sleep", "mode": "bm25"}))
            return await asyncio.gather(*jobs)

    responses = _run(main())
    assert all(r.status_code == 200 for r in responses)
    sizes = sorted(len(c["queries"]) for c in engine.calls)
    assert sizes == [1, 8], sizes  # 8 hybrid requests in one engine call, bm25 alone
    assert responses[0].json()["timing"]["batch_size"] == 8
    assert responses[0].json()["hits"][0]["id"] == "4983"
    assert responses[1].json()["hits"][0]["id"] == "5836"


def test_http_overload_is_503_with_retry_after() -> None:
    engine = FakeEngine(delay=0.05)
    app = create_app(make_settings(microbatch_window_ms=30, max_queue=2), engine)

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/search", json={"query": "sleep"})
                                          for _ in range(5)))

    codes = sorted(r.status_code for r in _run(main()))
    assert codes == [200, 200, 503, 503, 503]
    rejected = [r for r in _run(main()) if r.status_code == 503]
    assert rejected and rejected[0].headers["retry-after"] == "1"
    assert rejected[0].json()["error"]["code"] == "overloaded"


# ------------------------------------------------------------------------------- snippets

TEXT = (
    "Background matters little here. " * 12
    + "Molecular chaperones are binding nascent chains while proteins fold in the cell. "
    + "Trailing words follow. " * 12
)


def test_snippet_window_starts_near_the_first_match() -> None:
    snippet, spans = make_snippet(TEXT, ["chaperone"], width=120)
    assert snippet.startswith(ELLIPSIS) and snippet.endswith(ELLIPSIS)
    assert len(snippet) <= 122
    assert "chaperones" in snippet
    assert snippet.index("chaperones") < 60  # match in the first half of the window
    assert [snippet[s.start:s.end] for s in spans] == ["chaperones"]


def test_snippet_cuts_on_word_boundaries_and_collapses_space() -> None:
    text = "alpha   beta\n\ngamma " + "delta " * 100
    snippet, _ = make_snippet(text, ["gamma"], width=50)
    body = snippet.strip(ELLIPSIS)
    assert "  " not in snippet and "\n" not in snippet
    assert all(w in ("alpha", "beta", "gamma", "delta") for w in body.split())


def test_snippet_without_match_is_the_beginning() -> None:
    snippet, spans = make_snippet(TEXT, ["zzz", "tumor"], width=60)
    assert snippet.startswith("Background") and snippet.endswith(ELLIPSIS) and spans == []
    assert make_snippet("", ["x"]) == ("", [])
    assert make_snippet("short text", [])[0] == "short text"


def test_wordpiece_tokens() -> None:
    text = "The binding site; a bin of things; Binds. Cells signal via cell-cell contact."
    got = {(text[s.start:s.end], s.token) for s in highlight(text, ["##ing", "bind", "cell"])}
    # ##ing: inside a word, never at its start; "things" holds "ing" after its first letter too
    assert ("binding", "##ing") in got and ("things", "##ing") in got
    assert ("Binds", "bind") in got  # word-initial piece: prefix match, case-insensitive
    assert ("bin", "bind") not in got
    assert {("Cells", "cell"), ("cell", "cell")} <= got
    # short continuation pieces and specials match nothing (they would light up every word)
    assert highlight(text, ["##s", "##in", "[CLS]", "[SEP]", ",", "##"]) == []


def test_short_tokens_match_whole_words_only() -> None:
    text = "Vitamin D intake in adults; IL-6 and D3 levels"
    got = [(text[s.start:s.end], s.token) for s in highlight(text, ["d", "in", "6"])]
    assert got == [("D", "d"), ("in", "in"), ("6", "6")]


def test_highlight_ignores_case_and_accents_and_matches_stems() -> None:
    text = "Café patients with diabetes; DIABETIC neuropathy"
    got = [(text[s.start:s.end], s.token) for s in highlight(text, ["cafe", "diabet"])]
    assert got == [("Café", "cafe"), ("diabetes", "diabet"), ("DIABETIC", "diabet")]


def _reference_spans(text: str, tokens: list[str]) -> list[tuple[int, int, str]]:
    """The module's rules, spelled out plainly: every word normalized the long way (NFKD,
    combining marks dropped, casefold), every matcher tried on every word."""
    import re
    import unicodedata

    def norm(w: str) -> str:
        d = unicodedata.normalize("NFKD", w)
        return "".join(c for c in d if not unicodedata.combining(c)).casefold()

    rules, seen = [], set()
    for t in tokens:
        if not t or re.match(r"^\[[A-Za-z0-9_]+\]$", t):
            continue
        inner = t.startswith("##")
        piece = norm(t[2:] if inner else t)
        if not piece or not any(c.isalnum() for c in piece) or (inner and len(piece) < 3):
            continue
        if (piece, inner) not in seen:
            seen.add((piece, inner))
            rules.append((t, piece, inner))
    out = []
    for m in re.finditer(r"\w+", text):
        w = norm(m.group())
        for t, piece, inner in rules:
            prefix = w == piece or (len(piece) >= 3 and w.startswith(piece))
            if (piece in w[1:]) if inner else prefix:
                out.append((m.start(), m.end(), t))
                break
    return out


_WORDS = ["cell", "Cells", "binding", "café", "CAFE", "straße", "STRASSE", "ﬁbre", "fibre",
          "naïve", "İstanbul", "istanbul", "diabetes", "DIABETIC", "d", "D3", "ing", "x"]


@given(words=st.lists(st.sampled_from(_WORDS), max_size=80),
       tokens=st.lists(st.sampled_from(_WORDS + ["##ing", "##abet", "##s", "[CLS]", "stras",
                                                 "fib", "naive", "cafe"]), max_size=6),
       width=st.integers(10, 200))  # fmt: skip
def test_highlight_and_snippet_follow_the_plain_rules(words, tokens, width) -> None:
    text = " ".join(words)
    assert [(s.start, s.end, s.token) for s in highlight(text, tokens)] == _reference_spans(
        text, tokens
    )
    snippet, spans = make_snippet(text, tokens, width=width)
    assert [(s.start, s.end, s.token) for s in spans] == _reference_spans(snippet, tokens)


def test_highlight_offsets_are_code_points() -> None:
    text = "\U0001f600 emoji before the cancer word"
    (span,) = highlight(text, ["cancer"])
    assert text[span.start:span.end] == "cancer"


# ---------------------------------------------------------------------- settings & serve


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARSERETR_PORT", "9001")
    monkeypatch.setenv("SPARSERETR_API_KEY", "k3y")
    monkeypatch.setenv("SPARSERETR_INDEX_PATH", "/data/idx")
    monkeypatch.setenv("SPARSERETR_DEFAULT_MODE", "bm25")
    monkeypatch.setenv("SPARSERETR_MICROBATCH_WINDOW_MS", "5")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.port == 9001 and s.api_key is not None and s.api_key.get_secret_value() == "k3y"
    assert str(s.index_path) == "/data/idx" and s.default_mode == "bm25"
    assert s.microbatch_window_ms == 5 and s.writes_need_key
    assert "k3y" not in repr(s)  # the key is a secret


def test_settings_defaults_and_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SPARSERETR_API_KEY", "SPARSERETR_PORT", "SPARSERETR_INDEX_PATH"):
        monkeypatch.delenv(var, raising=False)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert str(s.index_path) == "indexes/scifact" and s.port == 8000 and s.api_key is None
    assert (s.max_k, s.max_query_chars, s.max_batch, s.max_body_bytes) == (1000, 2048, 64, 1 << 20)
    assert (s.microbatch_window_ms, s.microbatch_max_size) == (2.0, 32)
    assert s.default_mode == "hybrid" and not s.writes_need_key
    with pytest.raises(ValueError):
        Settings(_env_file=None, max_k=5000)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Settings(_env_file=None, default_mode="semantic")  # type: ignore[call-arg]


def test_ensure_index(tmp_path: Any) -> None:
    existing = tmp_path / "idx"
    existing.mkdir()
    ensure_index(make_settings(index_path=existing, data_path=tmp_path / "none"))  # no-op
    ensure_index(make_settings(index_path=tmp_path / "missing", build_if_missing=False))
    with pytest.raises(FileNotFoundError, match="no data"):
        ensure_index(make_settings(index_path=tmp_path / "missing", data_path=tmp_path / "nd"))


def test_serve_runs_uvicorn_with_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    import uvicorn
    from sparseretr.service.server import add_serve_arguments

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    s = settings_from_args(p.parse_args(["--index", "/x/idx", "--port", "8123", "--no-build"]))
    assert str(s.index_path) == "/x/idx" and s.port == 8123 and not s.build_if_missing
    serve(s)
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert seen["app"].state.settings is s


def test_default_mode_falls_back_when_the_index_lacks_it() -> None:
    eng = FakeEngine(modes=("sparse", "bm25"))
    eng.default_mode = "sparse"  # type: ignore[attr-defined]
    with TestClient(create_app(make_settings(default_mode="hybrid"), eng)) as c:
        r = c.post("/search", json={"query": "sleep"})
        assert r.status_code == 200 and r.json()["mode"] == "sparse"
        assert_error(c.post("/search", json={"query": "sleep", "mode": "hybrid"}), 400,
                     "mode_unavailable")


def test_every_setting_is_a_serve_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings is the one source: each field has a flag that overrides the environment."""
    import argparse

    from sparseretr.service.server import add_serve_arguments
    from sparseretr.service.settings import Settings

    p = argparse.ArgumentParser()
    add_serve_arguments(p)
    flags = {s for a in p._actions for s in a.option_strings}
    missing = [n for n in Settings.model_fields if "--" + n.replace("_", "-") not in flags]
    assert not missing
    monkeypatch.setenv("SPARSERETR_MAX_K", "100")
    monkeypatch.setenv("SPARSERETR_DEFAULT_ALPHA", "0.9")
    s = settings_from_args(p.parse_args(["--max-k", "50", "--no-dense", "--microbatch-window-ms",
                                         "5", "--default-mode", "bm25"]))  # fmt: skip
    assert (s.max_k, s.dense, s.microbatch_window_ms, s.default_mode) == (50, False, 5.0, "bm25")
    assert s.default_alpha == 0.9  # not given on the command line: the environment's
    with pytest.raises(ValueError, match="max_k"):
        settings_from_args(p.parse_args(["--max-k", "5000"]))  # above the API's ceiling
