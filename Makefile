# The two fresh-machine commands are `make demo` and `make test` (see README.md).
VENV   := .venv
STAMP  := $(VENV)/.setup-done
BIN    := $(VENV)/bin

.PHONY: setup demo test lint clean

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	bash scripts/demo.sh

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
