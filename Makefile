# The two front doors: `make demo` and `make test`. Both set themselves up on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
DEBS := bubblewrap

# llama-cpp-python compiles llama.cpp from source. Its default build tunes for the build host
# (GGML_NATIVE), and that build segfaulted on the first completion on our AVX-512/AMX hosts.
# We build the pinned release once with portable x86-64 flags (AVX2/FMA/F16C, no AVX-512, no
# AMX) into a wheelhouse outside the checkout and install only that wheel (--only-binary), so
# pip can never fall back to a natively built copy from its own cache.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
WHEELHOUSE ?= $(HOME)/.cache/cdvm/wheels
LLAMA_WHEEL_STAMP := $(WHEELHOUSE)/.llama-cpp-python-$(LLAMA_VERSION)-portable
PIP_INSTALL := $(BIN)/python -m pip install -q --find-links $(WHEELHOUSE) --only-binary llama-cpp-python

.PHONY: test lint typecheck imports pytest demo setup setup-demo debs clean bench

# One stamp per extra set and pyproject version: a second run reuses what the first installed.
# llama-cpp-python builds from source the first time (minutes on 2 cores); pip caches the wheel.
setup: $(VENV)/.dev-$(HASH)
setup-demo: $(VENV)/.demo-$(HASH)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(LLAMA_WHEEL_STAMP): | $(BIN)/python
	@echo "building llama-cpp-python $(LLAMA_VERSION) with portable CPU flags (several minutes, once)"
	mkdir -p $(WHEELHOUSE)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel -q --no-cache-dir --no-deps \
		llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELHOUSE)
	@touch $@

$(VENV)/.dev-$(HASH): pyproject.toml $(LLAMA_WHEEL_STAMP) | $(BIN)/python
	$(PIP_INSTALL) -e '.[dev]'
	@rm -f $(VENV)/.dev-* $(VENV)/.demo-*
	@touch $@ $(VENV)/.demo-$(HASH)

$(VENV)/.demo-$(HASH): pyproject.toml $(LLAMA_WHEEL_STAMP) | $(BIN)/python
	$(PIP_INSTALL) -e '.[demo]'
	@rm -f $(VENV)/.demo-*
	@touch $@

# Debian packages the tests and the demo need (bubblewrap: the local launcher's sandbox).
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy

imports: setup
	$(BIN)/lint-imports

# Every branch of these modules must be exercised: the verifier's core (issue 3) and the
# requester's pure machine (issue 8).
COVERAGE_FULL := attestation/snp/abi.py,attestation/snp/agent_evidence.py,attestation/snp/verify.py,attestation/snp/crl.py,attestation/snp/validate.py,attestation/binding.py,attestation/evidence.py,attestation/verification.py,attestation/chain_cache.py,attestation/simulated/*,dvm/client/machine.py,dvm/client/record.py

# pytest exits 5 when it collected nothing: that is a failure here, as is any other non-zero code.
pytest: setup debs
	$(BIN)/python -m pytest --cov --cov-report= $(PYTEST_ARGS)
	$(BIN)/coverage report --include='$(COVERAGE_FULL)' --show-missing --fail-under=100

test: setup debs lint typecheck imports pytest

bench: setup
	$(BIN)/python benchmarks/bench_nostr.py
	$(BIN)/python benchmarks/bench_flood.py

demo: setup-demo debs
	$(BIN)/cdvm demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
