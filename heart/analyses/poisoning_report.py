"""The poisoning analysis at the edge: the text data_poisoning.py prints, its plot, its files and its
section of reports/index.html (the layout of every <analysis>_report module)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .report import _pyplot, format_table, mean_sd, plots, save_figure, write_json

if TYPE_CHECKING:  # annotations only: importing the analysis would pull in scikit-learn and joblib
    from .poisoning import PoisoningReport


def describe_fits(fits: dict[str, int], reference: str) -> str:
    """'' when every seed's set was modelled as the clean one was; else each other fit, with its
    share of the seeds when not all: "2-fold calibration", "not trainable (1 of 3 seeds)"."""
    total = sum(fits.values())
    return ", ".join(f if n == total else f"{f} ({n} of {total} seeds)" for f, n in fits.items() if f != reference)


def fit_notes(doc: dict, defense: str = "defense") -> tuple[list[str], list[str]]:
    """From a poisoning report's dict (PoisoningReport.to_dict() or its JSON): "<attack>: <how>" for the
    main attacks and their defense refits, and per sweep rate its "random: ...; targeted: ..." ("" when
    every set was modelled as the clean one, and for reports written before fits were recorded)."""
    ref = doc.get("clean_fit", "")

    def notes(named):
        return [f"{name}: {text}" for name, fits in named if (text := describe_fits(fits or {}, ref))]

    attacks = {"random flips": doc["attacks"]["random"], "targeted": doc["attacks"]["targeted_positive_to_negative"]}
    main = notes(
        (f"{name}{what}", where.get(key))
        for name, a in attacks.items()
        for what, where, key in (("", a["summary"], "fits"), (f" + {defense}", a["summary"]["defense"], "fits_after"))
    )
    sweep = zip(doc["sweep"]["random"], doc["sweep"]["targeted_positive_to_negative"])
    return main, ["; ".join(notes([("random", r.get("fits")), ("targeted", t.get("fits"))])) for r, t in sweep]


def text(result: PoisoningReport) -> str:
    """The main attacks and their defense against the clean model, the defense's detection, the sweep."""
    rnd, tgt = (result.attacks[k].summary for k in ("random", "targeted_positive_to_negative"))
    rate, action = result.rate, result.defense_on_clean_labels.action
    metrics = list(result.clean)  # poisoning.REPORTED, in its order
    rows = [
        ["clean", *(result.clean[m] for m in metrics)],
        [f"random flips {rate:.0%}", *(mean_sd(rnd.metrics[m]) for m in metrics)],
        [f"  + defense ({action})", *(mean_sd(rnd.defense.metrics_after[m]) for m in metrics)],
        [f"targeted 1->0 {rate:.0%}", *(mean_sd(tgt.metrics[m]) for m in metrics)],
        [f"  + defense ({action})", *(mean_sd(tgt.defense.metrics_after[m]) for m in metrics)],
    ]
    main_notes, sweep_notes = fit_notes(result.to_dict())
    d_rows = [
        [
            name,
            mean_sd(s.defense.flagged),
            mean_sd(s.defense.precision),
            mean_sd(s.defense.recall),
            s.defense.chance_precision.mean,
        ]
        for name, s in (("random", rnd), ("targeted", tgt))
    ]
    d_rows.append(["clean labels", str(result.defense_on_clean_labels.flagged), "-", "-", 0.0])
    return "\n".join(
        [
            f"training rows {result.train_rows} ({result.train_positives} with disease), held-out rows "
            f"{result.test_rows}; budget {result.budget_rows} flipped labels ({rate:.0%}); "
            f"{len(result.seeds)} attack seeds, mean ± sd",
            format_table(["training labels", *metrics], rows),
            *(f"model of {note}" for note in main_notes),
            "\ndefense: confident learning on out-of-fold probabilities, scored against the known flips",
            format_table(["attack", "flagged", "precision", "recall", "chance precision"], d_rows),
            sweep_text(result, sweep_notes),
        ]
    )


def sweep_text(result: PoisoningReport, notes: list[str]) -> str:
    metrics = list(result.clean)
    rows = []
    for r_, t_, note in zip(result.sweep["random"], result.sweep["targeted_positive_to_negative"], notes):
        rows.append(
            [
                f"{r_.rate:.0%}",
                *(mean_sd(r_.summary.metrics[m]) for m in metrics),
                mean_sd(t_.summary.metrics["recall"]),
                note or "as clean",
            ]
        )
    return (
        f"\nsweep (held-out metrics, mean ± sd over seeds; model: how a set too lopsided for the clean "
        f"model's {result.clean_fit} was modelled instead, n/a when no seed's set was trainable):\n"
        + format_table(["flipped", *(f"random {m}" for m in metrics), "targeted recall", "model"], rows)
    )


