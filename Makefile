# staging-replica: the two commands a newcomer needs are `make reproduce-1011` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: reproduce-1011 test test-unit test-docker images venv clean bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "installing the project into $(VENV) (first run only)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

reproduce-1011: $(STAMP)
	$(BIN)/replica reproduce 1011

# Docker-marked tests run when REPLICA_DOCKER_TESTS=1 (they need an engine and `make images`).
test: $(STAMP)
	$(BIN)/pytest

# Pure logic only (seconds): no server is started.
test-unit: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not docker" tests/unit

test-docker: $(STAMP)
	REPLICA_DOCKER_TESTS=1 $(BIN)/pytest -m docker

images:
	bash scripts/make-images.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
