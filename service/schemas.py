"""Request and response bodies of the HTTP API (pydantic v2).

Requests are strict (a JSON string is not an int, unknown fields are refused) so a typo such as
``"top_k"`` or ``"k": "10"`` is reported instead of silently ignored. Search options left out take
the service defaults (see ``Settings.default_*``); the response reports what was actually used.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from sparseretr.service.settings import (
    BATCH_CEILING,
    K_CEILING,
    QUERY_CHARS_CEILING,
    Fusion,
    Mode,
    Normalization,
)

QueryText = Annotated[
    str,
    # pattern: "not only whitespace", stated in the schema so clients can validate up front.
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=QUERY_CHARS_CEILING, pattern=r"\S"
    ),
]


def _json_integer(v: Any) -> Any:
    """JSON Schema counts 784.0 as an integer; strict pydantic would not. Strings stay errors."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def json_int(ge: int, le: int) -> Any:
    """An int bounded to [ge, le] that takes 784.0 like JSON Schema does, with a standard schema."""
    return Annotated[
        int,
        BeforeValidator(_json_integer),
        Field(ge=ge, le=le),
        WithJsonSchema({"type": "integer", "minimum": ge, "maximum": le}),
    ]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class SearchOptions(_Strict):
    k: json_int(1, K_CEILING) = Field(10, description="hits to return")
    mode: Mode | None = Field(None, description="default: the service's default mode")
    fusion: Fusion | None = Field(None, description="hybrid only: rrf or convex")
    alpha: float | None = Field(None, ge=0.0, le=1.0, description="convex: weight of sparse")
    rrf_k: json_int(1, 100_000) | None = Field(None, description="rrf constant")
    normalization: Normalization | None = Field(None, description="convex score normalization")
    candidates: json_int(1, 10 * K_CEILING) | None = Field(
        None, description="hits each system contributes to fusion"
    )
    bm25_weight: float | None = Field(
        None, ge=0.0, le=1.0,
        description="hybrid: the BM25 side's share of the fusion (sparse and dense share the "
        "rest); 0 fuses sparse and dense only; > 0 needs an index with a BM25 side",
    )  # fmt: skip
    explain: bool = Field(False, description="return matched tokens with their weights")
    prune_alpha: float | None = Field(
        None, gt=0.0, le=1.0,
        description="sparse/bm25 pruning: < 1 stops early (approximate top-k); 1 is exact",
    )  # fmt: skip
    term_fraction: float | None = Field(
        None, gt=0.0, le=1.0,
        description="sparse/bm25: score only the heaviest query terms carrying this share of "
        "the query's weight; 1 scores all (exact)",
    )  # fmt: skip


class SearchRequest(SearchOptions):
    query: QueryText

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"query": "vitamin d deficiency and cancer", "k": 10}]}
    )


class BatchSearchRequest(SearchOptions):
    queries: list[QueryText] = Field(min_length=1, max_length=BATCH_CEILING)


class ComponentScore(BaseModel):
    score: float | None = None
    rank: int | None = None


class MatchedToken(BaseModel):
    token: str
    query_weight: float
    doc_weight: float
    contribution: float


class Highlight(BaseModel):
    """A span of ``Hit.snippet`` (code point offsets, end exclusive) that matched ``token``."""

    start: int
    end: int
    token: str


class Hit(BaseModel):
    id: str
    score: float
    rank: int
    title: str = ""
    snippet: str = ""
    components: dict[str, ComponentScore] = Field(default_factory=dict)
    matched: list[MatchedToken] | None = None
    highlights: list[Highlight] | None = None


class Timing(BaseModel):
    encode_ms: float = 0.0
    search_ms: float = 0.0
    fuse_ms: float = 0.0
    total_ms: float = Field(0.0, description="wall time in the service, queueing included")
    batch_size: int = Field(1, description="queries in the engine call that served this one")


class EffectiveOptions(BaseModel):
    k: int
    mode: Mode
    fusion: Fusion
    alpha: float
    rrf_k: int
    normalization: Normalization
    candidates: int
    bm25_weight: float
    explain: bool
    prune_alpha: float
    term_fraction: float


class SearchResponse(BaseModel):
    query: str
    mode: Mode
    hits: list[Hit]
    timing: Timing
    options: EffectiveOptions


class BatchSearchResponse(BaseModel):
    results: list[SearchResponse]
    timing: Timing


class Document(_Strict):
    id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=512)]
    title: str = ""
    text: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsUpsert(_Strict):
    documents: list[Document] = Field(min_length=1, max_length=BATCH_CEILING)


class WriteAck(BaseModel):
    seq: int = Field(description="write-ahead log sequence number of this write")
    ids: list[str]
    durable: Literal[True] = Field(True, description="the write survives a crash from now on")
    searchable: bool = Field(description="already visible to searches (refresh=true)")


class RefreshResult(BaseModel):
    generation: int = Field(description="commit point generation now searched")
    n_docs: int
    segments: int


class ErrorBody(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. validation_error")
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class LoadProgressBody(BaseModel):
    """While loading: the phase, and during a first-start build the documents encoded so far."""

    phase: str
    docs_done: int | None = None
    docs_total: int | None = None
    eta_s: float | None = None


class Ready(BaseModel):
    ready: bool
    status: Literal["ready", "loading", "failed"]
    detail: str | None = None
    progress: LoadProgressBody | None = None


class Limits(BaseModel):
    max_k: int
    max_query_chars: int
    max_batch: int
    max_body_bytes: int


class Defaults(BaseModel):
    mode: Mode
    fusion: Fusion
    alpha: float
    rrf_k: int
    normalization: Normalization
    candidates: int
    bm25_weight: float


class Stats(BaseModel):
    index: dict[str, Any] = Field(description="engine.stats(): n_docs, n_postings, vocab, ...")
    modes: list[str]
    defaults: Defaults
    limits: Limits
    writes_need_key: bool
