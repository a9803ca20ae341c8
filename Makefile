# LabelZoo: the two commands a user needs are `make serve` and `make test` (see README.md).
# Both create the virtual environment .venv on first use and reuse it afterwards.

PY      ?= $(shell command -v python3.11 || command -v python3)
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.labelzoo-installed
HOST    ?= 127.0.0.1
PORT    ?= 8000
STUDIES ?= data/sample
PYTEST_ARGS ?=

.PHONY: setup serve sample-data test test-slow lint bench clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The demo studies are built once (into a temporary folder, then renamed) and reused.
$(STUDIES): | $(STAMP)
	rm -rf $(STUDIES).tmp
	$(BIN)/labelzoo sample-data $(STUDIES).tmp
	mv $(STUDIES).tmp $(STUDIES)

sample-data: $(STUDIES)

serve: $(STAMP) $(STUDIES)
	$(BIN)/labelzoo serve --studies $(STUDIES) --host $(HOST) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .

# The default suite: everything but the tests marked `slow`.
test: $(STAMP) lint
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Long tests: real training to convergence, multi-process runs.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(STUDIES) $(STUDIES).tmp .pytest_cache .ruff_cache
