# One target per task. `make run` and `make test` are the two commands in readme.md.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
REQS   := requirements-serve.txt requirements-explain.txt requirements-build.txt requirements.txt requirements-dev.txt
STAMP  := $(VENV)/.installed-$(shell cat $(REQS) pyproject.toml | sha256sum | cut -c1-12)
MODEL  ?= model.zip
DATA   ?= data/data.csv

.PHONY: help install install-tools lint format run train test clean serve bench batch load timeouts fairness explain drift poisoning analyses report browser docker-build docker-run container-check mutation

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

browser:  ## Debian's chromium for the browser tests (tests/test_browser.py), installed with apt if missing
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

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

test: $(STAMP) install-tools browser  ## install and run the whole test suite
	$(PY) -m pytest

# promtool (tests/test_monitoring.py) ships in Debian's prometheus package; sudo when not root.
install-tools:  ## install the non-Python test tools: promtool (apt-get install prometheus)
	@command -v promtool >/dev/null || { \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo -E) apt-get install -y -qq --no-install-recommends prometheus; }
	@promtool --version | head -1

serve: $(MODEL)  ## serve the API (HOST, PORT, WEB_CONCURRENCY, LOG_LEVEL, PREDICTION_LOG, LOG_INPUTS from the env)
	MODEL_SHA256=$${MODEL_SHA256:-$$($(PIN))} $(PY) heart_fastapi.py --model-path $(MODEL)

BASELINE ?=

bench: $(MODEL)  ## benchmark the API against a bare endpoint and the original style with wrk, then in process; table -> docs/performance.md
	command -v wrk >/dev/null || { $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq wrk; }
	$(PY) -m bench.bench --model-path $(MODEL) --docs docs/performance.md $(if $(BASELINE),--baseline $(BASELINE))
	$(PY) -m bench.breakdown --model-path $(MODEL) --docs docs/performance.md

clean:  ## remove the virtual environment, model and reports
	rm -rf $(VENV) $(MODEL) $(basename $(MODEL)).card.json reports .pytest_cache

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

REPORT_HTML = $(PY) -m heart.analyses.html_report --reports $(REPORTS) --card $(basename $(MODEL)).card.json

analyses: fairness explain drift poisoning  ## run all four analyses, then write reports/index.html
	$(REPORT_HTML)

report: $(STAMP)  ## one self-contained HTML page of the analyses already run -> reports/index.html
	$(REPORT_HTML)

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
