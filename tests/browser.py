"""Debian's Chromium, headless, driven by Playwright, with the network closed to every host but 127.0.0.1.

Every request the page makes goes through a route handler: to 127.0.0.1 it goes on, to any
other host it is aborted and recorded, so a test fails on it (a proxy flag pointing at a dead
port catches anything the handler would not see). Failed requests and HTTP errors are
recorded too. A missing browser is a test failure that says how to install it, not a skip.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=http://127.0.0.1:9",
]
LOCAL_SCHEMES = ("data", "blob", "file", "about")


@dataclass
class NetworkLog:
    """What the page asked for: refused = requests to another host; failed = errors and 4xx/5xx."""

    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    served: list[str] = field(default_factory=list)

    def assert_clean(self, expected_failures: tuple[str, ...] = ()):
        assert self.refused == [], f"the page tried to reach other hosts: {self.refused}"
        unexpected = [f for f in self.failed if not any(e in f for e in expected_failures)]
        assert unexpected == [], f"failed requests: {unexpected}"


def _allowed(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or parts.hostname == "127.0.0.1"


@contextmanager
def browser():
    """One headless Chromium (Playwright gives it a fresh temporary profile)."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make browser` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


@contextmanager
def guarded_page(chromium, viewport=(1100, 900)):
    """A new page whose every request is checked; yields (page, NetworkLog)."""
    log = NetworkLog()
    context = chromium.new_context(viewport={"width": viewport[0], "height": viewport[1]}, service_workers="block")

    def route(r):
        if _allowed(r.request.url):
            r.continue_()
        else:
            log.refused.append(r.request.url)
            r.abort("blockedbyclient")

    context.route("**/*", route)
    page = context.new_page()
    page.on("requestfailed", lambda req: log.failed.append(f"{req.url}: {req.failure}"))
    page.on(
        "response", lambda res: (log.failed if res.status >= 400 else log.served).append(f"{res.url}: {res.status}")
    )
    try:
        yield page, log
    finally:
        context.close()
