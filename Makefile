# Two entry points, each self-contained on a fresh machine with python3 and make:
#   make demo   -> executes notebooks/quickstart.ipynb through a Jupyter kernel, writes build/quickstart.html
#   make test   -> runs the whole test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-checkpoint bench-second-order bench-batch bench-vector bench-gpu bench-cache bench-jacrev bench-jax bench-compile bench-gradbench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,demo]"
	$(PY) -m ipykernel install --user --name nbautodiff --display-name "nbautodiff (venv)" >/dev/null
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p build
	$(PY) -m nbautodiff.magics.run_notebook notebooks/quickstart.ipynb build/quickstart.html

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) benchmarks/reverse_mode.py

bench-checkpoint: $(STAMP)
	$(PY) benchmarks/checkpointing.py

bench-second-order: $(STAMP)
	$(PY) benchmarks/second_order.py

bench-batch: $(STAMP)
	$(PY) benchmarks/batching.py

bench-vector: $(STAMP)
	$(PY) benchmarks/vector_mode.py

bench-gpu: $(STAMP)
	NUMBA_ENABLE_CUDASIM=0 $(PY) benchmarks/gpu.py

bench-cache: $(STAMP)
	$(PY) benchmarks/cache.py

bench-jacrev: $(STAMP)
	$(PY) benchmarks/jacrev_sweeps.py

# JAX is an optional extra (nbautodiff[jax]), installed into the venv on first use.
JAX_STAMP := $(VENV)/.installed-jax

$(JAX_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e ".[jax]"
	touch $(JAX_STAMP)

bench-jax: $(JAX_STAMP)
	$(PY) benchmarks/jax_compare.py $(BENCH_ARGS)

# Compile latency of every derivative kind beside numba's primal and JAX's jit(grad) (issue 20);
# JAX through the same optional extra. BENCH_ARGS e.g. "--quick" or "--only gmm,rnn".
bench-compile: $(JAX_STAMP)
	$(PY) benchmarks/compile_latency.py $(BENCH_ARGS)

# nbautodiff as a GradBench tool (benchmarks/gradbench/), run against GradBench's own evals and
# their validation, beside GradBench's manual C++, JAX and PyTorch tools, through pipes (no
# Docker). GRADBENCH=<a checkout of github.com/gradbench/gradbench>; the manual tool needs g++
# and nlohmann's json.hpp (its cpp/json.hpp, nlohmann-json3-dev or JSON_HPP_DIR). The extra
# nbautodiff[gradbench] installs what GradBench's evals and its JAX tool import; PyTorch is
# used when it imports (e.g. pip install torch --index-url https://download.pytorch.org/whl/cpu).
# BENCH_ARGS e.g. "--evals lse,gmm --full --min-seconds 1" (see benchmarks/gradbench/bench.py).
GRADBENCH_STAMP := $(VENV)/.installed-gradbench

$(GRADBENCH_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e ".[gradbench]"
	touch $(GRADBENCH_STAMP)

bench-gradbench: $(GRADBENCH_STAMP)
	@test -n "$(GRADBENCH)" || { echo "usage: make bench-gradbench GRADBENCH=<gradbench checkout>"; exit 2; }
	$(PY) benchmarks/gradbench/bench.py --gradbench "$(GRADBENCH)" $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build
