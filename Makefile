# Two commands on a fresh machine: `make run` (set up, then the service) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data/beir/scifact
INDEX ?= indexes/scifact
PORT ?= 8000
TORCH_VERSION ?= 2.13.0

.PHONY: setup run index eval trained ablations adapt beir-table test browser lint bench bench-pruning clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first: the CPU wheel on local disk; a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==$(TORCH_VERSION)

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q -e ".[dev,bm25]"
	touch $@

setup: $(VENV)/.installed

# The main job: the search service on embedded defaults (builds the SciFact index on first start).
run: setup
	$(BIN)/sparseretr serve --data $(DATA) --index $(INDEX) --port $(PORT)

index: setup
	$(BIN)/sparseretr index build --corpus $(DATA) --out $(INDEX) --dense --with-bm25

# eval and beir-table run -k 100: a hybrid then fuses the same 100 candidates per side that the
# service fuses for any k <= 100 (a deeper -k deepens the pools, which moves z-scores).
eval: setup
	$(BIN)/sparseretr eval beir $(DATA) --index $(INDEX) --split test -k 100 \
		--mode sparse --mode dense --mode bm25 --mode hybrid --fusion rrf --fusion convex \
		--check-exact --baseline bm25

# Issue 4: train on SciFact train, index SciFact with the trained model, evaluate on test.
# `make trained CONFIG=scifact-inference-free` (~45-60 min on 2 CPU cores in fp32); the hybrid reuses the
# base index's dense side (same corpus, same document order): `make index` first.
CONFIG ?= scifact-inference-free
TRAIN_ARGS ?=
trained: setup
	$(BIN)/sparseretr train --config configs/$(CONFIG).yaml --no-resume $(TRAIN_ARGS)
	$(BIN)/sparseretr index build --corpus $(DATA) --out indexes/$(CONFIG) --overwrite \
		--encoder $$(case $(CONFIG) in *siamese*) echo splade;; *) echo inference-free;; esac) \
		--model runs/$(CONFIG)/model --max-length 256
	$(BIN)/python -m sparseretr.eval.attach_dense indexes/$(CONFIG) $(INDEX)
	$(BIN)/sparseretr eval beir $(DATA) --index indexes/$(CONFIG) --split test \
		--mode sparse --mode hybrid --fusion convex --fusion rrf --out runs/eval-$(CONFIG)

# The ablation table: IDF-aware vs plain FLOPS, distillation vs contrastive only, siamese.
ablations:
	for c in scifact-if-plain-flops scifact-if-contrastive scifact-siamese; do \
	  $(MAKE) trained CONFIG=$$c || exit 1; done

# Zero-label adaptation to one corpus (a BEIR folder or any folder with corpus.jsonl; its
# queries and qrels are never read): model, index with dense + BM25 sides, report in
# runs/adapt-NAME. `make adapt DATA=path/to/corpus-folder [NAME=mine] [MINUTES=30]`.
NAME ?= $(notdir $(abspath $(DATA)))
MINUTES ?= 30
adapt: setup
	$(BIN)/sparseretr adapt --corpus $(DATA) --out runs/adapt-$(NAME) --minutes $(MINUTES) --index

# The multi-dataset table (issue 15): per dataset, splade-tiny (with our BM25 side), untrained
# inference-free, one zero-label `adapt` run; then one eval over all of them with pyserini's
# BM25 flat and multifield. Every step resumes or is skipped when its output exists.
DATASETS ?= ../shared/data/beir/scifact ../shared/data/beir/nfcorpus
beir-table: setup
	for d in $(DATASETS); do n=$$(basename $$d); \
	  [ -d indexes/$$n-splade ] || $(BIN)/sparseretr index build --corpus $$d \
	    --out indexes/$$n-splade --with-bm25 --quiet || exit 1; \
	  [ -d indexes/$$n-if ] || $(BIN)/sparseretr index build --corpus $$d \
	    --out indexes/$$n-if --encoder inference-free --max-length 256 --quiet || exit 1; \
	  [ -d indexes/$$n-if-lex ] || $(BIN)/sparseretr index build --corpus $$d \
	    --out indexes/$$n-if-lex --encoder inference-free --max-length 256 \
	    --lexical-weight 2 --quiet || exit 1; \
	  [ -d runs/adapt-$$n/index ] || $(BIN)/sparseretr adapt --corpus $$d \
	    --out runs/adapt-$$n --minutes $(MINUTES) --index || exit 1; \
	done
	$(BIN)/sparseretr eval beir $(DATASETS) --split test -k 100 --out runs/table \
		--baseline bm25 --baseline bm25-multifield \
		--index "bm25 (ours)=indexes/{dataset}-splade:bm25" \
		--index "splade-tiny=indexes/{dataset}-splade:sparse" \
		--index "inference-free untrained=indexes/{dataset}-if:sparse" \
		--index "inference-free untrained + lexical prior=indexes/{dataset}-if-lex:sparse" \
		--index "inference-free adapted=runs/adapt-{dataset}/index:sparse,dense,hybrid" \
		--fusion convex --check-exact

# Headless Chromium for the browser test (Debian, as root); skipped with a note otherwise.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "note: chromium is not installed; the browser test will be skipped"; fi; }

test: setup browser
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

# Query engine vs the naive floor, bmp (blocks 8 and 32) and Lucene at 100k docs; then ours vs
# the floor at 1M (bmp at block 8 needs more RAM at 1M than 24 GB with the rest loaded).
bench-pruning: setup
	$(BIN)/pip install -q -e ".[bench]"
	$(BIN)/python -m benchmarks.pruning.run --docs 100000 --no-ablation --queries 200 $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.pruning.run --docs 1000000 --no-lucene --bmp-blocks 8 --no-scipy \
		--no-ablation --queries 150 $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.splade_index_scifact --index $(INDEX)

bench: setup
	$(BIN)/python -m benchmarks.search_latency
	$(BIN)/python -m benchmarks.encode_throughput
	$(BIN)/python -m benchmarks.build_throughput --docs 1000000 --index $(INDEX)
	$(BIN)/python -m benchmarks.load_test --index $(INDEX)

clean:
	rm -rf $(VENV) indexes runs artifacts .pytest_cache
