"""Pseudo-queries drawn from the documents themselves: the only queries a zero-label corpus has.

No text-generation model ships its weights in a PyPI wheel, so queries are cut from the text:
a document's title (what a person would type to find it) and its sentences (a claim or a
finding stated in the corpus's own words, as SciFact's claims and many question sets are).
The teacher ensemble, not the source document, decides what is relevant to each pseudo-query,
so a sentence need not be a perfect query: it only has to look like the queries users send.
Users also send keyword queries of a few words (NFCorpus's average 3.3), which neither a title
nor a sentence looks like: a span is the 2-5 consecutive words of a title (or of a sentence
where there is no title) with the highest summed IDF, the words a searcher would keep.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparseretr.index.errors import UserInputError

KINDS = ("title", "sentence", "span")
MIX = ("title", "sentence")  # what `mix` stands for
GENERATORS = (*KINDS, "mix")  # or kinds joined by "+", e.g. "title+sentence"

# A sentence ends at . ! or ? followed by white space and an upper-case letter or a digit;
# "e.g. the" and "Fig. 3" stay inside one sentence more often than not.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_WORD = re.compile(r"\w+")
SPAN_WORDS = (2, 5)  # a span's length is drawn uniformly from this range (inclusive)
EDGE_IDF = math.log(8)  # a span drops words at its ends found in more than 1/8 of documents


@dataclass(frozen=True)
class PseudoQuery:
    text: str
    doc: int  # row of the source document in the corpus
    kind: str  # "title", "sentence" or "span"


def sentences(text: str, min_words: int = 6, max_words: int = 40) -> list[str]:
    """Sentences of `text` with a query-like length (headings and run-on lists dropped)."""
    out = []
    for s in _SENTENCE_END.split(text.strip()):
        s = s.strip()
        if min_words <= len(_WORD.findall(s)) <= max_words:
            out.append(s)
    return out


def _title(title: str, min_words: int) -> str | None:
    title = title.strip()
    return title if len(_WORD.findall(title)) >= min_words else None


def parse_kinds(kind: str) -> tuple[str, ...]:
    """The kinds a generator name stands for: "mix", one kind, or kinds joined by "+"."""
    kinds = MIX if kind == "mix" else tuple(kind.split("+"))
    if not kinds or any(k not in KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise UserInputError(
            f"pseudo-query generator must be one of {GENERATORS} or kinds joined by '+' "
            f"(e.g. title+sentence), got {kind!r}"
        )
    return kinds


def word_idf(titles: Sequence[str], texts: Sequence[str]) -> dict[str, float]:
    """log(N / df) of every lower-cased word over the documents (title and text together)."""
    df: Counter[str] = Counter()
    for title, text in zip(titles, texts, strict=True):
        df.update({w.lower() for w in _WORD.findall(f"{title} {text}")})
    n = max(1, len(texts))
    return {w: math.log(n / c) for w, c in df.items()}


def edge_idf(idf: dict[str, float]) -> float:
    """Below this IDF a word is too common to start or end a span: in more than 1/8 of the
    documents, and never a word of one document only (in a corpus of a few documents)."""
    return min(EDGE_IDF, max(idf.values(), default=0.0) - 1e-9)


def span(text: str, idf: dict[str, float], n_words: int, common: float = EDGE_IDF) -> str | None:
    """The `n_words` consecutive words of `text` with the highest summed IDF (the first such
    window on a tie; all of `text` when it is shorter), punctuation at its ends stripped and
    words with IDF below `common` at its ends dropped ("anal fissure in" -> "anal fissure")."""
    words = [w.strip(".,;:!?()[]{}\"'") for w in text.split()]
    words = [w for w in words if w]
    if len(words) < SPAN_WORDS[0]:
        return None
    n = min(n_words, len(words))
    weight = [sum(idf.get(t.lower(), 0.0) for t in _WORD.findall(w)) for w in words]
    sums = np.convolve(weight, np.ones(n), mode="valid")
    start = int(np.argmax(sums))
    end = start + n
    while start < end and weight[start] < common:
        start += 1
    while end > start and weight[end - 1] < common:
        end -= 1
    return " ".join(words[start:end]) or None


def generate(
    titles: Sequence[str],
    texts: Sequence[str],
    *,
    kind: str = "mix",
    n_queries: int = 4000,
    seed: int = 0,
    min_words: int = 3,
) -> list[PseudoQuery]:
    """About `n_queries` pseudo-queries, at most one per document, from distinct documents.

    Documents are sampled uniformly (a large corpus gives a sample, a small one every document
    once), so the queries cover the corpus instead of its longest documents. With several
    kinds (`mix` = title and sentence) the kinds a document offers take turns, so that
    every query shape is learned; a document offers those it has (a title, a sentence, a span).
    """
    kinds = parse_kinds(kind)
    if len(titles) != len(texts):
        raise UserInputError("titles and texts must have one entry per document")
    if n_queries < 1:
        raise UserInputError(f"n_queries must be >= 1, got {n_queries}")
    rng = np.random.default_rng(seed)
    idf = word_idf(titles, texts) if "span" in kinds else {}
    common = edge_idf(idf)
    out: list[PseudoQuery] = []
    for doc in rng.permutation(len(texts)):
        if len(out) >= n_queries:
            break
        title = _title(titles[doc], min_words)
        sents = sentences(texts[doc]) if {"sentence", "span"} & set(kinds) else []
        sent = sents[int(rng.integers(len(sents)))] if sents else None
        options: list[tuple[str, str]] = []
        if title and "title" in kinds:
            options.append(("title", title))
        if sent and "sentence" in kinds:
            options.append(("sentence", sent))
        if "span" in kinds and (title or sent):
            n_words = int(rng.integers(SPAN_WORDS[0], SPAN_WORDS[1] + 1))
            text = span(title or sent or "", idf, n_words, common)
            if text:
                options.append(("span", text))
        if not options:
            continue
        pick = options[len(out) % len(options)]
        out.append(PseudoQuery(text=pick[1], doc=int(doc), kind=pick[0]))
    if not out:
        raise UserInputError(
            f"no pseudo-queries: no document has a title or a sentence of {min_words}+ words"
        )
    return out
