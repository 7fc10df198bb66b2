"""The request/response contract (heart/serving/contract.py) without a server or a model.

Fast value tests: each validator, the OpenAPI fragment of each feature, the alias clash,
the batch limits and the response checks, with the exact words a client reads. The expected
messages and schemas are written out from heart/schema.py's declaration (ranges, units, codes),
not copied from the code's output. The end-to-end checks through the app are in
test_serving_api.py and test_serving_legacy.py.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

import heart.serving.contract as contract
from heart.schema import BY_NAME, FEATURE_NAMES, Feature
from heart.serving.contract import (
    EXAMPLE,
    MAX_BATCH,
    Batch,
    LegacyCode,
    Patient,
    PredictionResult,
    _check_legacy,
    _error,
    _is_clash,
    _json_schema,
    _name_alias_clashes,
    _PatientBody,
    _validator,
    build_patient_model,
)

AGE_RULE = "an integer from 1 to 120 years"
GENDER_RULE = "one of 0, 1, 'female', 'male'"
CHOL_RULE = "a number from 50 to 800 mg/dl"
OLDPEAK_RULE = "a number from -5 to 10 mm"
CA_RULE = "one of 0, 1, 2, 3"


def refused(name: str, value) -> PydanticCustomError:
    """The error a fresh validator of feature `name` raises for `value`."""
    with pytest.raises(PydanticCustomError) as e:
        _validator(BY_NAME[name])(value)
    return e.value


def errors_of(model, data) -> list[dict]:
    with pytest.raises(ValidationError) as e:
        model.model_validate(data)
    return e.value.errors(include_url=False)


# ------------------------------------------------------------------------------- _error


def test_an_error_carries_its_kind_and_the_message_as_is():
    e = _error("schema_rule", "age must be {braces} kept")
    assert e.type == "schema_rule"
    assert e.message() == "age must be {braces} kept" and str(e) == "age must be {braces} kept"
    assert e.message_template == "{message}" and e.context == {"message": "age must be {braces} kept"}


# ----------------------------------------------------------------------- the validators


@pytest.mark.parametrize("value,expected", [(1, 1.0), (120, 120.0), (63, 63.0), (63.0, 63.0), (1.0, 1.0)])
def test_age_accepts_integers_from_1_to_120_as_floats(value, expected):
    got = _validator(BY_NAME["age"])(value)
    assert got == expected and type(got) is float  # the model gets floats, never ints or LegacyCodes


@pytest.mark.parametrize("value,shown", [(0, "0"), (121, "121"), (-1, "-1"), (0.5, "0.5"), (63.5, "63.5")])
def test_age_outside_1_to_120_or_not_whole_is_a_schema_rule_error(value, shown):
    e = refused("age", value)
    assert e.type == "schema_rule" and e.message() == f"age must be {AGE_RULE}, got {shown}"


@pytest.mark.parametrize("value,expected", [(-5, -5.0), (10, 10.0), (2.3, 2.3), (-4.9, -4.9), (0, 0.0)])
def test_oldpeak_takes_any_number_from_minus_5_to_10(value, expected):
    got = _validator(BY_NAME["oldpeak"])(value)
    assert got == expected and type(got) is float


@pytest.mark.parametrize(
    "name,values",
    [
        ("age", [1, 120, 63, 63.0]),
        ("oldpeak", [-5, 10, -5.0, 10.0, 2.3]),
        ("chol", [50, 800]),
        ("gender", [0, 1, 1.0]),
        ("ca", [0, 3, 4, 4.0]),
        ("thal", [0, 1, 3]),
    ],
)
def test_a_valid_number_takes_the_hot_path_only(monkeypatch, name, values):
    """The docstring's promise: a valid JSON number (limits included) costs one comparison chain,
    never the slow path that words errors."""

    def slow_path(*args):
        raise AssertionError(f"slow path taken for {args[1]!r}")

    monkeypatch.setattr(contract, "_slow_path", slow_path)
    validate = _validator(BY_NAME[name])
    assert [validate(v) for v in values] == [float(v) for v in values]
    with pytest.raises(AssertionError, match="slow path taken for 'male'"):
        validate("male")  # text always goes the slow way


@pytest.mark.parametrize("value,shown", [(-5.1, "-5.1"), (10.01, "10.01"), (11, "11"), (-6, "-6")])
def test_oldpeak_just_outside_its_limits_is_refused(value, shown):
    e = refused("oldpeak", value)
    assert e.type == "schema_rule" and e.message() == f"oldpeak must be {OLDPEAK_RULE}, got {shown}"


def test_a_continuous_feature_refuses_a_code_outside_its_range_even_if_it_is_a_code_elsewhere():
    # 1 is a valid code of gender: the continuous branch must not fall back on codes
    assert refused("chol", 1).message() == f"chol must be {CHOL_RULE}, got 1"
    assert _validator(BY_NAME["chol"])(50) == 50.0 and _validator(BY_NAME["chol"])(800) == 800.0
    assert refused("chol", 800.5).message() == f"chol must be {CHOL_RULE}, got 800.5"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_a_finite_number_error(value):
    e = refused("chol", value)
    assert e.type == "finite_number" and e.message() == f"chol must be a finite number, {CHOL_RULE}"


def test_an_integer_too_large_for_a_float_is_refused_not_crashed():
    e = refused("chol", 10**400)
    assert e.type == "schema_rule" and e.message() == f"chol must be {CHOL_RULE}, got a number too large"


@pytest.mark.parametrize("value,expected", [(0, 0.0), (1, 1.0), (1.0, 1.0), (0.0, 0.0)])
def test_gender_codes_are_floats(value, expected):
    got = _validator(BY_NAME["gender"])(value)
    assert got == expected and type(got) is float


@pytest.mark.parametrize(
    "text,code", [("male", 1.0), ("MALE", 1.0), ("Male", 1.0), ("female", 0.0), (" Female ", 0.0), ("fEmAlE\n", 0.0)]
)
def test_gender_as_text_in_any_case_and_padding(text, code):
    got = _validator(BY_NAME["gender"])(text)
    assert got == code and type(got) is float


@pytest.mark.parametrize("text", ["robot", "", "m", "males"])
def test_gender_text_that_is_no_code_names_the_rule(text):
    e = refused("gender", text)
    assert e.type == "schema_rule"
    assert e.message() == f"gender must be {GENDER_RULE} (text in any case), got {text!r}"


@pytest.mark.parametrize("value,shown", [(2, "2"), (-1, "-1"), (0.5, "0.5")])
def test_gender_numbers_that_are_no_code(value, shown):
    e = refused("gender", value)
    assert e.type == "schema_rule" and e.message() == f"gender must be {GENDER_RULE}, got {shown}"


@pytest.mark.parametrize(
    "name,value,shown",
    [
        ("gender", True, "bool True"),
        ("fbs", False, "bool False"),
        ("age", [63], "list [63]"),
        ("chol", {"v": 1}, "dict {'v': 1}"),
    ],
)
def test_other_types_are_a_wrong_type_error_naming_the_type(name, value, shown):
    e = refused(name, value)
    assert e.type == "wrong_type" and e.message() == f"{name} must be {BY_NAME[name].rule()}, got {shown}"


@pytest.mark.parametrize("name,text", [("chol", "233"), ("age", "sixty"), ("ca", "4")])
def test_text_for_a_feature_without_text_codes_is_a_wrong_type_error(name, text):
    e = refused(name, text)
    assert e.type == "wrong_type" and e.message() == f"{name} must be {BY_NAME[name].rule()}, not text: got {text!r}"


def test_echoed_inputs_are_cut_to_300_characters():
    long_text = refused("chol", "9" * 1000).message()
    assert len(long_text) == 300 and long_text.startswith(f"chol must be {CHOL_RULE}, not text: got '999")
    long_list = refused("age", [1] * 1000).message()
    assert len(long_list) == 300 and long_list.startswith(f"age must be {AGE_RULE}, got list [1, 1")
    short = refused("chol", "9" * 10).message()  # under the cut: whole
    assert short == f"chol must be {CHOL_RULE}, not text: got '9999999999'"


def test_a_required_feature_cannot_be_null_and_says_its_rule():
    e = refused("age", None)
    assert e.type == "missing" and e.message() == f"age is required and cannot be null: must be {AGE_RULE}"
    e = refused("gender", None)
    assert e.type == "missing" and e.message() == f"gender is required and cannot be null: must be {GENDER_RULE}"


@pytest.mark.parametrize("name", ["chol", "oldpeak", "cp", "ca", "thal"])
def test_an_optional_feature_takes_null(name):
    assert _validator(BY_NAME[name])(None) is None


@pytest.mark.parametrize("name,value", [("ca", 4), ("ca", 4.0), ("thal", 0), ("thal", 0.0)])
def test_a_legacy_code_comes_back_as_a_legacy_code(name, value):
    got = _validator(BY_NAME[name])(value)
    assert type(got) is LegacyCode and got == value and int(got) == int(value)


@pytest.mark.parametrize("name,value", [("ca", 0), ("ca", 3), ("thal", 1), ("thal", 3)])
def test_the_other_codes_of_a_feature_with_a_legacy_code_are_plain_floats(name, value):
    got = _validator(BY_NAME[name])(value)
    assert type(got) is float and got == value


@pytest.mark.parametrize(
    "name,value,rule", [("ca", 5, CA_RULE), ("ca", 4.5, CA_RULE), ("thal", 4, "one of 1, 2, 3"), ("thal", -1, None)]
)
def test_near_misses_of_a_legacy_code_are_refused(name, value, rule):
    e = refused(name, value)
    assert e.type == "schema_rule"
    assert e.message() == f"{name} must be {rule or BY_NAME[name].rule()}, got {value}"


def test_every_code_of_a_categorical_feature_is_accepted_and_one_past_it_is_not():
    for name in ("cp", "restecg", "slope", "fbs", "exang"):
        f = BY_NAME[name]
        validate = _validator(f)
        assert [validate(c) for c in sorted(f.codes)] == [float(c) for c in sorted(f.codes)]
        assert refused(name, max(f.codes) + 1).message() == f"{name} must be {f.rule()}, got {max(f.codes) + 1}"


# --------------------------------------------------------------------- the OpenAPI schema


def test_age_schema_is_a_required_integer_range():
    assert _json_schema(BY_NAME["age"]) == {
        "type": "integer",
        "minimum": 1,
        "maximum": 120,
        "title": "age",
        "description": f"Age (years). Rule: {AGE_RULE}.",
    }


def test_oldpeak_schema_is_an_optional_number_range():
    assert _json_schema(BY_NAME["oldpeak"]) == {
        "anyOf": [{"type": "number", "minimum": -5, "maximum": 10}, {"type": "null"}],
        "title": "oldpeak",
        "description": "ST depression induced by exercise relative to rest (mm). "
        f"Rule: {OLDPEAK_RULE}. Optional: null or omitted is imputed by the model.",
    }


def test_gender_schema_lists_codes_text_spellings_and_the_alias():
    assert _json_schema(BY_NAME["gender"]) == {
        "anyOf": [
            {"type": "integer", "enum": [0, 1]},
            {"type": "string", "enum": ["FEMALE", "Female", "MALE", "Male", "female", "male"]},
        ],
        "title": "gender",
        "description": f"Sex. Rule: {GENDER_RULE}. "
        "Also accepted as sex (the data loader's alias); give one name, not both.",
    }


def test_ca_schema_lists_the_legacy_code_in_the_enum_and_the_description():
    assert _json_schema(BY_NAME["ca"]) == {
        "anyOf": [{"type": "integer", "enum": [0, 1, 2, 3, 4]}, {"type": "null"}],
        "title": "ca",
        "description": f"Major vessels coloured by fluoroscopy. Rule: {CA_RULE}. Legacy code 4 = unknown: "
        "imputed like a null, and named in the response's legacy_codes. "
        "Optional: null or omitted is imputed by the model.",
    }


def test_a_feature_with_several_legacy_codes_aliases_and_text_codes_lists_them_all():
    f = Feature(
        "grade",
        "categorical",
        "Grade",
        codes={2: "b", 1: "a"},
        missing_codes=(9, 8),
        aliases=("level", "rank"),
        text_codes={"Low": 1, "high": 2},
        required=True,
    )
    assert _json_schema(f) == {
        "anyOf": [
            {"type": "integer", "enum": [1, 2, 8, 9]},
            {"type": "string", "enum": ["HIGH", "High", "LOW", "Low", "high"]},
        ],
        "title": "grade",
        "description": "Grade. Rule: one of 2, 1, 'Low', 'high'. Legacy code 9, 8 = unknown: imputed like a null, "
        "and named in the response's legacy_codes. Also accepted as level, rank (the data loader's alias); "
        "give one name, not both.",
    }


def test_an_optional_feature_with_text_codes_adds_null_to_its_choices():
    f = Feature("grade", "binary", "Grade", codes={0: "low", 1: "high"}, text_codes={"low": 0, "high": 1})
    assert _json_schema(f) == {
        "anyOf": [
            {"type": "integer", "enum": [0, 1]},
            {"type": "string", "enum": ["HIGH", "High", "LOW", "Low", "high", "low"]},
            {"type": "null"},
        ],
        "title": "grade",
        "description": "Grade. Rule: one of 0, 1, 'low', 'high'. Optional: null or omitted is imputed by the model.",
    }


def test_a_continuous_feature_without_a_unit_has_no_brackets():
    f = Feature("score", "continuous", "Score", low=0, high=2.5)
    assert _json_schema(f) == {
        "anyOf": [{"type": "number", "minimum": 0, "maximum": 2.5}, {"type": "null"}],
        "title": "score",
        "description": "Score. Rule: a number from 0 to 2.5. Optional: null or omitted is imputed by the model.",
    }


def test_a_validator_of_a_feature_with_upper_case_text_codes_reads_any_case():
    f = Feature("grade", "categorical", "Grade", codes={1: "a", 2: "b"}, text_codes={"Low": 1, "HIGH": 2})
    validate = _validator(f)
    assert [validate("low"), validate("LOW"), validate(" High ")] == [1.0, 1.0, 2.0]


def test_a_validator_of_a_feature_with_two_legacy_codes_reads_both():
    f = Feature("grade", "categorical", "Grade", codes={1: "a", 2: "b"}, missing_codes=(8, 9))
    validate = _validator(f)
    assert [type(validate(8)), type(validate(9)), type(validate(1))] == [LegacyCode, LegacyCode, float]


# ------------------------------------------------------------------------ the Patient model


@pytest.fixture
def fresh():
    """A Patient model built now, in each test (the module's Patient was built at import)."""
    return build_patient_model()


def test_the_built_model_is_the_patient_with_its_doc_and_example(fresh):
    assert fresh.__name__ == "Patient" and fresh.__doc__ == "One patient's 13 clinical features."
    assert issubclass(fresh, _PatientBody) and list(fresh.model_fields) == list(FEATURE_NAMES)
    schema = fresh.model_json_schema()
    assert schema["examples"] == [EXAMPLE] and schema["required"] == ["age", "gender"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["ca"] == {**_json_schema(BY_NAME["ca"]), "default": None}
    assert schema["properties"]["age"] == _json_schema(BY_NAME["age"])  # required: no default


def test_the_built_model_reads_the_example_as_codes(fresh):
    got = fresh.model_validate(EXAMPLE).__dict__
    assert got == {k: (1.0 if k == "gender" else float(v)) for k, v in EXAMPLE.items()}


def test_the_built_model_defaults_optional_features_to_null_and_reads_the_alias(fresh):
    got = fresh.model_validate({"age": 50, "sex": "Female"}).__dict__
    assert got == {"age": 50.0, "gender": 0.0, **{n: None for n in FEATURE_NAMES[2:]}}
    assert fresh.model_validate({"age": 50, "gender": 1}).__dict__["gender"] == 1.0


def test_the_built_model_requires_age_and_gender(fresh):
    errors = errors_of(fresh, {"chol": 200})
    assert [(e["type"], e["loc"]) for e in errors] == [("missing", ("age",)), ("missing", ("gender",))]


def test_the_built_model_validates_each_field_by_its_rule(fresh):
    errors = errors_of(fresh, {**EXAMPLE, "age": 0, "ca": 4.5, "smoker": 1})
    assert [(e["type"], e["loc"], e["msg"]) for e in errors] == [
        ("schema_rule", ("age",), f"age must be {AGE_RULE}, got 0"),
        ("schema_rule", ("ca",), f"ca must be {CA_RULE}, got 4.5"),
        ("extra_forbidden", ("smoker",), "Extra inputs are not permitted"),
    ]
    assert type(fresh.model_validate({**EXAMPLE, "thal": 0}).__dict__["thal"]) is LegacyCode


def test_a_required_feature_with_a_legacy_code_is_a_declaration_error(monkeypatch):
    bad = Feature("grade", "categorical", "Grade", codes={1: "a"}, missing_codes=(9,), required=True)
    monkeypatch.setattr(contract, "FEATURES", (*contract.FEATURES, bad))
    with pytest.raises(ValueError) as e:
        build_patient_model()
    assert str(e.value) == "grade: a required feature cannot have a legacy 'unknown' code"


def test_an_optional_feature_with_a_legacy_code_or_an_alias_and_a_required_one_without_are_fine(monkeypatch):
    extra = (
        Feature("grade", "categorical", "Grade", codes={1: "a"}, missing_codes=(9,)),
        Feature("level", "categorical", "Level", codes={1: "a"}, required=True),
        Feature("stage", "categorical", "Stage", codes={1: "a", 2: "b"}, aliases=("phase",)),
    )
    monkeypatch.setattr(contract, "FEATURES", (*contract.FEATURES, *extra))
    model = build_patient_model()
    assert [(e["type"], e["loc"]) for e in errors_of(model, EXAMPLE)] == [("missing", ("level",))]
    got = model.model_validate({**EXAMPLE, "level": 1, "grade": 9}).__dict__
    assert got["grade"] == 9 and type(got["grade"]) is LegacyCode and got["stage"] is None  # optional, alias or not
    assert model.model_validate({**EXAMPLE, "level": 1, "phase": 2}).__dict__["stage"] == 2.0


# ----------------------------------------------------------------------- name and alias clash


CLASH = "gender and sex (its alias) are both given: send one of them"


def test_gender_and_sex_together_is_one_alias_conflict():
    errors = errors_of(Patient, {**EXAMPLE, "sex": "male"})
    assert errors == [
        {"type": "alias_conflict", "loc": ("sex",), "msg": CLASH, "input": "male", "ctx": {"message": CLASH}}
    ]


def test_the_clash_is_worded_from_json_too():
    with pytest.raises(ValidationError) as e:
        Patient.model_validate_json(json.dumps({**EXAMPLE, "sex": 1}))
    assert [(x["type"], x["loc"], x["msg"]) for x in e.value.errors()] == [("alias_conflict", ("sex",), CLASH)]
    assert e.value.title == "Patient"


def test_other_errors_beside_a_clash_keep_their_kind_words_and_input():
    with pytest.raises(ValidationError) as e:
        Patient.model_validate({**EXAMPLE, "sex": 1, "age": 500})
    assert e.value.title == "Patient"
    assert [(x["type"], x["loc"], x["msg"], x["input"]) for x in e.value.errors()] == [
        ("schema_rule", ("age",), f"age must be {AGE_RULE}, got 500", 500),
        ("alias_conflict", ("sex",), CLASH, 1),
    ]


def test_a_clash_in_a_batch_names_the_row():
    with pytest.raises(ValidationError) as e:
        Batch.model_validate_json(json.dumps({"instances": [EXAMPLE, {**EXAMPLE, "sex": "female"}]}))
    assert [(x["type"], x["loc"], x["msg"]) for x in e.value.errors()] == [
        ("alias_conflict", ("instances", 1, "sex"), CLASH)
    ]
    assert e.value.title == "Batch"


def test_errors_without_a_clash_are_passed_on_untouched():
    with pytest.raises(ValidationError) as e:
        Patient.model_validate({**EXAMPLE, "smoker": 1})
    assert _name_alias_clashes(e.value) is e.value
    assert e.value.errors(include_url=False) == [
        {"type": "extra_forbidden", "loc": ("smoker",), "msg": "Extra inputs are not permitted", "input": 1}
    ]
    with pytest.raises(ValidationError) as e:
        Patient.model_validate_json('{"age": 50}')
    assert [(x["type"], x["loc"]) for x in e.value.errors()] == [("missing", ("gender",))]


@pytest.mark.parametrize(
    "err,clash",
    [
        ({"type": "extra_forbidden", "loc": ("sex",)}, True),
        ({"type": "extra_forbidden", "loc": ("instances", 3, "sex")}, True),
        ({"type": "extra_forbidden", "loc": ("smoker",)}, False),
        ({"type": "extra_forbidden", "loc": ("sex", "smoker")}, False),
        ({"type": "extra_forbidden", "loc": ()}, False),
        ({"type": "missing", "loc": ("sex",)}, False),
    ],
)
def test_a_clash_is_an_extra_field_error_at_an_alias(err, clash):
    assert _is_clash(err) is clash


def test_pydantics_options_reach_pydantic_both_ways():
    class Record:  # attributes, not a dict: only valid with from_attributes
        age, gender = 50, "male"

    assert Patient.model_validate(Record(), from_attributes=True).__dict__["gender"] == 1.0
    # by name only: `sex` is then an extra field, so a clash (and gender is missing)
    with pytest.raises(ValidationError) as e:
        Patient.model_validate_json('{"age": 50, "sex": "male"}', by_alias=False, by_name=True)
    assert [(x["type"], x["loc"]) for x in e.value.errors()] == [("missing", ("gender",)), ("alias_conflict", ("sex",))]


def test_valid_bodies_validate_both_ways():
    assert Patient.model_validate(EXAMPLE).__dict__["gender"] == 1.0
    assert Patient.model_validate_json(json.dumps({"age": 40, "sex": "female"})).__dict__["gender"] == 0.0


# ------------------------------------------------------------------------------ the batch


def test_a_batch_of_exactly_max_batch_is_accepted_and_one_more_is_not():
    assert MAX_BATCH == 1000
    assert len(Batch.model_validate({"instances": [EXAMPLE] * MAX_BATCH}).instances) == MAX_BATCH
    errors = errors_of(Batch, {"instances": [EXAMPLE] * (MAX_BATCH + 1)})
    assert [(e["type"], e["loc"], e["msg"]) for e in errors] == [
        ("too_long", ("instances",), "List should have at most 1000 items after validation, not 1001")
    ]


def test_an_empty_batch_is_refused():
    errors = errors_of(Batch, {"instances": []})
    assert [(e["type"], e["loc"]) for e in errors] == [("too_short", ("instances",))]
    assert Batch.model_json_schema()["properties"]["instances"]["description"] == "1 to 1000 patients"


# ------------------------------------------------------------------------- the responses


RESULT = {
    "prediction_id": "0190f0a1b2c37d4e8f9a0b1c2d3e4f50",
    "predicted_class": 1,
    "label": "heart disease",
    "probability": 0.8,
    "imputed": ["ca"],
}


def test_legacy_codes_the_schema_declares_pass():
    _check_legacy({"ca": 4, "thal": 0}, ["ca", "thal"])
    _check_legacy({}, [])
    assert PredictionResult.model_validate({**RESULT, "legacy_codes": {"ca": 4}}).legacy_codes == {"ca": 4}


@pytest.mark.parametrize(
    "codes,imputed,message",
    [
        ({"ca": 3}, ["ca"], "legacy_codes: 3 is not a legacy code of ca"),
        ({"ca": 0}, ["ca"], "legacy_codes: 0 is not a legacy code of ca"),
        ({"thal": 4}, ["thal"], "legacy_codes: 4 is not a legacy code of thal"),
        ({"thal": 0}, ["ca"], "legacy_codes names thal, which is not in imputed"),
        ({"ca": 4, "thal": 0}, ["ca"], "legacy_codes names thal, which is not in imputed"),
        ({"ca": 4}, [], "legacy_codes names ca, which is not in imputed"),
    ],
)
def test_a_legacy_code_the_schema_does_not_declare_or_not_imputed_is_refused(codes, imputed, message):
    with pytest.raises(PydanticCustomError) as e:
        _check_legacy(codes, imputed)
    assert e.value.type == "legacy_code" and e.value.message() == message


def test_a_label_that_does_not_match_the_class_is_a_bad_response():
    errors = errors_of(PredictionResult, {**RESULT, "label": "no heart disease"})
    assert [(e["type"], e["msg"]) for e in errors] == [
        ("label_mismatch", "label 'no heart disease' does not match predicted_class 1 ('heart disease')")
    ]
