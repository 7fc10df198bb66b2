"""The docs and the page at / in a real browser (headless Chromium), against a real server, network closed.

What a person sees is checked against what the API answers: the risk shown equals /predict's
probability to the shown precision, a blank field is reported as imputed, and an
out-of-range value gets the API's own message beside its field.
"""

from __future__ import annotations

import math

import httpx
import pytest

from heart.clients.harness import ApiServer
from heart.samples import sample
from heart.schema import BY_NAME, FEATURE_NAMES
from tests.browser import browser, guarded_page


@pytest.fixture(scope="module")
def server(model_path, tmp_path_factory):
    with ApiServer(model_path, log=tmp_path_factory.mktemp("server") / "server.log") as s:
        yield s


@pytest.fixture(scope="module")
def chromium():
    with browser() as b:
        yield b


def as_codes(row) -> dict:
    """A patient as the form's controls take it: schema codes (gender 0/1), integers where integral."""
    return {n: (int(row[n]) if BY_NAME[n].discrete or BY_NAME[n].integer else float(row[n])) for n in FEATURE_NAMES}


@pytest.fixture(scope="module")
def first_row(dataset):
    """The first patient of data/data.csv, as schema codes (the loader maps 'male' to 1)."""
    row = dataset.X.iloc[0]
    assert not row.isna().any()
    return as_codes(row)


def fill(page, patient: dict):
    for name in FEATURE_NAMES:
        value = patient.get(name)
        text = "" if value is None else str(value)
        if BY_NAME[name].discrete:
            page.select_option(f"#f-{name}", value=text)
        else:
            page.fill(f"#f-{name}", text)


def submit_with_keyboard(page):
    page.focus("button[type=submit]")
    page.keyboard.press("Enter")


def explain_on_the_page(page, url: str, patient: dict) -> None:
    """The page opened, the form filled with `patient` and sent, its result shown."""
    page.goto(url + "/")
    fill(page, patient)
    submit_with_keyboard(page)
    page.locator("#result").wait_for(state="visible")


def shown_percent(page) -> float:
    text = page.inner_text("#risk")
    assert text.endswith("%"), text
    return float(text[:-1])


def test_docs_show_the_predict_operation_offline(server, chromium):
    with guarded_page(chromium) as (page, net):
        page.goto(server.url + "/docs")
        op = page.locator('.opblock-summary-path[data-path="/predict"]')
        op.first.wait_for(timeout=20_000)
        assert "Predict one patient" in page.inner_text("#swagger-ui")
        net.assert_clean()
        assert any("/static/swagger-ui/swagger-ui-bundle.js: 200" in s for s in net.served)
    with guarded_page(chromium) as (page, net):
        page.goto(server.url + "/redoc")
        page.locator("h2", has_text="Predict one patient").first.wait_for(timeout=20_000)
        # ReDoc's bundle always asks for Redocly's logo from its CDN; the page's CSP stops it in the
        # browser ("csp"), so it never reaches the network (net.refused stays empty).
        net.assert_clean(expected_failures=("https://cdn.redoc.ly/redoc/logo-mini.svg: csp",))
        assert any("/static/redoc/redoc.standalone.js: 200" in s for s in net.served)


def test_page_shows_the_same_risk_as_predict(server, chromium, first_row):
    predicted = httpx.post(server.url + "/predict", json=first_row).json()
    card = httpx.get(server.url + "/model").json()
    with guarded_page(chromium) as (page, net):
        page.goto(server.url + "/")
        assert page.inner_text("h1").startswith("Heart-disease risk")
        assert "Not a medical device" in page.inner_text(".notice")
        page.locator("#served-version", has_text=card["model_version"]).wait_for()
        fill(page, first_row)
        submit_with_keyboard(page)
        page.locator("#result").wait_for(state="visible")
        shown = shown_percent(page)
        assert math.isclose(shown, 100 * predicted["probability"], abs_tol=0.05 + 1e-9), (shown, predicted)
        assert page.inner_text("#label") == predicted["label"]
        assert page.inner_text("#model-version") == card["model_version"]
        assert "Nothing was imputed" in page.inner_text("#imputed")
        cp = BY_NAME["cp"].codes[first_row["cp"]]
        assert page.inner_text("#bars tr[data-feature=cp] td.value") == f"{first_row['cp']}: {cp}"
        assert page.evaluate("document.activeElement.id") == "result-title"  # focus moves to the result
        rows = page.locator("#bars tr")
        assert rows.count() == 13
        features = [rows.nth(i).get_attribute("data-feature") for i in range(13)]
        assert sorted(features) == sorted(FEATURE_NAMES)
        points = [float(rows.nth(i).locator("td").nth(1).inner_text().replace("−", "-")) for i in range(13)]
        assert points == sorted(points, reverse=True)  # signed and sorted, largest push up first
        assert any(p > 0 for p in points) and any(p < 0 for p in points)
        ups = page.locator("#bars .bar.up").count()
        assert ups == sum(p >= 0 for p in points)
        assert page.get_attribute("a[href='/model']", "href") == "/model"
        net.assert_clean()


