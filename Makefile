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

.PHONY: setup system-deps serve sample-data test test-slow lint bench clean parity-venv

setup: $(STAMP)

# Re-installs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Debian packages the tests use: Orthanc and its DICOMweb plugin (a real PACS for the DICOMweb
# datastore tests, started by the tests themselves on 127.0.0.1). Installed when missing and root
# (or password-less sudo) is available; otherwise those tests are skipped with a reason (outside CI).
ORTHANC_OK := test -x /usr/sbin/Orthanc -a -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so
APT_INSTALL := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	orthanc orthanc-dicomweb
system-deps:
	@if $(ORTHANC_OK); then :; \
	elif [ "$$(id -u)" = 0 ]; then $(APT_INSTALL) >/dev/null; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo sh -c '$(APT_INSTALL)' >/dev/null; \
	else echo "note: Orthanc is not installed (sudo apt-get install orthanc orthanc-dicomweb): DICOMweb tests skip"; fi

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
test: $(STAMP) system-deps lint
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

# Long tests: real training to convergence, multi-process runs.
test-slow: $(STAMP) system-deps
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# nnU-Net v2 for benchmarks/nnunet_parity.py, in its own environment (it needs numpy 2.x; LabelZoo's stays as
# it is). PyTorch is reused from $(VENV), not downloaded again. See README, "Self-configuring planner".
PARITY_VENV ?= .venv-parity
$(PARITY_VENV)/.parity-installed: pyproject.toml benchmarks/parity_env.py | $(STAMP)
	$(BIN)/python benchmarks/parity_env.py --venv $(PARITY_VENV) --torch-from $(VENV)
	touch $@

parity-venv: $(PARITY_VENV)/.parity-installed

clean:
	rm -rf $(VENV) $(PARITY_VENV) $(STUDIES) $(STUDIES).tmp .pytest_cache .ruff_cache
