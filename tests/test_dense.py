"""DenseIndex storage (round trip, exactness, HNSW recall, damage) and the DenseEncoder."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from sparseretr.index import SparseIndexError
from sparseretr.index.dense import CONFIG_FILE, FAISS_FILE, DenseIndex, DenseIndexError

from sparseretr.models import ModelNotFoundError

ENC_CFG = {"kind": "dense", "model": "test", "max_length": 8}


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write(folder: Path, emb: np.ndarray, **options) -> DenseIndex:
    DenseIndex.writer(emb, ENC_CFG, **options)(folder)
    return DenseIndex.open(folder, n_docs=len(emb))


@pytest.fixture
def flat(tmp_path: Path) -> tuple[Path, np.ndarray]:
    emb = unit_rows(np.random.default_rng(0), 300, 16)
    DenseIndex.writer(emb, ENC_CFG)(tmp_path / "dense")
    return tmp_path / "dense", emb


def test_flat_round_trip_is_exact(flat: tuple[Path, np.ndarray]) -> None:
    folder, emb = flat
    index = DenseIndex.open(folder, n_docs=300)
    assert (index.kind, index.n, index.dim, index.encoder_config) == ("flat", 300, 16, ENC_CFG)
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["format_version"] == 1 and config["n"] == 300 and config["dim"] == 16
    q = unit_rows(np.random.default_rng(1), 5, 16)
    ids, scores = index.search(q, 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (5, 10)
    exact = q @ emb.T
    np.testing.assert_array_equal(ids, np.argsort(-exact, axis=1)[:, :10])
    np.testing.assert_allclose(scores, np.take_along_axis(exact, ids, axis=1), atol=1e-5)
    rows = [3, 0, 299, 3]
    np.testing.assert_allclose(index.scores_for(q[0], rows), emb[rows] @ q[0], atol=1e-6)


def test_padding_and_argument_checks(flat: tuple[Path, np.ndarray]) -> None:
    index = DenseIndex.open(flat[0])
    ids, scores = index.search(flat[1][:1], 305)  # more than n docs
    assert (ids[0, 300:] == -1).all() and np.isneginf(scores[0, 300:]).all()
    assert ids[0, 0] == 0  # a vector is its own nearest neighbour
    with pytest.raises(ValueError, match="queries must be"):
        index.search(np.zeros((1, 7), np.float32), 3)
    with pytest.raises(ValueError, match="k must be"):
        index.search(flat[1][:1], 0)
    with pytest.raises(IndexError):
        index.scores_for(flat[1][0], [300])
    assert index.search(np.zeros((0, 16), np.float32), 3)[0].shape == (0, 3)


def test_empty_index(tmp_path: Path) -> None:
    for kind in ("flat", "hnsw"):
        index = write(tmp_path / kind, np.zeros((0, 4), np.float32), kind=kind)
        assert (index.search(np.ones((1, 4), np.float32), 2)[0] == -1).all()


def test_hnsw_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    emb, q = unit_rows(rng, 2000, 32), unit_rows(rng, 50, 32)
    index = write(tmp_path / "hnsw", emb, kind="hnsw", hnsw_m=16, ef_search=64)
    assert index.kind == "hnsw"
    ids, scores = index.search(q, 10)
    truth = np.argsort(-(q @ emb.T), axis=1)[:, :10]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])
    assert recall >= 0.9
    # scores_for stays exact under HNSW: it reads the stored vectors.
    np.testing.assert_allclose(index.scores_for(q[0], ids[0]), scores[0], atol=1e-5)


def test_writer_validates_before_writing(tmp_path: Path) -> None:
    emb = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="2-D"):
        DenseIndex.writer(np.ones(4, np.float32), ENC_CFG)
    with pytest.raises(ValueError, match="NaN"):
        DenseIndex.writer(np.full((2, 4), np.nan, np.float32), ENC_CFG)
    with pytest.raises(ValueError, match="kind"):
        DenseIndex.writer(emb, ENC_CFG, kind="ivf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hnsw_m"):
        DenseIndex.writer(emb, ENC_CFG, kind="hnsw", hnsw_m=1)
    with pytest.raises(TypeError):
        DenseIndex.writer(emb, {"kind": "dense", "x": object()})
    assert not any(tmp_path.iterdir())


def test_open_errors(flat: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    folder, _ = flat
    with pytest.raises(DenseIndexError, match="missing"):
        DenseIndex.open(tmp_path / "nope")
    with pytest.raises(DenseIndexError, match="300 vectors but the sparse index has 299"):
        DenseIndex.open(folder, n_docs=299)
    assert issubclass(DenseIndexError, SparseIndexError)

    good_config = (folder / CONFIG_FILE).read_text()
    (folder / CONFIG_FILE).write_text("{not json")
    with pytest.raises(DenseIndexError, match="not valid JSON"):
        DenseIndex.open(folder)
    bad = json.loads(good_config)
    bad["format_version"] = 99
    (folder / CONFIG_FILE).write_text(json.dumps(bad))
    with pytest.raises(DenseIndexError, match="format_version"):
        DenseIndex.open(folder)
    del bad["dim"]
    bad["format_version"] = 1
    (folder / CONFIG_FILE).write_text(json.dumps(bad))
    with pytest.raises(DenseIndexError, match="required fields"):
        DenseIndex.open(folder)
    (folder / CONFIG_FILE).write_text(good_config)

    data = (folder / FAISS_FILE).read_bytes()
    (folder / FAISS_FILE).write_bytes(data[:-100])
    with pytest.raises(DenseIndexError, match="truncated"):
        DenseIndex.open(folder)
    (folder / FAISS_FILE).write_bytes(b"\x00" * len(data))
    with pytest.raises(DenseIndexError, match="not a readable FAISS index"):
        DenseIndex.open(folder)
    (folder / FAISS_FILE).unlink()
    with pytest.raises(DenseIndexError, match=f"{FAISS_FILE} is missing"):
        DenseIndex.open(folder)
    (folder / CONFIG_FILE).unlink()
    with pytest.raises(DenseIndexError, match=f"{CONFIG_FILE} is missing"):
        DenseIndex.open(folder)


def test_kind_mismatch_is_caught(tmp_path: Path) -> None:
    emb = unit_rows(np.random.default_rng(3), 20, 8)
    write(tmp_path / "f", emb)
    write(tmp_path / "h", emb, kind="hnsw")
    (tmp_path / "h" / FAISS_FILE).replace(tmp_path / "f" / FAISS_FILE)
    config = json.loads((tmp_path / "f" / CONFIG_FILE).read_text())
    config["files"][FAISS_FILE]["size"] = (tmp_path / "f" / FAISS_FILE).stat().st_size
    (tmp_path / "f" / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(DenseIndexError, match="expected an inner-product IndexFlatIP"):
        DenseIndex.open(tmp_path / "f")


# ------------------------------------------------------------------------------ encoder
@pytest.fixture(scope="module")
def encoder():
    """One model load for the module, with the network cut: loading must be offline."""
    from sparseretr.dense import DenseEncoder

    def no_network(*args, **kwargs):
        raise AssertionError(f"DenseEncoder tried to open a connection: {args}")

    with mock.patch.object(socket.socket, "connect", no_network):
        return DenseEncoder()


def test_encoder_normalized_and_semantic(encoder) -> None:
    vecs = encoder.encode(
        ["A cat sits on the mat.", "A kitten is resting on a rug.", "Stock markets fell sharply."]
    )
    assert vecs.dtype == np.float32 and vecs.shape == (3, encoder.dim) and encoder.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    assert sims[0, 1] > sims[0, 2] + 0.2 and sims[0, 1] > sims[1, 2] + 0.2
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        encoder.encode("one string")


def test_encoder_config(encoder) -> None:
    assert encoder.config() == {"kind": "dense", "model": "all-MiniLM-L6-v2", "max_length": 256}
    with pytest.raises(ValueError, match="not a dense encoder"):
        type(encoder).from_config({"kind": "bm25"})


def test_missing_model_is_a_clear_error(encoder, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        type(encoder)(str(tmp_path / "no-such-model"))
