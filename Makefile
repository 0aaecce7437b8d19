# Set-up and everyday commands. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Editable install: the compiled kernels are built in place, so tests import the source tree.
install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"

test: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/python -m fastrank demo

bench: install
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf build dist *.egg-info fastrank/*.c fastrank/*.so fastrank/*.html
