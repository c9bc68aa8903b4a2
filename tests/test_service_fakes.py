"""A fake ``sparseretr.engine.Engine`` for the service tests (no model, no index, instant).

It honours the engine contract the service codes against: ``modes``, ``search(queries, *, k,
mode, fusion, alpha, rrf_k, normalization, candidates, explain)`` returning one result per query
(``.hits`` of fused hits with per-system ``components``, ``.timing``, ``.explain``), ``ValueError``
for an unavailable mode, ``docstore.get`` and ``stats()``. Scores are word-overlap counts, with
WordPiece-looking explain tokens (``bind`` + ``##ing``) and an expansion term absent from the text.
No tests here: pytest collects this module and finds none.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

DOCS: list[dict[str, Any]] = [
    {"id": "4983", "title": "Vitamin D deficiency and the risk of colorectal cancer",
     "text": "Low circulating vitamin D has been linked to several chronic diseases. In this "
             "prospective cohort of 12,000 adults followed for a decade, participants in the "
             "lowest quintile of serum 25-hydroxyvitamin D had a higher incidence of colorectal "
             "cancer than those in the highest quintile, after adjustment for age, body mass "
             "index and physical activity. Supplementation trials are needed to establish "
             "whether the association is causal.",
     "metadata": {"year": 2011}},
    {"id": "5836", "title": "Chaperone binding and protein folding in the endoplasmic reticulum",
     "text": "Molecular chaperones bind nascent polypeptides and prevent aggregation while "
             "proteins fold. We show that binding of the chaperone to hydrophobic patches slows "
             "folding but increases the yield of native protein in cells under heat stress.",
     "metadata": {}},
    {"id": "7912", "title": "Sleep deprivation impairs memory consolidation",
     "text": "Healthy volunteers deprived of sleep for one night performed worse on a "
             "declarative memory task than rested controls. Hippocampal activity during "
             "encoding was reduced, suggesting that sleep before learning prepares the brain "
             "for memory formation.", "metadata": {}},
    {"id": "8011", "title": "Cancer screening programmes and mortality",
     "text": "Organised screening for breast and cervical cancer reduced cancer mortality in "
             "the screened population by a fifth over fifteen years, with the largest "
             "benefit among women who attended every round.", "metadata": {}},
    {"id": "9120", "title": "Aerobic exercise lowers blood pressure",
     "text": "A meta-analysis of 93 randomised trials found that regular aerobic exercise "
             "lowered systolic blood pressure by about 4 mmHg in adults with hypertension, an "
             "effect comparable to a single antihypertensive drug.", "metadata": {}},
    {"id": "10234", "title": "T cell signalling in autoimmune disease",
     "text": "Aberrant T cell receptor signalling lowers the activation threshold of "
             "self-reactive cells. Blocking the kinase restored tolerance in a mouse model of "
             "autoimmune diabetes.", "metadata": {}},
]
_WORD = re.compile(r"\w+")
_STOP = {"the", "and", "of", "in", "a", "an", "to", "for", "do", "how", "is", "with", "on"}
_EXPANSIONS = {"cancer": "tumor", "chaperone": "hsp70", "folding": "misfolded",
               "sleep": "insomnia", "blood": "vascular"}


@dataclass
class FusedHit:
    id: str
    score: float
    components: dict[str, dict] = field(default_factory=dict)


@dataclass
class SearchResult:
    hits: list[FusedHit]
    timing: dict[str, float]
    explain: dict[str, list[dict]] | None = None


class FakeDocStore:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self._docs = {d["id"]: d for d in docs}

    def get(self, doc_id: str) -> dict | None:
        d = self._docs.get(doc_id)
        return dict(d) if d is not None else None

    def __len__(self) -> int:
        return len(self._docs)


def _pieces(word: str) -> list[str]:
    """WordPiece-looking tokens: long -ing words split into stem + ``##ing``."""
    if word.endswith("ing") and len(word) > 6:
        return [word[:-3], "##ing"]
    return [word]


