"""Snippets: a window of a document's text around its first matched token, with highlight spans.

Tokens come from the engine's explain output (WordPiece for SPLADE, stems for BM25) or, without
explain, from the query's words. They are matched against the text's words, case- and
accent-insensitively:

* a word-initial token (``cell``, a BM25 stem ``diabet``) matches a word equal to it, or, when it is
  at least 3 characters long, a word that starts with it (``cells``, ``diabetes``);
* a continuation piece (``##ing``) matches a word that holds it after its first character
  (``binding``); pieces shorter than 3 characters (``##s``) would match nearly every word and
  are not highlighted;
* special tokens (``[CLS]``), punctuation and expansion terms absent from the text
  highlight nothing.

A matched word is highlighted whole. Offsets are in code points (``Array.from(s)`` in JavaScript).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")
_SPECIAL = re.compile(r"^\[[A-Za-z0-9_]+\]$")
ELLIPSIS = "\u2026"


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    token: str


def _norm(s: str) -> str:
    if s.isascii():  # most words: NFKD leaves ASCII as it is, and casefold is lower there
        return s.lower()
    decomposed = unicodedata.normalize("NFKD", s)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@dataclass(frozen=True)
class _Matcher:
    token: str
    piece: str
    inner: bool

    def matches(self, word: str) -> bool:
        if self.inner:
            return self.piece in word[1:]
        return word == self.piece or (len(self.piece) >= 3 and word.startswith(self.piece))


def _matchers(tokens: Iterable[str]) -> list[_Matcher]:
    out: list[_Matcher] = []
    seen: set[tuple[str, bool]] = set()
    for token in tokens:
        if not token or _SPECIAL.match(token):
            continue
        inner = token.startswith("##")
        piece = _norm(token[2:] if inner else token)
        if not piece or not any(c.isalnum() for c in piece) or (inner and len(piece) < 3):
            continue
        if (piece, inner) in seen:
            continue
        seen.add((piece, inner))
        out.append(_Matcher(token, piece, inner))
    return out


def _matched(text: str, matchers: list[_Matcher]) -> Iterator[Span]:
    """The words of ``text`` that a matcher matches, in order (first matching one wins); lazy,
    so that finding the first match reads no further (k=1000 asks for a thousand snippets)."""
    # A word-initial piece can only match a word with its first character: with no inner
    # pieces, most words are passed over on that alone.
    firsts = None if any(x.inner for x in matchers) else {x.piece[0] for x in matchers}
    for m in _WORD.finditer(text):
        word = _norm(m.group())
        if firsts is not None and word[:1] not in firsts:
            continue
        for matcher in matchers:
            if matcher.matches(word):
                yield Span(m.start(), m.end(), matcher.token)
                break


def highlight(text: str, tokens: Iterable[str]) -> list[Span]:
    """Every word of ``text`` that one of ``tokens`` matches (first matching token wins)."""
    return list(_matched(text, _matchers(tokens)))


def make_snippet(text: str, tokens: Iterable[str], width: int = 240) -> tuple[str, list[Span]]:
    """A window of about ``width`` characters of ``text`` starting a little before the first
    matched word (the beginning when nothing matches), cut at word boundaries, whitespace
    collapsed, with ``…`` where text was cut; plus the highlight spans inside it."""
    matchers = _matchers(tokens)
    text = text or ""
    if len(text) <= width:
        start, end = 0, len(text)
    else:
        first = next(_matched(text, matchers), None)
        anchor = first.start if first else 0
        start = max(0, anchor - width // 4)
        while start > 0 and _WORD.match(text, start - 1):  # begin on a word boundary
            start -= 1
        end = min(len(text), start + width)
        if end < len(text):  # end on a word boundary
            cut = max((m.end() for m in _WORD.finditer(text, start, end) if m.end() < end),
                      default=end)
            end = cut if cut > start else end
    body = _SPACE.sub(" ", text[start:end]).strip()
    snippet = (ELLIPSIS if start > 0 else "") + body + (ELLIPSIS if end < len(text) else "")
    return snippet, list(_matched(snippet, matchers))


def query_terms(query: str) -> list[str]:
    """The query's words: the tokens to highlight when the engine gave no explanation."""
    return _WORD.findall(query)
