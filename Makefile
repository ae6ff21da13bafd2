# The two commands of the README: `make serve` and `make test`. Both set up what they need.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The development environment: the project installed in editable mode with every extra
# (training with CPU torch 2.13.0, tests, lint, benchmarks). Rebuilt when pyproject.toml changes.
STAMP := $(VENV)/.installed-dev
# One pytest worker per core; each worker runs torch on one thread (tests/training/conftest.py).
PYTEST_ARGS ?= -n auto

# The service's own environment: the project with the `service` extra only, no torch.
SERVICE_VENV ?= .venv-service
SERVICE_BIN := $(SERVICE_VENV)/bin
SERVICE_STAMP := $(SERVICE_VENV)/.installed
SERVICE_TEST_STAMP := $(SERVICE_VENV)/.installed-test
# The tests that must pass without torch: the shared pipeline and the service.
TORCH_FREE_TESTS := tests/pipeline tests/service

.PHONY: serve test lint bench-backbones bench-decode bench-realsize bench-loop-filter bench-batch train-image train compare export synthetic synthetic-v2 focus-v2-local focus-v2-glance focus-v2 clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(SERVICE_BIN)/python:
	$(PYTHON) -m venv $(SERVICE_VENV)
	$(SERVICE_BIN)/python -m pip install --quiet --upgrade pip

$(SERVICE_STAMP): $(SERVICE_BIN)/python pyproject.toml
	$(SERVICE_BIN)/python -m pip install --quiet -e '.[service]'
	touch $@

# The same environment plus the test tools (still no torch).
$(SERVICE_TEST_STAMP): $(SERVICE_STAMP)
	$(SERVICE_BIN)/python -m pip install --quiet -e '.[service,test]'
	touch $@

## make serve: the service on CPU with the shipped model at http://127.0.0.1:8000 (docs at /docs)
serve: $(SERVICE_STAMP)
	ADAFOCUS_PROVIDERS='["CPUExecutionProvider"]' $(SERVICE_BIN)/adafocus-serve

# The browser tests (tests/service/test_web.py) drive Debian's Chromium; installed once (needs root).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; \
	else \
		echo "tests/service/test_web.py needs Chromium at $(CHROMIUM): run 'sudo apt-get install chromium' (skipped until then)"; \
	fi

## make test: set up both environments, lint (ruff, import rules), run the torch-free tests in the
## service's environment (no torch installed) and the rest in the development environment
test: $(STAMP) $(SERVICE_TEST_STAMP) $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(SERVICE_BIN)/python -m pytest $(PYTEST_ARGS) $(TORCH_FREE_TESTS)
	$(BIN)/python -m pytest $(PYTEST_ARGS) $(addprefix --ignore=,$(TORCH_FREE_TESTS))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## CPU latency / throughput of the backbones; writes docs/benchmarks/backbones.{md,json}
bench-backbones: $(STAMP)
	$(BIN)/python -m bench.bench_backbones

## decode + sample + resize timings; writes docs/benchmarks/decode.{md,json}
bench-decode: $(STAMP)
	$(BIN)/python -m bench.bench_decode

## the service at real sizes: paper-size models, 720p/1080p uploads (about an hour on 2 cores);
## writes docs/benchmarks/realsize.{md,json}
bench-realsize: $(STAMP)
	$(BIN)/python -m bench.bench_realsize

## skip_loop_filter: decode CPU at real sizes and top-1 on the synthetic benchmark (about 15
## minutes on 2 cores); writes docs/benchmarks/loop-filter.{md,json}
bench-loop-filter: $(STAMP)
	$(BIN)/python -m bench.bench_loop_filter

## adafocus-batch against the service on the same clips (about 15 minutes on 2 cores; needs
## bench-realsize's 720p clip and p128 model, made on the way); writes docs/benchmarks/batch.{md,json}
bench-batch: $(STAMP)
	$(BIN)/python -m bench.bench_batch

## the synthetic video benchmark under data/synthetic
synthetic: $(STAMP)
	$(BIN)/adafocus-synthetic --out data/synthetic --seed 0

## benchmark v2 (the target keeps away from the centre, docs/synthetic.md) under data/synthetic-v2
synthetic-v2: $(STAMP)
	$(BIN)/adafocus-synthetic --version 2 --out data/synthetic-v2 --seed 0

## benchmark v2's local network, pre-trained on its tile images (runs/focus_v2/tiles; docs/adafocus.md)
focus-v2-local: $(STAMP)
	$(BIN)/python -m training.data.synthetic_tiles --out data/synthetic-v2-tiles --seed 0
	$(BIN)/adafocus-train-image --data data/synthetic-v2-tiles --model resnet18 --model-kwargs '{"width": 24}' \
		--input-size 40 --crop-scale-min 1.0 --eval-crop 1.0 --no-hflip --ema-decay 0 --epochs 8 \
		--batch-size 64 --lr 0.1 --label-smoothing 0 --workers 0 --out runs/focus_v2/tiles

## benchmark v2's global network, pre-trained on the tile images as its 4x glance sees them (runs/focus_v2/glance)
focus-v2-glance: $(STAMP)
	$(BIN)/python -m training.data.synthetic_tiles --out data/synthetic-v2-tiles-glance --seed 0 --downsample 4
	$(BIN)/adafocus-train-image --data data/synthetic-v2-tiles-glance --model mobilenetv2_035 \
		--model-kwargs '{"output_stride": 8, "last_channels": 256}' \
		--input-size 10 --crop-scale-min 1.0 --eval-crop 1.0 --no-hflip --ema-decay 0 --epochs 8 \
		--batch-size 64 --lr 0.1 --label-smoothing 0 --workers 0 --out runs/focus_v2/glance

## issue 24's comparison on benchmark v2 (3 seeds) -> docs/results/focus-v2.{md,png}, docs/results/focus.json
focus-v2: synthetic-v2 focus-v2-local
	$(BIN)/adafocus-compare --config training/experiments/configs/focus_v2.json --runs runs/focus_v2 \
		--report docs/results/focus-v2.md --summary docs/results/focus.json --seeds 0 1 2 \
		--only adafocus_v2 oracle_patch centre_patch random_patch glance_only

## train the default CondenseNetV2 on the generated image dataset
train-image: $(STAMP)
	$(BIN)/adafocus-train-image

## train the default AdaFocusV2 on the synthetic benchmark (runs/adafocus)
train: $(STAMP)
	$(BIN)/adafocus-train

## AdaFocusV2, baselines and ablations (runs/compare) -> docs/results/synthetic.{md,png}
compare: $(STAMP)
	$(BIN)/adafocus-compare

## export the default run into model_repo/ (next free version)
export: $(STAMP)
	$(BIN)/adafocus-export runs/adafocus --out model_repo

clean-venv:
	rm -rf $(VENV) $(SERVICE_VENV)
