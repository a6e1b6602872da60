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
# The web app (actionpp studio) lives in its own environment: trame-slicer pins slicer-core<5.12 and its own VTK.
WEB_VENV ?= .venv-web
WEB_TORCH ?= $(TORCH)
CHROMIUM ?= /usr/bin/chromium

BIN := $(VENV)/bin
STAMP := $(VENV)/.actionpp-installed

.PHONY: venv test demo clean-demo web-venv test-web chromium studio

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

# ---- web app: `make studio` serves it, `make test-web` runs Testing/web in Chromium -----------------------------------
WEB_BIN := $(WEB_VENV)/bin
WEB_STAMP := $(WEB_VENV)/.actionpp-web-installed

web-venv: $(WEB_STAMP)

$(WEB_STAMP): pyproject.toml
	test -x $(WEB_BIN)/python || $(PYTHON) -m venv $(WEB_VENV)
	$(WEB_BIN)/python -m pip install -q --upgrade pip
	$(WEB_BIN)/python -m pip install -q $(WEB_TORCH)
	$(WEB_BIN)/python -m pip install -q -e ".[web,test]" playwright
	touch $(WEB_STAMP)

# Debian's Chromium (never `playwright install`); needs root, skipped with a message where apt-get cannot run.
chromium:
	@test -x $(CHROMIUM) || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "make: could not install chromium; the browser test will be skipped"

# pytest exit 5 (nothing collected) is not a failure here: every web test may skip on a machine without a browser.
test-web: web-venv chromium
	$(WEB_BIN)/python -m pytest -q -rs $(PYTEST_ARGS) Testing/web; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

studio: web-venv
	$(WEB_BIN)/actionpp studio
