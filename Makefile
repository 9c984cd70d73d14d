# Two commands matter (see README):  `make demo`  and  `make test`; `make app` serves the demo's models in a page.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The exact torch/torchvision pair this project is tested with (pyproject.toml declares ranges).
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo app test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip || true
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# i2sb-app on the demo's models: http://127.0.0.1:7860 (APP_ARGS: more keys, e.g. APP_ARGS="port=8080")
APP_CKPTS := runs/demo/jpeg5,runs/demo/sr4x_pool
app: $(STAMP)
	@test -d runs/demo/jpeg5 -a -d runs/demo/sr4x_pool || { echo "make app: no demo models in runs/demo/: run 'make demo' first" >&2; exit 2; }
	$(BIN)/i2sb-app ckpt=$(APP_CKPTS) $(APP_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python scripts/bench.py

clean:
	rm -rf runs/demo build *.egg-info