def write(result: PoisoningReport, out: str | Path, header: dict) -> tuple[Path, Path]:
    """<out>/poisoning.json (`header`, the defense, then the result) and poisoning.png."""
    out = Path(out)
    action = result.defense_on_clean_labels.action
    report = {
        **header,
        "defense_method": "confident learning (per-class mean out-of-fold probability thresholds), "
        f"suspicious rows {'dropped' if action == 'drop' else 'relabelled'}",
        **result.to_dict(),
    }
    return write_json(out / "poisoning.json", report), plot_poisoning(result, out / "poisoning.png")


def plot_poisoning(result: PoisoningReport, path: str | Path) -> Path:
    """Test metrics against the share of flipped training labels, mean ± sd over seeds."""
    plt = _pyplot()
    curves = result.sweep
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.5), sharey=True)
    axes = np.ravel(axes)
    titles = {"random": "random label flips", "targeted_positive_to_negative": "targeted: disease -> no disease"}
    for ax, (name, curve) in zip(axes, curves.items()):
        rates = [100 * c.rate for c in curve]
        for metric in ("accuracy", "roc_auc", "recall"):
            ax.errorbar(
                rates,
                [c.summary.metrics[metric].mean for c in curve],
                yerr=[c.summary.metrics[metric].sd for c in curve],
                marker="o",
                capsize=3,
                label=metric.replace("_", " "),
            )
            ax.axhline(result.clean[metric], ls=":", lw=0.8, color=ax.lines[-1].get_color())
        ax.set_title(f"{titles.get(name, name)} ({len(result.seeds)} seeds, mean ± sd)", fontsize=10)
        # points whose sets were modelled otherwise than the clean one (poisoning.fit_plan) say how, under the axis
        notes = [f"{100 * c.rate:g}%: {n}" for c in curve if (n := describe_fits(c.summary.fits, result.clean_fit))]
        ax.set_xlabel("\n".join(["training labels flipped (% of training rows)", *notes]))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out metric (dotted: clean model)")
    axes[0].legend()
    return save_figure(fig, path)


# ------------------------------------------------------------------------------ reports/index.html


def section(doc: dict, reports: Path, path: Path) -> dict:
    rnd, tgt = (doc["attacks"][k]["summary"] for k in ("random", "targeted_positive_to_negative"))
    clean = doc["clean"]
    rate = doc["rate"]
    summary = (
        f"Flipping {rate:.0%} of the training labels ({doc['budget_rows']} rows) at random moves held-out "
        f"ROC AUC from {clean['roc_auc']:.3f} to {mean_sd(rnd['roc_auc'])}; flipping the same number from "
        f"disease to no disease cuts recall from {clean['recall']:.3f} to {mean_sd(tgt['recall'])}. The defence "
        f"(confident learning) flags {mean_sd(tgt['defense']['flagged'], 0)} rows of the targeted attack with "
        f"precision {mean_sd(tgt['defense']['precision'])} (chance: {tgt['defense']['chance_precision']['mean']:.3f}); "
        f"after it, recall is {mean_sd(tgt['defense']['metrics_after']['recall'])}. On clean labels it flags "
        f"{doc['defense_on_clean_labels']['flagged']} rows."
    )
    rates = [r["rate"] for r in doc["sweep"]["random"]]
    step = round(rates[1] - rates[0], 4) if len(rates) > 1 else 0.05
    seeds = doc["seeds"]
    action = doc["defense_on_clean_labels"].get("action", "drop")
    command = (
        f"python data_poisoning.py --rate {rate} --seeds {len(seeds)} --seed {seeds[0] if seeds else 0} "
        f"--step {step} --defense {action} --out-dir {reports}"
    )
    metrics = [k for k in clean]
    sweep = list(zip(doc["sweep"]["random"], doc["sweep"]["targeted_positive_to_negative"]))
    main_notes, sweep_notes = fit_notes(doc, defense="defence")
    return {
        "doc": doc,
        "summary": summary,
        "command": command,
        "metrics": metrics,
        "rnd": rnd,
        "tgt": tgt,
        "sweep": [(r, t, note or "as clean") for (r, t), note in zip(sweep, sweep_notes)],
        "main_notes": main_notes,
        "plots": plots(reports, [("poisoning.png", "Held-out metrics against the share of flipped labels")]),
    }
