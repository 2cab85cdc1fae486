# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use and install the package into it: `make demo` the package and what it
# needs to run; `make test` also the test extras (Triton for the kernel tests in its CPU interpreter, mambapy,
# lm-eval, ONNX, PEFT ...).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed only when the venv has none. From PyPI on Linux, torch is the CUDA build (several GB of
# nvidia packages); for a CPU-only build give PyTorch's CPU index, e.g.
#   make demo TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# or install the torch you want into .venv first.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX_URL ?=
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL),)
CORE_STAMP := $(VENV)/.installed-core
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-transformers-4.57 install clean

$(CORE_STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e .
	touch $@

$(TEST_STAMP): $(CORE_STAMP)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(CORE_STAMP)

demo: $(CORE_STAMP)
	$(VENV)/bin/resnet-bk demo

# About 9 minutes on 2 CPU cores once installed (the Triton kernels run in Triton's CPU interpreter).
test: $(TEST_STAMP)
	$(PY) -m pytest tests -q

# The same suite against the oldest supported transformers (4.57, the line optimum-onnx pins).
# The Triton interpreter tests run in `make test` only; the Optimum ONNX tests run here only
# (optimum-onnx 0.1.0 pins transformers < 4.58).
VENV457 ?= .venv-transformers-4.57
$(VENV457)/.installed: setup.cfg pyproject.toml
	test -x $(VENV457)/bin/python || $(PYTHON) -m venv $(VENV457)
	$(VENV457)/bin/python -m pip install -q --upgrade pip
	$(VENV457)/bin/python -c "import torch" 2>/dev/null || $(VENV457)/bin/python -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(VENV457)/bin/python -m pip install -q -e ".[onnx,peft,compare]" "transformers==4.57.6" "pytest>=8" \
		"optimum-onnx[onnxruntime]==0.1.0"
	touch $@

test-transformers-4.57: $(VENV457)/.installed
	$(VENV457)/bin/python -m pytest tests -q --ignore=tests/ops/test_triton_scan.py

clean:
	rm -rf $(VENV) $(VENV457) results outputs *.egg-info
