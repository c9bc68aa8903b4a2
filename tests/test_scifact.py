"""SciFact end to end: the engine reproduces brute-force SPLADE figures measured outside it.

Reference (SciFact test, splade-tiny, doc max length 512, brute force in float):
siamese nDCG@10 0.647, R@100 0.898; inference-free with corpus IDF 0.663; BM25 (ours) 0.677.
The corpus is encoded once (minutes on 2 CPU cores) and shared by every check here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sparseretr.eval.searcher import ModeSearcher, exact_agreement

from sparseretr.beir import load_beir
from sparseretr.corpus import doc_text
from sparseretr.encoders import BM25Encoder, InferenceFreeEncoder
from sparseretr.engine import Engine
from sparseretr.indexing import write_index
from sparseretr.metrics import evaluate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(scifact: Path):
    return load_beir(scifact, split="test")


@pytest.fixture(scope="module")
def encoded(data, splade):
    ids = list(data.corpus)
    texts = [doc_text(data.corpus[i]) for i in ids]
    return ids, texts, splade.encode_documents(texts, batch_size=32)


def index(path: Path, data, encoded, encoder, vectors=None, **options) -> Engine:
    """The product path: the batch job's final step (a segmented index with its doc store),
    opened by the Engine that the service, the CLI and eval use."""
    ids, texts, vecs = encoded
    docs = ({"id": i, **data.corpus[i], "metadata": {}} for i in ids)
    out = write_index(path, ids, vecs if vectors is None else vectors, encoder, docs=docs,
                      texts=texts, **options)  # fmt: skip
    return Engine.open(out, dense=False, bm25=bool(options.get("with_bm25")))


def run(engine: Engine, data, mode: str = "sparse", k: int = 100) -> dict[str, dict[str, float]]:
    qids = list(data.queries)
    hits = ModeSearcher(engine, mode).search([data.queries[q] for q in qids], k)
    return {q: dict(h) for q, h in zip(qids, hits, strict=True)}


def brute_force_float(queries, docs, ids, qids, k=100) -> dict[str, dict[str, float]]:
    scores = (queries.to_scipy() @ docs.to_scipy().T).toarray()
    out = {}
    for qi, q in enumerate(qids):
        top = np.argsort(-scores[qi], kind="stable")[:k]
        out[q] = {ids[j]: float(scores[qi, j]) for j in top if scores[qi, j] > 0}
    return out


def test_siamese_splade_and_bm25_figures_and_exactness(tmp_path, data, encoded, splade):
    engine = index(tmp_path / "splade", data, encoded, splade, with_bm25=True)
    try:
        m = evaluate(data.qrels, run(engine, data))
        assert m["NDCG@10"] == pytest.approx(0.647, abs=0.005)
        assert m["Recall@100"] == pytest.approx(0.898, abs=0.01)

        ids, _, vecs = encoded
        qids = list(data.queries)
        q = engine.encode("sparse", [data.queries[x] for x in qids])
        # uint8 quantization costs < 0.002 nDCG@10 against float weights.
        float_m = evaluate(data.qrels, brute_force_float(q, vecs, ids, qids))
        assert abs(float_m["NDCG@10"] - m["NDCG@10"]) < 0.002
        # The Numba kernels return brute force's top-10 for every one of the 300 queries.
        agreement = exact_agreement(engine, q)
        assert agreement["same_ids"] == 1.0 and agreement["same_scores"] == 1.0

        # BM25 side of the same index (mode bm25): pyserini BM25 flat is 0.679; our analyzer
        # approximates Lucene's English one.
        bm25 = evaluate(data.qrels, run(engine, data, "bm25"))
        assert bm25["NDCG@10"] == pytest.approx(0.677, abs=0.005)
    finally:
        engine.close()


def test_inference_free_figure(tmp_path, data, encoded):
    enc = InferenceFreeEncoder()
    enc.fit(encoded[1])  # corpus IDF, stored with the index as idf.json
    engine = index(tmp_path / "if", data, encoded, enc)
    try:
        m = evaluate(data.qrels, run(engine, data))
        assert m["NDCG@10"] == pytest.approx(0.663, abs=0.005)
    finally:
        engine.close()


def test_bm25_encoder_index(tmp_path, data, encoded):
    """`index build --encoder bm25`: BM25 impacts as the index's own sparse side."""
    enc = BM25Encoder()
    enc.fit(encoded[1])
    engine = index(tmp_path / "bm25", data, encoded, enc, vectors=enc.encode_documents(encoded[1]))
    try:
        m = evaluate(data.qrels, run(engine, data))
        assert m["NDCG@10"] == pytest.approx(0.677, abs=0.005)
    finally:
        engine.close()


