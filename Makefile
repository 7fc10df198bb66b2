# One target per task. `make run` and `make test` are the two commands in readme.md.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
REQS   := requirements-serve.txt requirements-explain.txt requirements-build.txt requirements.txt requirements-dev.txt
STAMP  := $(VENV)/.installed-$(shell cat $(REQS) pyproject.toml | sha256sum | cut -c1-12)
MODEL  ?= model.zip
DATA   ?= data/data.csv
# Tools whose dependencies would clash with .venv's pins (checkov): their own venv.
TOOLS_VENV  ?= .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed-$(shell sha256sum requirements-tools.txt | cut -c1-12)
# apt-get as root, or through sudo when not root (a CI runner's user); the environment variable is
# passed by `env` so that sudo's env_reset does not drop it.
SUDO    := $(if $(filter 0,$(shell id -u)),,sudo)
APT_GET := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: help install install-tools lint format run train test clean serve bench batch load timeouts fairness explain drift poisoning performance analyses report smoke docs browser docker-build docker-run container-check mutation

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

# The pinned requirements first, then the package itself (editable, --no-deps: the pins rule).
$(STAMP): $(REQS) pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv, install the pinned requirements and the package (editable)

lint: $(STAMP)  ## ruff check and ruff format --check (configuration in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## ruff format the tree and apply ruff's safe fixes (import order)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

browser:  ## Debian's chromium for the browser tests (tests/test_browser.py), installed with apt if missing (sudo when not root)
	@command -v chromium >/dev/null || { $(APT_GET) update -qq && $(APT_GET) install -y -qq chromium; }

$(MODEL): $(STAMP) $(DATA)
	$(PY) train.py --data $(DATA) --out $(MODEL)

train: $(STAMP)  ## train on data/data.csv and write model.zip + model.card.json
	$(PY) train.py --data $(DATA) --out $(MODEL)

# The pin `make run` and `make serve` pass: the sha256 train.py wrote in the card, i.e. your own
# model on your own disk (MODEL_SHA256 in the environment wins; docs/security.md).
PIN = $(PY) -c "import json; print(json.load(open('$(basename $(MODEL)).card.json'))['artifact']['sha256'])"

run: $(MODEL)  ## set everything up, train if there is no model, show the model card, serve on :8000
	$(PY) -c "import json; c = json.load(open('$(basename $(MODEL)).card.json')); print(json.dumps({k: c[k] for k in ('model_version', 'data', 'metrics')}, indent=2))"
	MODEL_SHA256=$${MODEL_SHA256:-$$($(PIN))} $(PY) heart_fastapi.py --model-path $(MODEL)

# Four workers on two cores: many tests wait on a server or a subprocess (docs/testing.md, "Speed").
TEST_WORKERS ?= 4

test: $(STAMP) install-tools browser  ## install and run the whole test suite (TEST_WORKERS=0: in one process)
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=10

# The non-Python test tools, each installed only if missing; apt through sudo when not root.
# promtool (tests/test_monitoring.py) ships in Debian's prometheus package. kubectl (its `kustomize`
# renders the overlays in tests/test_overlays.py) is the apt package `kubectl` of the Kubernetes or
# Google Cloud apt repository: GitHub's runners and this project's machines come with it; elsewhere
# add one of those repositories first (docs/deploy.md, "From zero to a cluster"). checkov goes into
# its own venv (requirements-tools.txt). PostgreSQL's server binaries (Debian's `postgresql`: initdb
# and pg_ctl under /usr/lib/postgresql/VERSION/bin) for the inference table's tests, which start
# their own server (tests/postgres.py); the cluster the package may start is not used.
install-tools: $(TOOLS_STAMP)  ## install the non-Python test tools: promtool, kubectl, PostgreSQL (apt) and checkov (.venv-tools)
	@command -v promtool >/dev/null || { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends prometheus; }
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || { $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends postgresql; }
	@command -v kubectl >/dev/null || { $(APT_GET) update -qq && $(APT_GET) install -y -qq kubectl; } || { \
	  echo "install-tools: kubectl is missing and apt has no kubectl package: add the Kubernetes apt repository (docs/deploy.md)" >&2; exit 1; }
	@promtool --version | head -1
	@$$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | tail -1 || command -v pg_ctl) --version
	@kubectl version --client 2>/dev/null | grep -i kustomize
	@$(TOOLS_VENV)/bin/checkov --version

$(TOOLS_STAMP): requirements-tools.txt
	test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-tools.txt
	rm -f $(TOOLS_VENV)/.installed-* && touch $@

serve: $(MODEL)  ## serve the API (HOST, PORT, WEB_CONCURRENCY, LOG_LEVEL, PREDICTION_LOG, LOG_INPUTS from the env)
	MODEL_SHA256=$${MODEL_SHA256:-$$($(PIN))} $(PY) heart_fastapi.py --model-path $(MODEL)

BASELINE ?=

bench: $(MODEL)  ## benchmark the API against a bare endpoint and the original style with wrk, then in process; table -> docs/performance.md
	command -v wrk >/dev/null || { $(APT_GET) update -qq && $(APT_GET) install -y -qq wrk; }
	$(PY) -m bench.bench --model-path $(MODEL) --docs docs/performance.md $(if $(BASELINE),--baseline $(BASELINE))
	$(PY) -m bench.breakdown --model-path $(MODEL) --docs docs/performance.md

