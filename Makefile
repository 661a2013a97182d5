# The two entry points a newcomer needs: `make run` (install + start the product) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test-tools run test lint clean

$(STAMP): pyproject.toml scripts/install-llama-cpp
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, from the pinned CPU build, so nothing below can pull a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	# llama.cpp for a portable CPU target (not -march=native, which crashes on CPUs that advertise AMX they cannot
	# run); its wheel is built once per machine and kept outside pip's cache (see the script).
	scripts/install-llama-cpp $(PY)
	$(PY) -m pip install --quiet -e '.[dev,llm,spark]'
	# The fused ALS kernel (a torch C++ extension) is compiled here, once, from src/hybrec/als/csrc; so is the exact
	# index's scan kernel (src/hybrec/vectors/csrc; without a C compiler the index scans with numpy).
	$(PY) -m hybrec.als.build
	$(PY) -m hybrec.vectors.scan_kernel
	touch $(STAMP)

install: $(STAMP)

# Chromium (browser tests) and the docker compose plugin (compose-file test); see the script.
test-tools: install
	scripts/install-test-tools

run: install
	$(VENV)/bin/hybrec up

test: install test-tools
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/python -m pytest

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) var build *.egg-info
