# The two commands of the README: `make demo` and `make test`; then `make lab` to explore.
# Everything installs into .venv from the project's own files; no network
# beyond the package registries is needed.

SHARED ?= ../shared
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SAMPLE ?= $(SHARED)/data/faces-dev/images/dev_0010.jpg
SLOW   := test-slow test-slow-timed test-slow-dlib test-slow-lfw

# The demo's `local` pack: SCRFD-500MF + MobileFaceNet from ../shared/models.
demo lab test $(SLOW): export WORKBENCH_LOCAL__MODELS_DIR ?= $(abspath $(SHARED)/models)
demo lab: export WORKBENCH_LOCAL__DETECTOR ?= buffalo_sc/det_500m.onnx
demo lab: export WORKBENCH_LOCAL__RECOGNIZER ?= mobilefacenet/MobileFaceNet.onnx
test $(SLOW): export WORKBENCH_SHARED ?= $(abspath $(SHARED))

.PHONY: setup system-deps demo lab test $(SLOW) lint clean

setup: $(STAMP)

# System packages the tests use: Chromium (browser tests), Redis (the workers'
# broker) and PostgreSQL (the catalog on a server); the tests start their own
# servers on local ports. CI runs as root and installs them; elsewhere install
# them once yourself.
SYSTEM_PACKAGES := chromium redis-server postgresql
SYSTEM_BINARIES := /usr/bin/chromium /usr/bin/redis-server /usr/lib/postgresql/*/bin/initdb
system-deps:
	@missing=""; for b in $(SYSTEM_BINARIES); do [ -x "$$b" ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "missing system packages: run 'sudo apt-get install $(SYSTEM_PACKAGES)' (the tests need them)"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU torch wheel first (any other torch request pulls CUDA), then
	# facenet-pytorch without its pins of old torch and numpy.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet --no-deps "facenet-pytorch==2.6.0"
	$(PY) -m pip install --quiet -e ".[insightface,dlib,facenet,notebooks,cluster,export,dashboards,api,server,postgres,workers,dev]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/workbench ingest $(SHARED)/data/faces-dev/images
	$(VENV)/bin/workbench stats
	$(VENV)/bin/workbench search $(SAMPLE)
	$(VENV)/bin/workbench cluster
	$(VENV)/bin/workbench people list

# JupyterLab on notebooks/ for the demo's workbench (127.0.0.1, the URL with its token
# printed); start with explore.ipynb. `make lab LAB_PORT=8900` for another port.
LAB_PORT ?= 8888
lab: setup
	$(VENV)/bin/workbench lab --port $(LAB_PORT)

test: setup system-deps
	$(PY) -m pytest

# The slow tier: full LFW View 2 for every pack against the golden values, all of LFW
# clustered, the 20k gallery timed in the browser. In three parts, so that CI
# (.ci/run) can start the longest beside the default suite:
#   test-slow-timed  the 20k gallery, timed: run it alone on the machine;
#   test-slow-dlib   dlib's View 2: one core for ~30 min (dlib has no BLAS and is
#                    not thread-safe), the longest single test;
#   test-slow-lfw    the rest: all of LFW clustered, `local`'s View 2.
# Each pytest run has its own basetemp, so two can run at once in one checkout.
test-slow: test-slow-timed
	@tmp=$$(mktemp -d); \
	$(MAKE) --no-print-directory test-slow-dlib > $$tmp/dlib.log 2>&1 & dlib=$$!; \
	$(MAKE) --no-print-directory test-slow-lfw; rest=$$?; \
	wait $$dlib; code=$$?; cat $$tmp/dlib.log; rm -rf $$tmp; \
	test $$rest -eq 0 && test $$code -eq 0

test-slow-timed: setup
	$(PY) -m pytest -m slow tests/browser

test-slow-dlib test-slow-lfw: setup
	@tmp=$$(mktemp -d); \
	$(PY) -m pytest -m slow tests/slow -k "$(if $(filter test-slow-dlib,$@),,not )dlib" \
	  --basetemp=$$tmp -p no:cacheprovider; code=$$?; rm -rf $$tmp; exit $$code

lint: setup
	$(VENV)/bin/ruff check workbench tests benchmarks evaluation notebooks

clean:
	rm -rf workbench-data .pytest_cache
