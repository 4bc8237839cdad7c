# Two commands do everything from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format bench docs clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/channel demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check channel tests bench docs
	$(BIN)/ruff format --check channel tests bench docs
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	$(BIN)/yamllint deploy
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml

format: $(STAMP)
	$(BIN)/ruff format channel tests bench docs
	$(BIN)/ruff check --fix channel tests bench docs

# A few minutes; `make bench BENCH_ARGS=--long` adds 10,000 idle watchers held for 5 minutes.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

docs: $(STAMP)
	$(BIN)/python -m channel.courier.server.openapi --markdown > docs/api.md
	$(BIN)/python docs/make_vectors.py
	$(BIN)/channel exercise schema --output channel/exercise/author/schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
