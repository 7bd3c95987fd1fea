# The two fresh-machine commands are `make demo` and `make test` (see README.md).
#
# Test tiers (markers in pyproject.toml, tests/conftest.py):
#   make check  before every commit: ruff, mypy and the fast tier, every test not marked llm, postgres or slow.
#               The answer flow runs there with a scripted generator (tests/fakes.py); 2.5 minutes on 2 cores
#               with a cold mypy cache.
#   make test   everything real (CI: .ci/run): the bundled LLM, PostgreSQL, the browser; prints the 10 slowest
#               (about 14 minutes on 2 cores).
VENV   := .venv
STAMP  := $(VENV)/.setup-done
BIN    := $(VENV)/bin
FAST   := not llm and not postgres and not slow

.PHONY: setup demo check test lint clean

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	bash scripts/demo.sh

check: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "$(FAST)"

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest --durations=10

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
