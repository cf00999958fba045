# The front door: `make demo` and `make test` set themselves up (a .venv with Python >= 3.12).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast test-gpu demo bench lint clean

setup: $(STAMP)

# Re-install only when the project's metadata changed; otherwise setup takes well under a second.
$(STAMP): pyproject.toml
	@set -e; \
	if [ ! -x "$(PY)" ]; then \
		py=""; \
		for cand in python3.14 python3.13 python3.12 python3 python; do \
			p=$$(command -v $$cand 2>/dev/null) || continue; \
			if $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then py=$$p; break; fi; \
		done; \
		if [ -z "$$py" ]; then \
			for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V -r); do \
				if $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then py=$$p; break; fi; \
			done; \
		fi; \
		if [ -z "$$py" ]; then \
			echo "error: no Python >= 3.12 found on PATH or under pyenv ($${PYENV_ROOT:-$$HOME/.pyenv}/versions)." >&2; \
			echo "       lerobot 0.6 needs Python >= 3.12: install one (e.g. 'pyenv install 3.12') and re-run." >&2; \
			exit 1; \
		fi; \
		echo "setup: creating $(VENV) with $$py ($$($$py --version))"; \
		$$py -m venv $(VENV); \
	fi; \
	echo "setup: installing the project and its test tools into $(VENV) (first time: a few minutes)"; \
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test]"; \
	touch $(STAMP)

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

# Everything but the end-to-end runs marked slow (< 3 min on 2 cores): for the edit-test loop.
test-fast: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not slow"

# The tests marked gpu (skipped without CUDA) and the GPU benchmarks, with one summary (gpu-output/).
test-gpu: setup
	$(PY) -m tests.gpu.run --out gpu-output

demo: setup
	$(PY) -m demo --out demo-output

bench: setup
	$(PY) -m tests.benchmarks.run --out bench-output

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

clean:
	rm -rf demo-output bench-output gpu-output .pytest_cache .ruff_cache
