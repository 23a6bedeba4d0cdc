# gpvi: two commands for users (`make demo`, `make test`), a few for developers (`make docs`, `make lint`).
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.gpvi-installed
# The CPU build of torch lives in a local wheel folder on these machines; never let pip pick a newer one.
WHEELS  := $(wildcard /opt/wheels)
PIPFLAGS := -q $(if $(WHEELS),--find-links $(WHEELS),)

.PHONY: demo test test-all lint docs notebooks install clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIPFLAGS) "torch==2.13.0"
	$(PY) -m pip install $(PIPFLAGS) -c constraints.txt -e ".[dev,distributed,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/gpvi demo

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check gpvi tests studies

# The documentation site (Sphinx + MyST-NB), every warning an error; -E: autodoc reads the code afresh.
docs: $(STAMP)
	$(VENV)/bin/sphinx-build -E -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

# Execute the notebooks at their small size and store their outputs (what the docs site shows).
notebooks: $(STAMP)
	$(PY) notebooks/execute.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache docs/_build
