# The two entry points a newcomer needs: `make run` (install + start the product) and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, from the pinned CPU build, so nothing below can pull a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,llm]'
	# The fused ALS kernel (a torch C++ extension) is compiled here, once, from src/hybrec/als/csrc.
	$(PY) -m hybrec.als.build
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/hybrec up

test: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/python -m pytest

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

clean:
	rm -rf $(VENV) var build *.egg-info
