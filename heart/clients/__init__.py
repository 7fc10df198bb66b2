"""The API's callers: client (contract-checking calls, retries, summary) and harness (start and
stop the server process, run Locust headless). They import heart.serving.contract, never the app."""
