# The two commands of the README: `make serve` (arrives with the service) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The marker is rebuilt whenever a requirements file changes.
STAMP := $(VENV)/.installed-dev
# One pytest worker per core; each worker runs torch on one thread (tests/conftest.py).
PYTEST_ARGS ?= -n auto

.PHONY: serve test lint bench-backbones bench-decode train-image train compare export synthetic clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python requirements/service-common.txt requirements/service.txt requirements/train.txt requirements/dev.txt
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	touch $@

SERVICE_VENV ?= .venv-service
SERVICE_STAMP := $(SERVICE_VENV)/.installed

# The service's own environment: requirements/service.txt only, no torch.
$(SERVICE_STAMP): requirements/service-common.txt requirements/service.txt
	$(PYTHON) -m venv $(SERVICE_VENV)
	$(SERVICE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SERVICE_VENV)/bin/python -m pip install --quiet -r requirements/service.txt
	touch $@

## make serve: the service on CPU with the shipped model at http://127.0.0.1:8000 (docs at /docs)
serve: $(SERVICE_STAMP)
	ADAFOCUS_PROVIDERS='["CPUExecutionProvider"]' $(SERVICE_VENV)/bin/python -m service

# The browser tests (tests/test_web.py) drive Debian's Chromium; installed once (needs root).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else \
		echo "tests/test_web.py needs Chromium at $(CHROMIUM): run 'sudo apt-get install chromium' (skipped until then)"; \
	fi

## make test: create .venv if missing, install what the tests need (Chromium included), lint, run the test suite
test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

## CPU latency / throughput of the backbones; writes docs/benchmarks/backbones.{md,json}
bench-backbones: $(STAMP)
	$(BIN)/python bench/bench_backbones.py

## decode + sample + resize timings; writes docs/benchmarks/decode.{md,json}
bench-decode: $(STAMP)
	$(BIN)/python bench/bench_decode.py

## the synthetic video benchmark under data/synthetic
synthetic: $(STAMP)
	$(BIN)/python -m training.data.synthetic --out data/synthetic --seed 0

## train the default CondenseNetV2 on the generated image dataset
train-image: $(STAMP)
	$(BIN)/python training/train_image.py

## train the default AdaFocusV2 on the synthetic benchmark (runs/adafocus)
train: $(STAMP)
	$(BIN)/python training/train.py

## AdaFocusV2, baselines and ablations (runs/compare) -> docs/results/synthetic.{md,png}
compare: $(STAMP)
	$(BIN)/python training/compare.py

## export the default run into model_repo/ (next free version)
export: $(STAMP)
	$(BIN)/python training/export.py runs/adafocus --out model_repo

clean-venv:
	rm -rf $(VENV)
