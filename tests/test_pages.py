"""The front doors without a browser: content negotiation at /, the form built from the schema,
the docs pages pointing only at vendored assets, and those assets as recorded."""

from __future__ import annotations

import hashlib
import html
import re
from html.parser import HTMLParser

import pytest

from heart.schema import FEATURES
from heart.serving.pages import STATIC_DIR, render_page, wants_html

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


@pytest.mark.parametrize(
    "accept, html",
    [
        (None, False),
        ("*/*", False),
        ("application/json", False),
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("text/html;q=0.5, application/json", False),
        ("application/json;q=0.5, text/html", True),
        ("text/html;q=0", False),
        ("text/html;q=abc", False),
    ],
)
def test_wants_html(accept, html):
    assert wants_html(accept) is html


def test_root_is_json_for_curl_and_the_page_for_browsers(client, loaded):
    for headers in ({}, {"accept": "*/*"}, {"accept": "application/json"}):
        r = client.get("/", headers=headers)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        body = r.json()
        assert body["model_version"] == loaded.version and body["docs"] == "/docs" and body["status"] == "ready"
        assert "Accept" in r.headers["vary"]
    r = client.get("/", headers={"accept": BROWSER_ACCEPT})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Not a medical device" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]


class Form(HTMLParser):
    """Collects the form controls, labels, option values and every URL the page refers to."""

    def __init__(self):
        super().__init__()
        self.controls, self.labels, self.options, self.urls = {}, set(), {}, []
        self._select = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href", "action"):
            if key in a:
                self.urls.append(a[key])
        if tag in ("input", "select"):
            self.controls[a["id"]] = a
            self._select = a["name"] if tag == "select" else None
            if tag == "select":
                self.options[a["name"]] = []
        elif tag == "option" and self._select:
            self.options[self._select].append(a["value"])
        elif tag == "label":
            self.labels.add(a.get("for"))


def test_the_form_is_the_schema():
    page = render_page()
    form = Form()
    form.feed(page)
    assert sorted(form.controls) == sorted(f"f-{f.name}" for f in FEATURES)
    assert set(form.controls) <= form.labels  # every input has a <label for=...>
    for f in FEATURES:
        control = form.controls[f"f-{f.name}"]
        if f.kind == "continuous":
            assert control["type"] == "number"
            assert float(control["min"]) == f.low and float(control["max"]) == f.high
            assert control["step"] == ("1" if f.integer else "any")
        else:  # canonical codes only, plus blank (unknown); no legacy sentinels such as ca=4, thal=0
            assert form.options[f.name] == [""] + [str(c) for c in sorted(f.codes)]
            assert not set(map(str, f.missing_codes)) & set(form.options[f.name])
        assert html.escape(f.description) in page and (not f.unit or f.unit in page)
    assert form.options["ca"] == ["", "0", "1", "2", "3"] and form.options["thal"] == ["", "1", "2", "3"]
    assert "novalidate" in page  # the API is the one validator, so its messages are what people see


def test_the_page_loads_nothing_from_elsewhere():
    form = Form()
    form.feed(render_page())
    assert form.urls and all(u.startswith("/") and not u.startswith("//") for u in form.urls), form.urls
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", render_page())
    assert not re.search(r"\bfetch\(\s*['\"]https?:", render_page())


@pytest.mark.parametrize(
    "path, asset",
    [
        ("/docs", "/static/swagger-ui/swagger-ui-bundle.js"),
        ("/docs", "/static/swagger-ui/swagger-ui.css"),
        ("/redoc", "/static/redoc/redoc.standalone.js"),
    ],
)
def test_docs_pages_use_the_vendored_assets(client, path, asset):
    r = client.get(path)
    assert r.status_code == 200
    assert asset in r.text
    assert not re.search(r"https?://", r.text)  # no CDN, no Google fonts, no remote favicon
    assert "default-src 'self'" in r.headers["content-security-policy"]
    served = client.get(asset)
    assert served.status_code == 200
    assert served.content == (STATIC_DIR / asset.removeprefix("/static/")).read_bytes()


def test_the_docs_pages_stay_out_of_the_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/docs" not in paths and "/redoc" not in paths and "/static" not in paths
    assert set(paths["/"]["get"]["responses"]["200"]["content"]) == {"application/json", "text/html"}


def test_vendored_files_match_their_recorded_sha256():
    readme = (STATIC_DIR / "README.md").read_text()
    recorded = dict(
        reversed(line.split(" ", 1))
        for line in readme.split("## sha256")[1].splitlines()
        if re.fullmatch(r"[0-9a-f]{64} \S+", line)
    )
    assert len(recorded) == 8
    for name, digest in recorded.items():
        assert hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest() == digest, name
    for licence in ("swagger-ui/LICENSE", "swagger-ui/NOTICE", "redoc/LICENSE"):
        assert licence in recorded
    assert "5.35.0" in readme and "2.5.4" in readme  # the versions the table names are the files' own
    assert 'PACKAGE_VERSION:"5.35.0"' in (STATIC_DIR / "swagger-ui/swagger-ui-bundle.js").read_text()
    assert 'const Hw="2.5.4"' in (STATIC_DIR / "redoc/redoc.standalone.js").read_text()


def test_required_features_are_marked():
    form = Form()
    form.feed(render_page())
    for f in FEATURES:
        assert (form.controls[f"f-{f.name}"].get("aria-required") == "true") is f.required, f.name
