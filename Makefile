# Two commands for a newcomer: `make demo` (the main job) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
GR := $(VENV)/bin/graphrnn
OUT := out

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test,plot,progress,mpi,onnx,jax]'
	touch $@

# torch (a CPU wheel) lets the parity tests compare with torch.nn; they skip without it.
$(VENV)/.torch: $(VENV)/.installed
	-$(PY) -m pip install -q torch==2.13.0 && touch $@

# Headless Chromium lets the browser test of `inspect --format html` run (Debian's package, as
# root; the test skips, saying why, where it cannot be installed).
$(VENV)/.chromium: $(VENV)/.installed
	-command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	touch $@

demo: $(VENV)/.installed
	@mkdir -p $(OUT)
	$(GR) check specs/lstm.yaml
	$(GR) inspect specs/elman.yaml --steps 3 --format text
	$(GR) task reber --batch 2048 --seed 0 -o $(OUT)/reber.npz
	$(GR) train specs/reber_lstm.yaml --data $(OUT)/reber.npz --loss mse --epochs 15 \
		--batch-size 32 --lr 0.02 --checkpoint $(OUT)/reber.ckpt.npz \
		-o $(OUT)/reber_params.npz --plot $(OUT)/reber_loss.png
	$(GR) hopfield --out $(OUT)
	$(GR) accuracy specs/reber_lstm.yaml $(OUT)/reber_params.npz \
		--train $(OUT)/reber.npz

test: $(VENV)/.installed $(VENV)/.torch $(VENV)/.chromium
	$(VENV)/bin/ruff check graphrnn tests benchmarks
	$(PY) -m pytest

# torch, JAX and threadpoolctl (BLAS facts) for the comparison: the `bench` extra.
bench: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[bench]'
	$(GR) bench --out benchmarks/RESULTS.md

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache .hypothesis
