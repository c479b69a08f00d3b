# Two commands do everything on a fresh machine (see README):
#   make demo   set up, then evaluate the embedded model on the bundled clips through vLLM
#   make test   set up, then run the test suite (what CI runs)
PY := .venv/bin/python
export VLLM_CPU_KVCACHE_SPACE ?= 1

.PHONY: setup demo test
setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m eval.run demo --model trained --output-dir results/demo

test: setup
	$(PY) -m pytest tests -x -q --durations=15