def test_lucene_over_our_exported_vectors_agrees(tmp_path, data, encoded, splade):
    """Our export, indexed by pyserini's Lucene impact indexer, ranks like our engine: same
    top-10 on every test query (ties in score aside) when both get the same integer query."""
    import subprocess
    import sys

    from sparseretr.eval.bm25_pyserini import PyseriniUnavailableError, require_pyserini
    from sparseretr.index.vectors import SparseVectors

    from sparseretr.vector_files import export_index

    try:
        require_pyserini()
    except PyseriniUnavailableError as e:
        pytest.skip(str(e))
    engine = index(tmp_path / "splade", data, encoded, splade)
    try:
        export_index(engine.snapshot.root, tmp_path / "anserini", "anserini")
        lucene = tmp_path / "lucene"
        subprocess.run(
            [sys.executable, "-m", "pyserini.index.lucene", "-collection", "JsonVectorCollection",
             "-input", str(tmp_path / "anserini"), "-index", str(lucene), "-generator",
             "DefaultLuceneDocumentGenerator", "-impact", "-pretokenized", "-threads", "2"],
            check=True, capture_output=True,
        )  # fmt: skip
        from pyserini.pyclass import JHashMap, JInt, autoclass

        searcher = autoclass("io.anserini.search.SimpleImpactSearcher")(str(lucene))
        q = engine.encode("sparse", list(data.queries.values()))
        rows = []  # integer query weights, the same for both engines
        for i in range(len(q)):
            terms, w = q.row(i)
            rows.append((terms, np.maximum(1, np.rint(w * 100)).astype(np.float32)))
        iq = SparseVectors.from_rows(rows, q.vocab_size)
        ours = engine.snapshot.search("sparse", iq, 10)
        scale = engine.snapshot.first.sparse.scale  # our score = Lucene's integer score x scale
        same = 0
        for i, (terms, w) in enumerate(rows):
            jq = JHashMap()
            for t, x in zip(splade.tokens(terms), w.astype(int).tolist(), strict=True):
                jq.put(t, JInt(x))
            theirs = [(h.docid, round(float(h.score))) for h in searcher.search(jq, 10)]
            mine = [(h.id, round(h.score / scale)) for h in ours[i]]
            # The same scores in order, and the same documents above the 10th score (documents
            # tied at the cut-off may differ: either engine may keep any of them).
            cut = theirs[-1][1]
            same += [x for _, x in mine] == [x for _, x in theirs] and (
                {d for d, x in mine if x > cut} == {d for d, x in theirs if x > cut}
            )
        assert same == len(rows), f"{same}/{len(rows)} queries agree"
        # Imported back (`index build --vectors`): the integer impacts re-quantize to
        # themselves, so the imported index ranks as the one it came from.
        from sparseretr.vector_files import build_from_vectors

        build_from_vectors(tmp_path / "anserini", tmp_path / "imported", splade)
        imported = Engine.open(tmp_path / "imported", dense=False, bm25=False)
        try:
            before = evaluate(data.qrels, run(engine, data))
            after = evaluate(data.qrels, run(imported, data))
        finally:
            imported.close()
        assert after["NDCG@10"] == pytest.approx(before["NDCG@10"], abs=1e-9)
        assert after["Recall@100"] == pytest.approx(before["Recall@100"], abs=1e-9)
    finally:
        engine.close()
