# The two commands of the README: `make demo` and `make test`.
# Everything installs into .venv from the project's own files; no network
# beyond the package registries is needed.

SHARED ?= ../shared
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SAMPLE ?= $(SHARED)/data/faces-dev/images/dev_0010.jpg

# The demo's `local` pack: SCRFD-500MF + MobileFaceNet from ../shared/models.
demo test: export WORKBENCH_LOCAL__MODELS_DIR ?= $(abspath $(SHARED)/models)
demo: export WORKBENCH_LOCAL__DETECTOR ?= buffalo_sc/det_500m.onnx
demo: export WORKBENCH_LOCAL__RECOGNIZER ?= mobilefacenet/MobileFaceNet.onnx
test: export WORKBENCH_SHARED ?= $(abspath $(SHARED))

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[insightface,dlib,dev]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/workbench ingest $(SHARED)/data/faces-dev/images
	$(VENV)/bin/workbench stats
	$(VENV)/bin/workbench search $(SAMPLE)

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check workbench tests benchmarks evaluation

clean:
	rm -rf workbench-data .pytest_cache
