# The README's commands. `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The project's Jupyter kernel and JupyterLab settings live inside the virtual environment,
# and every notebook names this kernel, so JupyterLab opens them without asking.
KERNEL := $(VENV)/share/jupyter/kernels/meetinglib/kernel.json
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
ARGS ?=
# The suite runs on this many pytest-xdist workers (`make test TEST_WORKERS=0` runs it in
# one process). A file's tests stay on one worker, the Spark ones share one: tests/conftest.
TEST_WORKERS ?= 2

.PHONY: install system-deps demo run test check lint format lab bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@

$(KERNEL): $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name meetinglib --display-name "Python (meetinglib)" >/dev/null

# No news or update prompts: JupyterLab here works offline, over the project's notebooks.
$(LAB_SETTINGS): $(STAMP)
	@mkdir -p $(@D)
	@echo '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' > $@

install: $(STAMP) $(KERNEL) $(LAB_SETTINGS) system-deps

# A font that draws Simplified Chinese, for the zh-CN handouts' charts. Installed from
# Debian's packages when missing and we may (root with apt-get); otherwise a hint.
system-deps:
	@if fc-list 2>/dev/null | grep -qi "Noto Sans CJK"; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing fonts-noto-cjk (charts in Simplified Chinese)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-cjk fontconfig >/dev/null) \
	    || echo "warning: could not install fonts-noto-cjk; Chinese chart text may not render"; \
	  rm -rf $$HOME/.cache/matplotlib; \
	else echo "note: install a CJK font (Debian: fonts-noto-cjk) for Chinese chart text"; fi
	@# Chromium, for the browser tests of the handouts and the meeting console (Playwright
	@# drives Debian's build).
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium (browser tests of the handouts and the meeting console)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "warning: could not install chromium; the browser tests skip (fail under CI=true)"; \
	else echo "note: install Chromium (Debian: chromium) for the browser tests"; fi
	@# A Java runtime, for the KPI definitions on a local Spark (pip's pyspark needs one).
	@if command -v java >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing openjdk-17-jre-headless (the Spark engine's tests)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null) \
	    || echo "warning: could not install openjdk-17-jre-headless; the Spark tests skip (fail under CI=true)"; \
	else echo "note: install a Java runtime (Debian: openjdk-17-jre-headless) for the Spark tests"; fi
	@# PostgreSQL, for the store's tests on a real server (the tests start their own).
	@if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing postgresql (the store's tests on a real server)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
	    || echo "warning: could not install postgresql; its store tests skip (fail under CI=true)"; \
	else echo "note: install PostgreSQL (Debian: postgresql) for the store's server tests"; fi

demo: install
	$(BIN)/meeting demo $(ARGS)

run: install
	$(BIN)/meeting run $(ARGS)

# The gates, fastest first: lint, format, types; then the whole suite (which also checks
# the import layers and that notebooks are committed clean).
test: install check
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(ARGS)

check: install
	$(BIN)/ruff check meetinglib tests benchmarks
	$(BIN)/ruff format --check meetinglib tests benchmarks
	$(BIN)/mypy

lint: check

format: install
	$(BIN)/ruff format meetinglib tests benchmarks
	$(BIN)/ruff check --fix meetinglib tests benchmarks

# Jupyter refuses to run as root without --allow-root (containers, CI machines).
lab: install
	$(BIN)/jupyter lab --notebook-dir=notebooks \
	  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(ARGS)

# The engine benchmark: sample-data, run and the floor at 20k, 1M and 5M orders a week
# (ARGS="--sizes 20000 200000" for others). The other benchmarks: benchmarks/README.md.
bench: install
	$(BIN)/python benchmarks/bench_engine.py $(ARGS)

clean:
	rm -rf $(VENV) outputs/*/ outputs/.*staging* data/sample .pytest_cache
