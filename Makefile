# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv and install what they need; a failing install stops make.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/pip --disable-pip-version-check
OUT ?= demo-out
COMPILED := build/compiled

.PHONY: install demo test test-compiled compiled lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	bash scripts/demo.sh $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-compiled

# The simulator's hot path compiled by mypyc (setup.py), beside the editable install:
# run with PYTHONPATH=$(COMPILED). Rebuilt whenever a source file changes.
compiled: $(COMPILED)/.built

$(COMPILED)/.built: $(STAMP) setup.py $(shell find src -name '*.py')
	rm -rf $(COMPILED) && mkdir -p $(COMPILED) && cp -r src/qosbatch $(COMPILED)/
	QOSBATCH_COMPILE=1 $(BIN)/python setup.py -q build_ext --build-lib $(COMPILED) \
		--build-temp build/temp
	touch $@

# The simulator and policy tests again on the compiled build, and its identity check.
test-compiled: $(COMPILED)/.built
	PYTHONPATH=$(COMPILED) $(BIN)/python -m pytest -q tests/test_sim.py tests/test_policies.py \
		tests/test_compiled.py

clean:
	rm -rf $(VENV) $(OUT) build .pytest_cache .ruff_cache .mypy_cache
