"""The one declaration of the 13 clinical features and the target.

Everything else derives from this file: the data loader's validation, the API's request
model, the random-sample generator, the drift test chosen per feature, and the docs.
Codes follow the UCI Cleveland data as described in data/README (readme.md, "Data card").
This module imports nothing else from the package, so every other module may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["continuous", "binary", "categorical"]


@dataclass(frozen=True)
class Feature:
    """One input column.

    `low`/`high` are the hard validation limits (physiologically possible values: anything
    outside is a data error, not a patient). `typical` is the range seen in the Cleveland
    data, used for uniform random samples so that samples look like patients.
    `codes` maps each allowed code of a binary/categorical feature to its meaning;
    `missing_codes` are sentinels that some copies of this data use for "unknown".
    """

    name: str
    kind: Kind
    description: str
    unit: str = ""
    low: float | None = None
    high: float | None = None
    typical: tuple[float, float] | None = None
    integer: bool = False
    codes: Mapping[int, str] = field(default_factory=dict)
    ordered: bool = False
    required: bool = False
    missing_codes: tuple[int, ...] = ()
    aliases: tuple[str, ...] = ()
    text_codes: Mapping[str, int] = field(default_factory=dict)

    @property
    def discrete(self) -> bool:
        """Binary and categorical features take a handful of codes (chi-squared, not KS)."""
        return self.kind != "continuous"

    @property
    def nominal(self) -> bool:
        """Unordered categories: the model one-hot encodes these."""
        return self.kind == "categorical" and not self.ordered

    def rule(self) -> str:
        """The validation rule in words, for error messages and docs."""
        if self.kind == "continuous":
            what = "an integer" if self.integer else "a number"
            return f"{what} from {_fmt(self.low)} to {_fmt(self.high)}" + (f" {self.unit}" if self.unit else "")
        allowed = [str(c) for c in self.codes] + [repr(t) for t in self.text_codes]
        return "one of " + ", ".join(allowed)

    def check(self, value: float) -> str | None:
        """Return why a (non-missing, numeric) value breaks the rule, or None if valid."""
        if value != value or value in (float("inf"), float("-inf")):
            return f"must be a finite number, {self.rule()}"
        if self.kind == "continuous":
            if self.integer and value != int(value):
                return f"must be {self.rule()}, got {_fmt(value)}"
            if not (self.low <= value <= self.high):
                return f"must be {self.rule()}, got {_fmt(value)}"
            return None
        if value != int(value) or int(value) not in self.codes:
            return f"must be {self.rule()}, got {_fmt(value)}"
        return None


def _fmt(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else repr(float(x))


BINARY_NO_YES = {0: "no", 1: "yes"}

FEATURES: tuple[Feature, ...] = (
    Feature("age", "continuous", "Age", unit="years", low=1, high=120, typical=(29, 77), integer=True, required=True),
    Feature(
        "gender",
        "binary",
        "Sex",
        codes={0: "female", 1: "male"},
        text_codes={"female": 0, "male": 1},
        required=True,
        aliases=("sex",),
    ),
    Feature(
        "cp",
        "categorical",
        "Chest pain type",
        codes={0: "asymptomatic", 1: "atypical angina", 2: "non-anginal pain", 3: "typical angina"},
    ),
    Feature(
        "trestbps", "continuous", "Resting systolic blood pressure", unit="mm Hg", low=50, high=250, typical=(94, 200)
    ),
    Feature("chol", "continuous", "Serum cholesterol", unit="mg/dl", low=50, high=800, typical=(126, 564)),
    Feature("fbs", "binary", "Fasting blood sugar > 120 mg/dl", codes=BINARY_NO_YES),
    Feature(
        "restecg",
        "categorical",
        "Resting electrocardiogram",
        codes={0: "left ventricular hypertrophy", 1: "normal", 2: "ST-T wave abnormality"},
    ),
    Feature("thalach", "continuous", "Maximum heart rate achieved", unit="bpm", low=40, high=250, typical=(71, 202)),
    Feature("exang", "binary", "Exercise-induced angina", codes=BINARY_NO_YES),
    Feature(
        "oldpeak",
        "continuous",
        "ST depression induced by exercise relative to rest",
        unit="mm",
        low=-5,
        high=10,
        typical=(0, 6.2),
    ),
    Feature(
        "slope",
        "categorical",
        "Slope of the peak exercise ST segment",
        codes={0: "downsloping", 1: "flat", 2: "upsloping"},
    ),
    Feature(
        "ca",
        "categorical",
        "Major vessels coloured by fluoroscopy",
        codes={0: "none", 1: "one vessel", 2: "two vessels", 3: "three vessels"},
        ordered=True,
        missing_codes=(4,),
    ),
    Feature(
        "thal",
        "categorical",
        "Thallium stress test",
        codes={1: "fixed defect", 2: "normal", 3: "reversible defect"},
        missing_codes=(0,),
    ),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
# Legacy spellings, read the same way by the data loader (heart/data.py) and the API
# (heart/serving/contract.py): other names for a column (`sex` for `gender`) here, and each
# Feature's `missing_codes` (ca = 4, thal = 0: "unknown", imputed like a blank or null).
ALIASES: dict[str, str] = {alias: f.name for f in FEATURES for alias in f.aliases}
REQUIRED: tuple[str, ...] = tuple(f.name for f in FEATURES if f.required)


@dataclass(frozen=True)
class RiskDirection:
    """A feature whose direction of risk the clinical literature settles: +1 raises, -1 lowers.

    `code` turns a categorical feature into an indicator (cp == 0 "asymptomatic"); None uses
    the value itself (ordered or continuous). heart/label_check.py compares each direction
    with the data's labels to catch an inverted target before anything learns from it.
    """

    feature: str
    direction: Literal[1, -1]
    code: int | None = None

    @property
    def label(self) -> str:
        f = BY_NAME[self.feature]
        what = lower_first(f.description) + (f' "{f.codes[self.code]}"' if self.code is not None else "")
        return what + (" (raises risk)" if self.direction > 0 else " (lowers risk)")


def lower_first(text: str) -> str:
    """A description inside a sentence: 'Chest pain type' -> 'chest pain type', 'ST depression' kept."""
    return text[:1].lower() + text[1:] if not text[:2].isupper() else text


# Directions beyond doubt in the literature on this very data and on exercise testing:
# - Detrano R, et al. International application of a new probability algorithm for the
#   diagnosis of coronary artery disease. Am J Cardiol 1989;64:304-310 (the Cleveland data's
#   own paper: its probability algorithm is built on these clinical and exercise-test findings).
# - Gibbons RJ, et al. ACC/AHA 2002 guideline update for exercise testing. Circulation
#   2002;106:1883-1892 (exercise angina and ST depression raise, an upsloping ST segment and a
#   high achieved heart rate / exercise capacity lower the probability of coronary disease).
# - Diamond GA, Forrester JS. Analysis of probability as an aid in the clinical diagnosis of
#   coronary-artery disease. N Engl J Med 1979;300:1350-1358 (probability rises with age).
# In a referral cohort sent to angiography, "asymptomatic" chest pain (cp 0: silent ischaemia
# found by testing) is the presentation with the most disease; chest-pain type is one of
# Detrano 1989's predictors.
# Sex, cholesterol, blood pressure, fbs and the resting ECG are left out on purpose: their
# association in a referral cohort is weaker or confounded, and a check must not misfire.
RISK_DIRECTIONS: tuple[RiskDirection, ...] = (
    RiskDirection("age", +1),
    RiskDirection("cp", +1, code=0),  # asymptomatic chest pain
    RiskDirection("thalach", -1),  # maximum heart rate achieved
    RiskDirection("exang", +1),  # exercise-induced angina
    RiskDirection("oldpeak", +1),  # exercise ST depression
    RiskDirection("slope", -1, code=2),  # upsloping peak-exercise ST segment
    RiskDirection("ca", +1),  # vessels coloured by fluoroscopy
    RiskDirection("thal", +1, code=3),  # reversible thallium defect
)


@dataclass(frozen=True)
class Target:
    """The label: 1 = heart disease (angiographic narrowing > 50%), as the file gives it."""

    name: str = "target"
    description: str = "Heart disease: angiographic diameter narrowing > 50%"
    text_codes: Mapping[str, int] = field(
        default_factory=lambda: {"yes": 1, "no": 0, "1": 1, "0": 0, "1.0": 1, "0.0": 0}
    )
    labels: Mapping[int, str] = field(default_factory=lambda: {0: "no heart disease", 1: "heart disease"})


TARGET = Target()
ID_COLUMN = "sno"


def describe() -> list[dict]:
    """The schema as plain data: the model card, /model and the docs show this."""
    out = []
    for f in FEATURES:
        row = {"name": f.name, "kind": f.kind, "description": f.description, "required": f.required, "rule": f.rule()}
        if f.unit:
            row["unit"] = f.unit
        if f.kind == "continuous":
            row.update(low=f.low, high=f.high, typical=list(f.typical), integer=f.integer)
        else:
            row["codes"] = {str(k): v for k, v in f.codes.items()}
            if f.ordered:
                row["ordered"] = True
        if f.missing_codes:
            row["missing_codes"] = list(f.missing_codes)
        out.append(row)
    return out


def markdown_table() -> str:
    """The feature table for readme.md, generated so the docs cannot drift from the code."""
    lines = ["| feature | kind | meaning | allowed values | missing allowed |", "| --- | --- | --- | --- | --- |"]
    for f in FEATURES:
        if f.kind == "continuous":
            allowed = f"{_fmt(f.low)}–{_fmt(f.high)} {f.unit}".strip()
        else:
            allowed = ", ".join(f"{k} {v}" for k, v in f.codes.items())
            if f.text_codes:
                allowed += " (or " + " / ".join(f.text_codes) + ", any case)"
        if f.missing_codes:
            allowed += f" (legacy {', '.join(map(str, f.missing_codes))} = unknown)"
        lines.append(f"| {f.name} | {f.kind} | {f.description} | {allowed} | {'no' if f.required else 'yes'} |")
    return "\n".join(lines)
