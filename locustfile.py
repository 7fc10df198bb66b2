"""Load test of the prediction API: locust -f locustfile.py [--headless -u 50 -r 10 -t 30s]

Each simulated user mostly posts one schema-generated patient to /predict, sometimes a small
batch to /predict/batch, and now and then asks /ready_check. Every response's shape is
checked with the same rules as batch_predict.py (heart.clients.client); a wrong one counts as a
failure. Host defaults to http://localhost:8000 (--host overrides). Extra options below
(also in the web UI): --request-timeout, --wait-min/--wait-max, --batch-rows, --sampling,
--pool-size, --seed, --data, --summary-json. An API that requires a bearer token
(API_AUTH=tokens) gets the one in the environment variable API_TOKEN.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import gevent
from locust import HttpUser, events, task

from heart.analyses.report import write_json
from heart.clients.client import TOKEN_ENV, auth_headers, batch_problem, prediction_problem, ready_problem
from heart.clients.harness import cpu_seconds, locust_summary
from heart.samples import MODES, sample, to_records
from heart.serving.contract import MAX_BATCH

ROOT = Path(__file__).resolve().parent

DEFAULTS = dict(
    request_timeout=10.0,
    wait_min=0.1,
    wait_max=0.5,
    batch_rows=20,
    sampling="uniform",
    pool_size=2000,
    seed=0,
    data=str(ROOT / "data" / "data.csv"),
)


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULTS["request_timeout"],
        env_var="LOCUST_REQUEST_TIMEOUT",
        help="seconds before a request counts as a timeout failure",
    )
    parser.add_argument(
        "--wait-min",
        type=float,
        default=DEFAULTS["wait_min"],
        env_var="LOCUST_WAIT_MIN",
        help="shortest think time between a user's requests (s)",
    )
    parser.add_argument(
        "--wait-max",
        type=float,
        default=DEFAULTS["wait_max"],
        env_var="LOCUST_WAIT_MAX",
        help="longest think time between a user's requests (s)",
    )
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=DEFAULTS["batch_rows"],
        env_var="LOCUST_BATCH_ROWS",
        help=f"patients per /predict/batch request (1..{MAX_BATCH})",
    )
    parser.add_argument(
        "--sampling",
        choices=MODES,
        default=DEFAULTS["sampling"],
        env_var="LOCUST_SAMPLING",
        help="uniform over the schema's typical ranges, or the training data's marginals",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=DEFAULTS["pool_size"],
        env_var="LOCUST_POOL_SIZE",
        help="random patients drawn once and reused by every user",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULTS["seed"], env_var="LOCUST_SEED", help="seed of the patient pool"
    )
    parser.add_argument(
        "--data",
        default=DEFAULTS["data"],
        env_var="LOCUST_DATA",
        help="training CSV that --sampling marginal draws from",
    )
    parser.add_argument(
        "--summary-json",
        default="",
        env_var="LOCUST_SUMMARY_JSON",
        include_in_web_ui=False,
        help="write the run's final figures (p50/p95/p99, failures, timeouts) to this JSON file",
    )


_cpu_at_start: list[float] = []


@events.test_start.add_listener
def _note_cpu(environment, **_):
    _cpu_at_start[:] = [cpu_seconds()]


@events.quitting.add_listener
def _write_summary(environment, **_):
    """Locust's CSV lags up to a second behind; this is the final state, read at quit."""
    path = getattr(environment.parsed_options, "summary_json", "") if environment.parsed_options else ""
    if path:
        cpu = cpu_seconds() - _cpu_at_start[0] if _cpu_at_start else float("nan")
        write_json(path, locust_summary(environment.stats, client_cpu_s=cpu))


_pools: dict[tuple, list[dict]] = {}


def patients(opts) -> list[dict]:
    """The shared patient pool, drawn once per (mode, size, seed) from heart.samples."""
    key = (opts["sampling"], opts["pool_size"], opts["seed"], opts["data"])
    if key not in _pools:
        reference = None
        if opts["sampling"] == "marginal":
            from heart.data import load_dataset

            reference = load_dataset(opts["data"]).X
        _pools[key] = to_records(
            sample(opts["pool_size"], seed=opts["seed"], mode=opts["sampling"], reference=reference)
        )
    return _pools[key]


class PatientUser(HttpUser):
    """A client of the API: predictions most of the time, batches and readiness checks rarely."""

    host = "http://localhost:8000"

    def on_start(self):
        parsed = self.environment.parsed_options
        self.opts = {k: getattr(parsed, k, v) if parsed is not None else v for k, v in DEFAULTS.items()}
        self.pool = patients(self.opts)
        self.client.headers.update(auth_headers(os.environ.get(TOKEN_ENV)))  # API_AUTH=tokens

    def wait_time(self):
        return random.uniform(self.opts["wait_min"], max(self.opts["wait_min"], self.opts["wait_max"]))

    def _check(self, resp, problem):
        """Mark a 2xx with the wrong shape as failed; errors and non-2xx fail on their own."""
        if resp.status_code and 200 <= resp.status_code < 300:
            try:
                why = problem(resp.json())
            except ValueError:
                why = "the body is not JSON"
            if why:
                resp.failure(f"bad response: {why}")

    @task(16)
    def predict(self):
        with self.client.post(
            "/predict", json=random.choice(self.pool), catch_response=True, timeout=self.opts["request_timeout"]
        ) as resp:
            self._check(resp, prediction_problem)

    @task(2)
    def predict_batch(self):
        rows = random.sample(self.pool, min(self.opts["batch_rows"], len(self.pool)))
        with self.client.post(
            "/predict/batch", json={"instances": rows}, catch_response=True, timeout=self.opts["request_timeout"]
        ) as resp:
            self._check(resp, lambda body: batch_problem(body, len(rows)))

    @task(1)
    def ready(self):
        with self.client.get("/ready_check", catch_response=True, timeout=self.opts["request_timeout"]) as resp:
            self._check(resp, ready_problem)


# Importing the package (pandas, sklearn) takes seconds, and gevent's loop clock is cached:
# without a refresh, Locust's --run-time timer would start that many seconds in the past.
gevent.get_hub().loop.update_now()
