# One command to run, one to test; both create and reuse .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INDEX ?= index
CORPUS ?= data/articles
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test index lint eval clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: pip takes the CPU build from this machine's disk, and no
	# dependency can then pull another (CUDA) torch.
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	# Every other package at the version in constraints.txt (the reader model was fitted
	# on what those versions parse and embed).
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

index: $(STAMP)
	$(VENV)/bin/article-qa index build --corpus $(CORPUS) --index $(INDEX)

run: $(STAMP)
	$(VENV)/bin/article-qa serve --index $(INDEX) --corpus $(CORPUS)

test: $(STAMP)
	$(PY) -m pytest

# The offline evaluation on the held-out split, with baselines; reports in eval/out.
eval: $(STAMP)
	$(VENV)/bin/article-qa eval run --dataset eval/datasets/bundled-test.jsonl --corpus $(CORPUS) --out eval/out

lint: $(STAMP)
	$(VENV)/bin/ruff check indexing service eval tests bench

# A bounded soak against a real server: readers, a writer, citation checks, RSS growth.
# Not part of `make test`; figures in docs/RELIABILITY.md. SOAK_SECONDS=600 for a longer run.
SOAK_SECONDS ?= 60
.PHONY: soak
soak: $(STAMP)
	$(PY) bench/soak.py --seconds $(SOAK_SECONDS)

# The benchmark suite (issue 6): every figure a median of BENCH_RUNS runs, written to
# bench/RESULTS.md. Not part of `make test`; takes a long while (BENCH_ARGS=--quick to try it).
BENCH_RUNS ?= 5
BENCH_ARGS ?=
.PHONY: bench
bench: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[bench]'
	$(PY) bench/run_all.py --runs $(BENCH_RUNS) $(BENCH_ARGS)

clean:
	rm -rf $(INDEX) .pytest_cache .ruff_cache