def test_a_blank_field_is_shown_as_imputed(server, chromium, first_row):
    patient = {**first_row, "chol": None, "thal": None}
    expected = httpx.post(server.url + "/predict", json={k: v for k, v in patient.items() if v is not None}).json()
    assert sorted(expected["imputed"]) == ["chol", "thal"]
    with guarded_page(chromium) as (page, net):
        explain_on_the_page(page, server.url, patient)
        imputed = page.inner_text("#imputed")
        assert "Serum cholesterol (chol)" in imputed and "Thallium stress test (thal)" in imputed
        assert "Resting systolic" not in imputed
        assert "imputed" in page.inner_text("#bars tr[data-feature=chol]")
        assert "imputed" not in page.inner_text("#bars tr[data-feature=age]")
        assert math.isclose(shown_percent(page), 100 * expected["probability"], abs_tol=0.05 + 1e-9)
        net.assert_clean()


def test_an_out_of_range_value_shows_the_api_message_beside_its_field(server, chromium, first_row):
    patient = {**first_row, "chol": 900}
    answer = httpx.post(server.url + "/explain", json=patient)
    assert answer.status_code == 422
    message = answer.json()["detail"][0]["msg"]
    assert "chol" in message and "800" in message
    with guarded_page(chromium) as (page, net):
        page.goto(server.url + "/")
        fill(page, patient)
        submit_with_keyboard(page)
        shown = "Serum cholesterol" + message.removeprefix("chol")  # the field's label, not its JSON name
        page.locator("#e-chol", has_text=shown).wait_for()
        assert page.inner_text("#e-chol") == shown
        assert page.get_attribute("#f-chol", "aria-invalid") == "true"
        assert page.inner_text("#e-age") == "" and page.get_attribute("#f-age", "aria-invalid") is None
        assert page.evaluate("document.activeElement.id") == "f-chol"
        assert page.locator("#result").is_hidden()
        net.assert_clean(expected_failures=("/explain: 422",))
        # fixing the field clears the message on the next submit
        page.fill("#f-chol", "233")
        submit_with_keyboard(page)
        page.locator("#result").wait_for(state="visible")
        assert page.inner_text("#e-chol") == ""


def test_a_missing_sex_is_named_by_its_label(server, chromium, first_row):
    """The API says "gender is required: ..."; beside the "Sex" field the page says "Sex is required: ..."."""
    message = httpx.post(server.url + "/explain", json={"age": 50}).json()["detail"][0]["msg"]
    assert message.startswith("gender is required")
    with guarded_page(chromium) as (page, net):
        page.goto(server.url + "/")
        fill(page, {**first_row, "gender": None})
        submit_with_keyboard(page)
        page.locator("#e-gender", has_text="Sex is required").wait_for()
        assert page.inner_text("#e-gender") == "Sex" + message.removeprefix("gender")
        assert page.inner_text("label[for=f-gender]").startswith("Sex")
        net.assert_clean(expected_failures=("/explain: 422",))


@pytest.mark.parametrize("side", ["below", "at or above"])
def test_the_result_states_the_threshold_that_decided_the_class(server, chromium, side, card_threshold):
    """A 45% risk is "no heart disease" because the card's threshold is 50%: the page says so."""
    patient = patient_on_side(server.url, card_threshold, below=side == "below")
    answer = httpx.post(server.url + "/explain", json=patient).json()
    assert answer["threshold"] == card_threshold
    with guarded_page(chromium) as (page, net):
        explain_on_the_page(page, server.url, patient)
        text = page.inner_text("#decision")
        assert f" is {side} the decision threshold of {100 * card_threshold:.1f}% (the model card's)" in text
        assert f"The estimate, {page.inner_text('#risk')}," in text
        assert page.inner_text("#label") == ("heart disease" if side != "below" else "no heart disease")
        net.assert_clean()


@pytest.fixture(scope="module")
def card_threshold(server):
    return httpx.get(server.url + "/model").json()["threshold"]


def patient_on_side(url: str, threshold: float, below: bool) -> dict:
    """A sampled patient whose risk is within 15 points of the threshold, on the side asked for."""
    frame = sample(200, seed=3)
    records = [as_codes(row) for _, row in frame.iterrows()]
    predictions = httpx.post(url + "/predict/batch", json={"instances": records}).json()["predictions"]
    for record, p in zip(records, predictions):
        if (p["probability"] < threshold) == below and abs(p["probability"] - threshold) < 0.15:
            return record
    raise AssertionError("no sampled patient near the threshold on that side")


def test_with_tokens_the_page_asks_for_one_and_then_answers(model_path, tmp_path, chromium, first_row):
    """Deny by default: the page and its assets are public, /explain behind it is not."""
    env = {"API_TOKENS": "page-token", "OTEL_EXPORTER_OTLP_ENDPOINT": None, "OTEL_TRACES_EXPORTER": None}
    with ApiServer(model_path, log=tmp_path / "server.log", ready_timeout=90, extra_env=env) as secured:
        version = httpx.get(secured.url + "/ready_check").json()["model_version"]
        with guarded_page(chromium) as (page, net):
            page.goto(secured.url + "/")
            page.locator("#served-version", has_text=version).wait_for()  # from the public /ready_check
            assert page.locator("#token-field").is_hidden()
            fill(page, first_row)
            submit_with_keyboard(page)
            page.locator("#token-field").wait_for(state="visible")
            assert "requires an API token" in page.inner_text("#status")
            assert page.evaluate("document.activeElement.id") == "f-token"
            page.fill("#f-token", "page-token")
            submit_with_keyboard(page)
            page.locator("#result").wait_for(state="visible")
            assert page.inner_text("#model-version") == version
            net.assert_clean(expected_failures=("/explain: 401",))
