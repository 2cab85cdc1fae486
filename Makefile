# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use and install the package into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch (a plain `torch` pulls a multi-GB CUDA build). Override on GPU
# machines, e.g. `make demo TORCH_SPEC=torch`, or install torch yourself first.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test test-transformers-4.57 install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/resnet-bk demo

test: $(STAMP)
	$(PY) -m pytest tests -q

# The same suite against the oldest supported transformers (4.57, the line optimum-onnx pins).
# The Triton interpreter tests run in `make test` only; the Optimum ONNX tests run here only
# (optimum-onnx 0.1.0 pins transformers < 4.58).
VENV457 ?= .venv-transformers-4.57
$(VENV457)/.installed: setup.cfg pyproject.toml
	test -x $(VENV457)/bin/python || $(PYTHON) -m venv $(VENV457)
	$(VENV457)/bin/python -m pip install -q --upgrade pip
	$(VENV457)/bin/python -c "import torch" 2>/dev/null || $(VENV457)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VENV457)/bin/python -m pip install -q -e ".[onnx,peft,compare]" "transformers==4.57.6" "pytest>=8" \
		"optimum-onnx[onnxruntime]==0.1.0"
	touch $@

test-transformers-4.57: $(VENV457)/.installed
	$(VENV457)/bin/python -m pytest tests -q --ignore=tests/test_triton_scan.py

clean:
	rm -rf $(VENV) $(VENV457) results outputs *.egg-info
