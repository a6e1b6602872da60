# Two commands for a new user:  `make demo`  and  `make test`.
# Both create (or reuse) a virtual environment in $(VENV) and install what they need.
# TORCH is the pip spec for PyTorch: the default takes the build pip picks for this machine (CUDA on Linux);
# pass e.g. TORCH=torch==2.13.0 or TORCH="torch --index-url https://download.pytorch.org/whl/cpu" for a CPU build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch
EXTRAS ?= test,slicer
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.actionpp-installed

.PHONY: venv test demo clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

test: venv
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: venv
	$(BIN)/actionpp demo --out $(DEMO_OUT)

clean-demo:
	rm -rf $(DEMO_OUT)