class FakeEngine:
    def __init__(
        self,
        docs: list[dict[str, Any]] | None = None,
        modes: tuple[str, ...] = ("sparse", "dense", "hybrid", "bm25"),
        delay: float = 0.0,
        writable: bool = True,
    ) -> None:
        self.docstore = FakeDocStore(docs or DOCS)
        self._docs = list(docs or DOCS)
        self.writable = writable
        self.seq = 0
        self.pending: dict[str, dict | None] = {}
        self.generation = 1
        self.modes = list(modes)
        self.delay = delay
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def stats(self) -> dict[str, Any]:
        return {"n_docs": len(self._docs), "n_postings": 1234, "vocab": 30522,
                "modes": self.modes, "index_path": "/fake/index"}

    def search(self, queries: list[str], *, k: int = 10, mode: str = "hybrid",
               fusion: str = "rrf", alpha: float = 0.5, rrf_k: int = 60,
               normalization: str = "minmax", candidates: int = 100,
               bm25_weight: float | None = None,
               explain: bool = False, prune_alpha: float = 1.0,
               term_fraction: float = 1.0) -> list[SearchResult]:
        if mode not in self.modes:
            raise ValueError(f"mode {mode!r} is not available (index built without it)")
        with self._lock:
            self.calls.append({"queries": list(queries), "k": k, "mode": mode,
                               "fusion": fusion, "alpha": alpha, "explain": explain,
                               "bm25_weight": bm25_weight,
                               "prune_alpha": prune_alpha, "term_fraction": term_fraction})
        if self.delay:
            time.sleep(self.delay)
        return [self._one(q, k, mode, explain) for q in queries]

    def _one(self, query: str, k: int, mode: str, explain: bool) -> SearchResult:
        words = [w.lower() for w in _WORD.findall(query) if w.lower() not in _STOP]
        scored = []
        for doc in self._docs:
            text_words = {w.lower() for w in _WORD.findall(doc["title"] + " " + doc["text"])}
            rows = []
            for w in words:
                for tok in _pieces(w):
                    full = w if tok.startswith("##") else tok
                    hit = any(t == full or (len(full) >= 4 and t.startswith(full))
                              for t in text_words)
                    if hit and all(r["token"] != tok for r in rows):
                        qw = round(1.0 + len(full) / 10, 3)
                        rows.append({"token": tok, "query_weight": qw, "doc_weight": 0.8,
                                     "contribution": round(qw * 0.8, 4)})
                if w in _EXPANSIONS and rows:
                    rows.append({"token": _EXPANSIONS[w], "query_weight": 0.4,
                                 "doc_weight": 0.5, "contribution": 0.2})
            if rows:
                scored.append((sum(r["contribution"] for r in rows), doc["id"], rows))
        scored.sort(key=lambda t: (-t[0], t[1]))
        hits = []
        for rank, (score, doc_id, _) in enumerate(scored[:k], 1):
            comps = {"sparse": {"score": score, "rank": rank}}
            if mode in ("dense", "hybrid"):
                comps["dense"] = {"score": round(0.9 - 0.05 * rank, 3), "rank": rank}
            if mode == "hybrid":
                score = 1 / (60 + rank) * 2
            hits.append(FusedHit(doc_id, float(score), comps))
        exp = {doc_id: rows for _, doc_id, rows in scored[:k]} if explain else None
        return SearchResult(hits, {"encode_ms": 1.5, "search_ms": 0.4, "fuse_ms": 0.1}, exp)

    # Writes, shaped like Engine's: durable at once, visible after refresh().
    def upsert(self, docs: list[dict[str, Any]]) -> int:
        with self._lock:
            self.seq += 1
            self.pending.update({d["id"]: d for d in docs})
            return self.seq

    def delete(self, ids: list[str]) -> tuple[int, list[bool]]:
        with self._lock:
            live = {d["id"] for d in self._docs}
            found = [(i in self.pending and self.pending[i] is not None)
                     or (i not in self.pending and i in live) for i in ids]
            self.seq += 1
            self.pending.update(dict.fromkeys(ids))
            return self.seq, found

    def refresh(self) -> Any:
        with self._lock:
            if self.pending:
                keep = [d for d in self._docs if d["id"] not in self.pending]
                self._docs = keep + [d for d in self.pending.values() if d is not None]
                self.docstore = FakeDocStore(self._docs)
                self.pending.clear()
                self.generation += 1
            return SimpleNamespace(generation=self.generation, n_docs=len(self._docs),
                                   segments=[None])
