# sparsecirc — build, test and reproduce. GNU make; run `make help` for the targets.
#
#   make test                  unit tests -> chapters at ci scale (papermill) -> nbval -> book HTML; what CI runs
#   make book                  execute every chapter in place at book scale, regenerate the scorecard, build HTML
#   make artifact ID=<id>      recompute one artifact (python -m sparsecirc reproduce <id>)
#
# Off the project machines, install torch's CPU wheel from PyTorch's index:
#   make book TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (on the project machines pip is already configured with a local wheel folder holding torch 2.13.0+cpu).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
# Never run two torch jobs at once on a 2-core box (STYLE.md section 10, "contention trap").
.NOTPARALLEL:

# Offline, deterministic environment for every recipe (datasets reads the HF_* variables at import time).
export HF_DATASETS_OFFLINE := 1
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0
SPARSECIRC_NUM_THREADS ?= 2
export SPARSECIRC_NUM_THREADS
# make test runs TEST_JOBS jobs side by side in each stage (pytest-xdist workers for the unit tests and nbval,
# chapters for the ci-scale run), each with SPARSECIRC_NUM_THREADS / TEST_JOBS torch threads (at least 1): the
# tests and ci-scale models are small, and one thread each on two cores beats two threads on one job at a time.
TEST_JOBS ?= 2
JOB_THREADS := $(shell n=$$(( $(SPARSECIRC_NUM_THREADS) / $(TEST_JOBS) )); echo $$(( n > 0 ? n : 1 )))

VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_INDEX ?=
PIP_INDEX := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
HTML := book/_build/html
CI_OUT := book/_build/ci

.PHONY: help venv test ci unit chapters nbval html book artifact lock bench clean

help:
	@echo "make test               unit tests, chapters at ci scale (papermill), nbval, book HTML (= make ci)"
	@echo "make book               execute chapters in place at book scale, scorecard, HTML -> $(HTML)/index.html"
	@echo "make unit | chapters | nbval | html    the stages of make test, one at a time"
	@echo "make artifact ID=<id>   recompute one artifact: python -m sparsecirc reproduce <id>"
	@echo "make venv | lock | bench | clean"
	@echo "off the project machines add TORCH_INDEX=https://download.pytorch.org/whl/cpu"

# --- environment --------------------------------------------------------------------------------------------
# One install path for everyone: the locked set, then the package itself without dependencies.
venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q $(PIP_INDEX) -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	@touch $@

# Regenerate the lock from the venv (after `pip install` of a new or upgraded dependency).
lock: $(STAMP)
	{ echo "# Python $$($(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])'): pip freeze --exclude-editable (make lock)"; \
	  $(VENV)/bin/pip freeze --exclude-editable; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock
	@touch $(STAMP)
	@echo "requirements.lock: $$(wc -l < requirements.lock) lines"

# --- tests (STYLE.md section 8) -----------------------------------------------------------------------------
test: $(STAMP)
	@t0=$$(date +%s); rc=0; \
	$(MAKE) --no-print-directory unit chapters nbval html || rc=$$?; \
	if [ $$rc -eq 0 ]; then verdict=passed; else verdict=FAILED; fi; \
	echo "make test: $$verdict in $$(( $$(date +%s) - t0 )) s wall time"; \
	exit $$rc

ci: test

# pytest exits 5 when it collects nothing: that is a broken test suite, not a pass.
unit: $(STAMP)
	@echo "==> unit tests"
	@t0=$$(date +%s); rc=0; \
	SPARSECIRC_NUM_THREADS=$(JOB_THREADS) $(PY) -m pytest -q -n $(TEST_JOBS) -m "not slow" tests/ || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no unit tests (exit 5)" >&2; exit 5; fi; \
	echo "unit: $$(( $$(date +%s) - t0 )) s"; exit $$rc

# Recompute path: every chapter in _toc.yml at ci scale into $(CI_OUT); non-zero exit on any cell error. bf16
# autocast only where the CPU has native bf16 (SPARSECIRC_BF16=auto, sparsecirc.core.repro): emulated, it is ~6x slower.
# TEST_JOBS chapters at a time (see above).
chapters: $(STAMP)
	@echo "==> chapters at ci scale (papermill -> $(CI_OUT), $(TEST_JOBS) at a time)"
	SPARSECIRC_BF16=$${SPARSECIRC_BF16:-auto} $(PY) -m sparsecirc.book execute --scale ci --recompute \
		--out $(CI_OUT) --jobs $(TEST_JOBS)

# Re-run the committed chapters at default parameters; only cells marked NBVAL_CHECK_OUTPUT are compared.
# Run from the repo root (the sanitize file path is relative to it; nbval starts each kernel in the
# notebook's folder, book/, like papermill --cwd book and the book build). MPLBACKEND is unset for the
# kernels so they use ipykernel's inline backend, as papermill's do (sparsecirc.book drops it there). TEST_JOBS
# workers, each taking whole notebooks (--dist loadfile: a notebook's cells share one kernel).
nbval: $(STAMP)
	@echo "==> nbval (committed chapters, default parameters, $(TEST_JOBS) at a time)"
	@t0=$$(date +%s); \
	chs=$$($(PY) -m sparsecirc.book list); \
	if [ -z "$$chs" ]; then echo "ERROR: book/_toc.yml lists no chapter notebooks" >&2; exit 1; fi; \
	SPARSECIRC_NUM_THREADS=$(JOB_THREADS) env -u MPLBACKEND $(PY) -m pytest -p no:cacheprovider -q \
		-n $(TEST_JOBS) --dist loadfile --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $$chs; \
	echo "nbval: $$(( $$(date +%s) - t0 )) s"

# Render the stored outputs (execute_notebooks: "off"), then check that no page loads anything remotely.
# --all: an incremental build skips unchanged pages and would not repeat their warnings.
html: $(STAMP)
	@echo "==> book HTML"
	@t0=$$(date +%s); \
	$(VENV)/bin/jupyter-book build book/ --all --builder html --warningiserror --keep-going; \
	$(PY) -m sparsecirc.book check-html; \
	echo "html: $$(( $$(date +%s) - t0 )) s"

# --- the book ------------------------------------------------------------------------------------------------
book: $(STAMP)
	$(PY) -m sparsecirc.book execute --scale book
	$(MAKE) --no-print-directory html
	@echo "The book is at $(CURDIR)/$(HTML)/index.html"

# --- artifacts and benchmarks --------------------------------------------------------------------------------
artifact: $(STAMP)
	@test -n "$(ID)" || { echo "usage: make artifact ID=<artifact-id>   (ids: data/registry.yaml)" >&2; exit 2; }
	$(PY) -m sparsecirc reproduce $(ID)

bench: $(STAMP)
	@shopt -s nullglob; files=(benchmarks/*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no benchmarks/*.py"; fi; \
	for f in "$${files[@]}"; do echo "==> $$f"; $(PY) "$$f"; done

clean:
	rm -rf book/_build _build .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
