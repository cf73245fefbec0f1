# The commands of README.md and docs/. `make test` and (soon) `make demo` set everything up from scratch.
#
#   make setup   .venv with torch, the package and its test tools, the compiled gRPC lane; Debian data and photo packages when apt is usable
#   make test    setup, then the whole test suite, then `make install-check`
#   make install-check  the "Install with pip" commands of docs/getting-started.md in fresh venvs (tests/install_check.sh)
#   make test-fast  setup, then the fast tier (under a minute: no Triton, Gradio, browser or long training)
#   make demo    setup, build every model (once), start Triton and the demo at http://127.0.0.1:7860
#   make smoke   setup, then a seconds-long training run of every model (runs/)
#   make bench   setup, build every model (once), then `ganexport bench` on all of them (benchmarks/results/)
#   make gpu-check  setup, then the GPU path on a CUDA machine: onnxruntime-gpu, gpu tests, fp32/fp16 bench records
#   make docs    setup, then the documentation site (docs/, mkdocs.yml) at http://127.0.0.1:8008

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip --disable-pip-version-check
# CPU machines take the CPU build of torch 2.13.0 first, so that pip never pulls a multi-GB
# CUDA build to satisfy `torch>=`; where an NVIDIA GPU is present, pip picks the CUDA build.
TORCH  ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
EXTRAS ?= train,serve,test
# Debian packages the project reads at run time: Fashion-MNIST, real photos for photo2sketch, the
# browser the demo tests drive, the cairo library that draws the faces data set (cairosvg), and what the
# front door's compiled gRPC lane is built with (serving/grpc_door.cc).
APT_PACKAGES = dataset-fashion-mnist mate-backgrounds chromium libcairo2 g++ pkg-config libgrpc++-dev
# Debian packages whose photographs photo2sketch trains on (training/photo_sources.tsv lists each photo). Only
# their files are needed, and some are programs with large dependencies (kphotoalbum pulls in KDE), so they are
# downloaded and unpacked under PHOTO_ROOT rather than installed; one that is installed is used where it is.
PHOTO_PACKAGES = gcompris-qt-data scratch tuxpaint-data kphotoalbum opencv-doc gnome-control-center-data \
	lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 plasma-workspace-wallpapers lxqt-themes
PHOTO_ROOT ?= /opt/ganexport/photo-packages
PYTEST_ARGS ?=

.PHONY: setup system-deps photo-packages test test-fast install-check demo smoke bench gpu-check docs clean

setup: system-deps photo-packages $(VENV)/.setup-done $(VENV)/bin/ganexport-grpc-door

# Installs only what is missing, and only where apt-get can run (root); otherwise it says what to install.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "apt-get install$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "note: missing Debian packages:$$missing (install them with apt-get; tests that need them will skip)"; \
	fi

# Unpacks what is missing; where apt-get cannot run, says so (photo2sketch then trains on the photos it finds).
photo-packages:
	@missing=""; for p in $(PHOTO_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || [ -f $(PHOTO_ROOT)/.$$p ] \
		|| missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "unpacking photo packages into $(PHOTO_ROOT):$$missing"; \
		tmp=$$(mktemp -d); ( cd $$tmp && apt-get download -qq $$missing 2>/dev/null \
			|| { apt-get update -qq && apt-get download -qq $$missing; } ) || { rm -rf $$tmp; exit 1; }; \
		mkdir -p $(PHOTO_ROOT); for deb in $$tmp/*.deb; do dpkg-deb -x $$deb $(PHOTO_ROOT) || exit 1; done; \
		for p in $$missing; do touch $(PHOTO_ROOT)/.$$p; done; rm -rf $$tmp; \
	else \
		echo "note: photo packages not found:$$missing (run make setup as root to unpack them; photo2sketch uses the photos it finds)"; \
	fi

$(VENV)/.setup-done: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[$(EXTRAS)]"
	@touch $@

# The front door's compiled gRPC lane, beside the venv's python where `serve` finds it. Without g++ or grpc++
# it says so and serve keeps the Python gRPC door.
$(VENV)/bin/ganexport-grpc-door: serving/grpc_door.cc $(VENV)/.setup-done
	@$(PY) -m ganexport.serving.grpc_door_build || echo "note: serve keeps the Python gRPC door"

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) install-check

# tests/test_docs.py builds the same site with --strict, inside `make test`.
docs: setup
	$(PY) -m mkdocs serve --dev-addr 127.0.0.1:8008

# The wheel as users install it: built, installed into fresh venvs (train + serve, then serve only, no torch),
# used from an empty directory. Needs only python3 and the package index (pip's cache makes it quick).
install-check:
	PYTHON=$(PYTHON) tests/install_check.sh

# For day-to-day work: the markers are explained in tests/conftest.py. Its nets are tiny, so a second torch
# thread only waits on the first (and spins against anything else running): one thread is faster here.
test-fast: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not integration and not slow" $(PYTEST_ARGS)

# Builds only when the repository holds no model yet, from the released weights (--train-if-missing: a model
# without any, e.g. its weights removed, trains the quick profile first); `ganexport build --model all` rebuilds.
demo: setup
	test -n "$$(ls model_repository/*/config.pbtxt 2>/dev/null)" || $(VENV)/bin/ganexport build --model all --train-if-missing
	$(VENV)/bin/ganexport demo

# Every published model on every backend, interleaved; writes benchmarks/results/<hardware>/bench.{json,md,png}.
# docs/benchmarks.md lists the tuning, perf_analyzer and soak runs (e.g. BENCH_ARGS="--soak --duration 300").
BENCH_ARGS ?=
bench: setup
	test -n "$$(ls model_repository/*/config.pbtxt 2>/dev/null)" || $(VENV)/bin/ganexport build --model all --train-if-missing
	$(VENV)/bin/ganexport bench --model all --record $(BENCH_ARGS)

# On a machine with a CUDA device: onnxruntime-gpu in place of onnxruntime, the gpu-marked tests, dcgan and
# cyclegan built for GPU in fp32 and fp16, `ganexport bench --record` on both (benchmarks/results/gpu-<name>/).
# Without a GPU it says so in one line and exits 0.
gpu-check: setup
	$(VENV)/bin/ganexport gpu-check $(GPU_CHECK_ARGS)

smoke: setup
	for m in $$($(PY) -c 'from ganexport import catalog; print(*catalog.MODELS)'); do \
		$(VENV)/bin/ganexport train --model $$m --profile smoke || exit 1; done

clean:
	rm -rf $(VENV) runs build dist *.egg-info .pytest_cache
