"""The doors people use: offline API docs at /docs and /redoc, and a page for browsers at /.

Swagger UI and ReDoc load from files vendored under heart/static/ (versions and licences in
heart/static/README.md), so the docs render on a machine without internet. The page at / is
rendered once from heart/schema.py (labels, units, codes, ranges) and served only to clients
that ask for HTML: curl and every other JSON client keep getting the service's JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from ..schema import FEATURES, TARGET, Feature
from ..templates import templates
from .negotiation import weights

HERE = Path(__file__).resolve().parent.parent  # heart/: static/ lives there
STATIC_DIR = HERE / "static"
STATIC_URL = "/static"
DOCS_ASSETS = {
    "swagger_js_url": f"{STATIC_URL}/swagger-ui/swagger-ui-bundle.js",
    "swagger_css_url": f"{STATIC_URL}/swagger-ui/swagger-ui.css",
    "redoc_js_url": f"{STATIC_URL}/redoc/redoc.standalone.js",
    "favicon_url": f"{STATIC_URL}/favicon.svg",
}
# The docs and the page may load only from this service. This also stops the one request the
# vendored ReDoc makes to another host (its "API docs by Redocly" logo): blocked in the
# browser before it leaves, and ReDoc hides the image. Inline script/style: FastAPI's docs
# pages and the page at / carry their own; blob: is ReDoc's search worker.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)


def form_field(f: Feature) -> dict[str, Any]:
    """What the form needs to know about one feature: its control, label, unit, codes or range.

    Only the canonical codes are offered: legacy sentinels (ca=4, thal=0) mean "unknown",
    which the form says with a blank.
    """
    field: dict[str, Any] = {
        "name": f.name,
        "label": f.description,
        "unit": f.unit,
        "required": f.required,
        "rule": f.rule().replace(" (text in any case)", ""),
    }
    if f.kind == "continuous":
        field.update(
            control="number",
            low=f.low,
            high=f.high,
            step="1" if f.integer else "any",
            hint=f"{_num(f.low)} to {_num(f.high)}" + (f" {f.unit}" if f.unit else ""),
        )
    else:
        field.update(control="select", options=[(code, meaning) for code, meaning in sorted(f.codes.items())], hint="")
    return field


def _num(x: float | None) -> str:
    return "" if x is None else (str(int(x)) if float(x).is_integer() else str(x))


def render_page() -> str:
    """The page at /, from the schema; rendered once, at start-up."""
    fields = [form_field(f) for f in FEATURES]
    labels = {f.name: f.description for f in FEATURES}
    meanings = {f.name: {str(code): meaning for code, meaning in f.codes.items()} for f in FEATURES if f.codes}
    classes = {str(code): label for code, label in TARGET.labels.items()}
    return (
        templates()
        .get_template("index.html.j2")
        .render(fields=fields, labels=labels, meanings=meanings, classes=classes)
    )


def wants_html(accept: str | None) -> bool:
    """True when the Accept header prefers text/html to JSON (RFC 9110, 12.5.1).

    Each type's quality is that of the most specific range naming it (text/html over text/* over
    */*); a q that is not a qvalue (q=2, q=inf, q=-1, q=abc) makes its range ignored
    (negotiation.weights). On a tie JSON wins unless HTML is named: browsers name text/html;
    curl sends */* and API clients application/json, and they keep getting JSON.
    """
    ranges = weights(accept)

    def quality(kind: str, subtype: str) -> float:
        for media in (f"{kind}/{subtype}", f"{kind}/*", "*/*"):
            if media in ranges:
                return ranges[media]
        return 0.0

    html, json = quality("text", "html"), quality("application", "json")
    named = "text/html" in ranges or "text/*" in ranges
    return html > 0 and (html > json or (html == json and named))


def install_front_doors(app: FastAPI, about: Callable[[], dict]) -> None:
    """Mount the static assets and add /docs, /redoc and the negotiating root route.

    `about()` is the root's JSON for non-browser clients. The app must be created with
    docs_url=None and redoc_url=None, so that FastAPI's CDN-loading pages are not registered.
    """
    page = render_page()
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _locked(
            get_swagger_ui_html(
                openapi_url=app.openapi_url,
                title=f"{title} - Swagger UI",
                swagger_js_url=DOCS_ASSETS["swagger_js_url"],
                swagger_css_url=DOCS_ASSETS["swagger_css_url"],
                swagger_favicon_url=DOCS_ASSETS["favicon_url"],
                swagger_ui_parameters={"validatorUrl": None},
            )
        )  # no call to validator.swagger.io

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _locked(
            get_redoc_html(
                openapi_url=app.openapi_url,
                title=f"{title} - ReDoc",
                redoc_js_url=DOCS_ASSETS["redoc_js_url"],
                redoc_favicon_url=DOCS_ASSETS["favicon_url"],
                with_google_fonts=False,
            )
        )

    @app.get(
        "/",
        tags=["operations"],
        summary="Service name, version and where the docs are; a web page for browsers",
        responses={
            200: {
                "content": {"text/html": {"schema": {"type": "string"}}},
                "description": "JSON, or the web page when Accept prefers text/html",
            }
        },
    )
    async def root(request: Request) -> Response:
        if wants_html(request.headers.get("accept")):
            return _locked(HTMLResponse(page, headers={"Vary": "Accept"}))
        return JSONResponse(about(), headers={"Vary": "Accept"})


def _locked(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    return response
