"""Pseudo-queries drawn from the documents themselves: the only queries a zero-label corpus has.

No text-generation model ships its weights in a PyPI wheel, so queries are cut from the text:
a document's title (what a person would type to find it) and its sentences (a claim or a
finding stated in the corpus's own words, as SciFact's claims and many question sets are).
The teacher ensemble, not the source document, decides what is relevant to each pseudo-query,
so a sentence need not be a perfect query: it only has to look like the queries users send.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparseretr.index.errors import UserInputError

GENERATORS = ("title", "sentence", "mix")

# A sentence ends at . ! or ? followed by white space and an upper-case letter or a digit;
# "e.g. the" and "Fig. 3" stay inside one sentence more often than not.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class PseudoQuery:
    text: str
    doc: int  # row of the source document in the corpus
    kind: str  # "title" or "sentence"


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
    once), so the queries cover the corpus instead of its longest documents. `mix` takes the
    title where a document has one and a sentence otherwise, alternating between the two
    where both exist, so that both query shapes are learned; it falls back to whichever exists.
    """
    if kind not in GENERATORS:
        raise UserInputError(f"pseudo-query generator must be one of {GENERATORS}, got {kind!r}")
    if len(titles) != len(texts):
        raise UserInputError("titles and texts must have one entry per document")
    if n_queries < 1:
        raise UserInputError(f"n_queries must be >= 1, got {n_queries}")
    rng = np.random.default_rng(seed)
    out: list[PseudoQuery] = []
    for doc in rng.permutation(len(texts)):
        if len(out) >= n_queries:
            break
        title = _title(titles[doc], min_words)
        sents = sentences(texts[doc]) if kind != "title" else []
        options: list[tuple[str, str]] = []
        if title and kind in ("title", "mix"):
            options.append(("title", title))
        if sents:
            options.append(("sentence", sents[int(rng.integers(len(sents)))]))
        if not options:
            continue
        pick = options[len(out) % len(options)] if kind == "mix" else options[0]
        out.append(PseudoQuery(text=pick[1], doc=int(doc), kind=pick[0]))
    if not out:
        raise UserInputError(
            f"no pseudo-queries: no document has a title or a sentence of {min_words}+ words"
        )
    return out