clean:  ## remove the virtual environments, model and reports
	rm -rf $(VENV) $(TOOLS_VENV) $(MODEL) $(basename $(MODEL)).card.json reports .pytest_cache

API_URL ?= http://localhost:8000/predict
MAX_P95_MS ?= 250

batch: $(STAMP)  ## send 100 random patients to a running API (API_URL) and write batch_prediction_results.json
	API_URL=$(API_URL) $(PY) batch_predict.py

load: $(MODEL)  ## start the API, run Locust headless for 20 s, reports/ CSV + HTML; fail on errors or p95 > MAX_P95_MS
	$(PY) -m bench.load_test --model $(MODEL) --max-p95-ms $(MAX_P95_MS)

timeouts: $(MODEL)  ## request-timeout analysis: 10, 50, 200 users with a 1 s client timeout; table + reports/timeouts.json
	$(PY) -m bench.timeouts --model $(MODEL)

REPORTS ?= reports

fairness: $(MODEL)  ## fairness by gender (Fairlearn, bootstrap CIs, ThresholdOptimizer) -> reports/
	$(PY) fairness_check.py --model $(MODEL) --data $(DATA) --out-dir $(REPORTS)
	$(REPORT_HTML) --section fairness

explain: $(MODEL)  ## SHAP ranking, additivity check, plain-English summary and plots -> reports/
	$(PY) explainability.py --model $(MODEL) --data $(DATA) --out-dir $(REPORTS)
	$(REPORT_HTML) --section explain

drift: $(STAMP) $(DATA)  ## drift of 100 random patients vs the training data (KS / chi-squared) -> reports/
	$(PY) drift_analysis_ks.py --data $(DATA) --out-dir $(REPORTS)
	$(REPORT_HTML) --section drift

poisoning: $(MODEL)  ## label-flip attacks, 0-50% sweep and confident-learning defense -> reports/
	$(PY) data_poisoning.py --model $(MODEL) --data $(DATA) --out-dir $(REPORTS)
	$(REPORT_HTML) --section poisoning

# Needs served predictions: the inference table (default) or LOG, and LABELS if any have come back.
performance: $(STAMP)  ## realized and estimated (CBPE) performance per day from the inference table (or LOG=), LABELS= stored first -> reports/
	$(PY) monitor_performance.py $(if $(LOG),--log $(LOG)) $(if $(LABELS),--labels $(LABELS)) --card $(basename $(MODEL)).card.json --out-dir $(REPORTS)
	$(REPORT_HTML) --section performance

REPORT_HTML = $(PY) -m heart.analyses.html_report --reports $(REPORTS) --card $(basename $(MODEL)).card.json

analyses: fairness explain drift poisoning  ## run all four analyses, then write reports/index.html
	$(REPORT_HTML)

report: $(STAMP)  ## one self-contained HTML page of the analyses already run -> reports/index.html
	$(REPORT_HTML)

# In CI (.ci/run): every command of readme.md and docs/ as a new user types it, in a fresh copy of the tree,
# each within its budget (docs/testing.md, "Smoke"); the wall times go to reports/smoke.json.
smoke: $(STAMP)  ## train, the four analyses, the report, the API + batch_predict.py, test.py: default runs in a fresh copy
	$(PY) -m bench.smoke --out $(REPORTS)/smoke.json

# The docs' generated passages (docs/testing.md, "Generated docs"): every default command in a fresh copy, then cog.
docs: $(STAMP)  ## rewrite the generated passages of readme.md and docs/ (and docs/figures/) from a fresh default run
	$(PY) -m bench.docgen --full

# Container. BASE_IMAGE overrides the Dockerfile's python:3.11-slim (e.g. a local base without a registry).
DOCKER_IMAGE ?= heart-disease-mlops
BASE_IMAGE   ?=

docker-build:  ## build the service's image (docker build -t heart-disease-mlops .)
	docker build $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) -t $(DOCKER_IMAGE) .

docker-run:  ## serve the image on port 8000 (docker run -p 8000:8000 heart-disease-mlops)
	docker run --rm -p 8000:8000 $(DOCKER_IMAGE)

container-check:  ## build, run and check the container without a registry (dockerd + a debootstrapped base)
	bash deploy/container_check.sh

# Mutation testing (docs/testing.md): not in .ci/run, too slow for every stop. One mutmut run per module
# (2 workers of one BLAS/OpenMP thread each: two cores), so a module's results land as soon as it is
# done; a module here must also be in pyproject.toml's [tool.mutmut] only_mutate. Logs in
# reports/mutation-<module>.log.
MUTATION_MODULES ?= schema samples data drift fairness poisoning label_check model artifact fast export decision \
	serving.contract serving.inference

mutation: $(STAMP)  ## mutation testing (mutmut) of MUTATION_MODULES -> reports/mutation.json (hours on 2 cores; MUTATION_MODULES=drift for one)
	@mkdir -p $(REPORTS); start=$$(date +%s); \
	for m in $(MUTATION_MODULES); do \
	  echo "mutmut: heart.$$m"; \
	  OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2 "heart.$$m.*" > $(REPORTS)/mutation-$$m.log 2>&1 || { tail -20 $(REPORTS)/mutation-$$m.log; exit 1; }; \
	done; \
	$(PY) -m bench.mutation_summary --out $(REPORTS)/mutation.json --wall-seconds $$(( $$(date +%s) - start ))
