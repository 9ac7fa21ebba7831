# One command to run, one to test; both create and reuse .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
INDEX ?= index
CORPUS ?= data/articles
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test index lint eval clean reader

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

# The tests include the Ray cluster tests, so they install the `ray` extra (~750 MB).
RAY_STAMP := $(VENV)/.installed-ray
$(RAY_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,ray]'
	touch $(RAY_STAMP)

test: $(RAY_STAMP)
	$(PY) -m pytest

# The offline evaluation on the held-out split, with baselines; reports in eval/out.
eval: $(STAMP)
	$(VENV)/bin/article-qa eval run --dataset eval/datasets/bundled-test.jsonl --corpus $(CORPUS) --out eval/out

lint: $(STAMP)
	$(VENV)/bin/ruff check indexing service eval tests bench training

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

# The neural reader, reproduced from a clean clone (README "The reader"): synthetic
# questions from BBC News, two epochs of pre-training on them, then the real questions
# of the dev splits, cross-fitted: fold models fine-tuned on the other folds read each
# question to fit the confidence and cut, and the shipped model is fine-tuned on all of
# them and exported (fp32 + int8). Never a test split, never the five bundled articles'
# own questions made synthetically. Resumable: rerun after an interruption.
# READER_DEVICE=cuda on a GPU.
SHARED ?= ../shared
READER_WORK ?= build/reader
# Your own articles instead (README "Adapting the reader"): questions need no labels.
READER_CORPUS ?= $(SHARED)/datasets/bbc-news
READER_DEVICE ?= auto
READER_EPOCHS ?= 2
AQA := $(VENV)/bin/article-qa
reader: $(STAMP)
	mkdir -p $(READER_WORK)
	test -f $(READER_WORK)/synthetic.jsonl || $(AQA) reader data --corpus $(READER_CORPUS) --out $(READER_WORK)/synthetic.jsonl
	$(AQA) reader train --data $(READER_WORK)/synthetic.jsonl --out $(READER_WORK)/stage1 --epochs $(READER_EPOCHS) --device $(READER_DEVICE) --resume
	test -f $(READER_WORK)/squad/gold-dev.jsonl || $(AQA) eval import-squad $(SHARED)/datasets/squad2-sample/squad2-dev-sample.json --out $(READER_WORK)/squad
	$(AQA) reader finetune --init $(READER_WORK)/stage1/model.pt --work $(READER_WORK)/stage2 --out service/reader_model --device $(READER_DEVICE) \
		--set news eval/datasets/bundled-dev.jsonl $(READER_WORK)/index-news $(CORPUS) \
		--set squad $(READER_WORK)/squad/gold-dev.jsonl $(READER_WORK)/index-squad $(READER_WORK)/squad/corpus.jsonl \
		--offsets $(READER_WORK)/squad/answer_offsets.jsonl
