"""Label-flip poisoning and a defense: python data_poisoning.py [--rate 0.2] [--seeds 3] [--step 0.1]

Flips a share of the training labels (seeded), retrains the same Pipeline (the card's
hyperparameters) and compares it with the clean model on the untouched held-out split by
accuracy, ROC AUC and recall; sweeps flip rates 0-50% in 10% steps over several seeds
(mean ± sd); repeats with a targeted attack (disease -> no disease, same budget); and tries a
confident-learning defense (out-of-fold probabilities flag suspicious labels, which are
dropped or relabelled before refitting), scored against the rows known to be flipped.
A poisoned set too lopsided for the model's inner 5-fold calibration is fitted with fewer
calibration folds, or reported as not trainable (the "model" column says which).
Writes <out-dir>/poisoning.json and poisoning.png.

The defaults take one to two minutes on 2 cores; --seeds 5 --step 0.05 is the full sweep of
docs/analyses.md (about five minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

from heart import cli
from heart.analyses import poisoning
from heart.analyses.report import fit_notes, format_table, plot_poisoning, write_json
from heart.model import card_split, forest_from_card

METRICS = poisoning.REPORTED


def parse_args(argv):
    p = cli.parser(__doc__)
    cli.add_analysis_args(p, "poisoning.json and poisoning.png")
    p.add_argument(
        "--rate",
        type=cli.number(0, 0.5),
        default=poisoning.DEFAULT_RATE,
        help="share of training labels flipped in the main attack",
    )
    p.add_argument("--seeds", type=cli.integer(1), default=3, help="attack seeds per flip rate (seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="first attack seed")
    p.add_argument(
        "--step", type=cli.number(0, 0.5, low_open=True), default=0.1, help="flip-rate step of the sweep from 0 to 0.5"
    )
    p.add_argument("--defense", default="drop", choices=("drop", "relabel"), help="what to do with suspicious labels")
    p.add_argument("--jobs", type=int, default=2, help="parallel fits")
    cli.add_quiet_arg(p)
    return p.parse_args(argv)


def _ms(s: poisoning.MeanSd) -> str:
    return "n/a" if s.mean != s.mean else f"{s.mean:.3f} ± {s.sd:.3f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    model, data, labels = cli.load_analysis_inputs(args)
    train_idx, test_idx = card_split(model.card, data.y)
    n_steps = int(0.5 / args.step + 1e-9)  # rates from 0 up to at most 50%
    sweep = tuple(round(i * args.step, 4) for i in range(n_steps + 1))
    seeds = tuple(range(args.seed, args.seed + args.seeds))
    result = poisoning.run_poisoning(
        forest_from_card(model.card),
        data.X,
        data.y,
        train_idx,
        test_idx,
        rate=args.rate,
        seeds=seeds,
        sweep_rates=sweep,
        action=args.defense,
        n_jobs=args.jobs,
        stages=cli.stages(args),
    )
    rnd, tgt = (result.attacks[k].summary for k in ("random", "targeted_positive_to_negative"))
    print(
        f"training rows {result.train_rows} ({result.train_positives} with disease), held-out rows "
        f"{result.test_rows}; budget {result.budget_rows} flipped labels ({args.rate:.0%}); "
        f"{len(seeds)} attack seeds, mean ± sd"
    )
    rows = [
        ["clean", *(result.clean[m] for m in METRICS)],
        [f"random flips {args.rate:.0%}", *(_ms(rnd.metrics[m]) for m in METRICS)],
        [f"  + defense ({args.defense})", *(_ms(rnd.defense.metrics_after[m]) for m in METRICS)],
        [f"targeted 1->0 {args.rate:.0%}", *(_ms(tgt.metrics[m]) for m in METRICS)],
        [f"  + defense ({args.defense})", *(_ms(tgt.defense.metrics_after[m]) for m in METRICS)],
    ]
    print(format_table(["training labels", *METRICS], rows))
    main_notes, sweep_notes = fit_notes(result.to_dict())
    for note in main_notes:
        print(f"model of {note}")
    print("\ndefense: confident learning on out-of-fold probabilities, scored against the known flips")
    d_rows = [
        [name, _ms(s.defense.flagged), _ms(s.defense.precision), _ms(s.defense.recall), s.defense.chance_precision.mean]
        for name, s in (("random", rnd), ("targeted", tgt))
    ]
    d_rows.append(["clean labels", str(result.defense_on_clean_labels.flagged), "-", "-", 0.0])
    print(format_table(["attack", "flagged", "precision", "recall", "chance precision"], d_rows))
    print_sweep(result, sweep_notes)
    out = Path(args.out_dir)
    report = {
        "model_version": model.version,
        "data": {"file": data.source, "sha256": data.sha256},
        "labels": labels,
        "defense_method": "confident learning (per-class mean out-of-fold probability thresholds), "
        f"suspicious rows {'dropped' if args.defense == 'drop' else 'relabelled'}",
        **result.to_dict(),
    }
    json_path = write_json(out / "poisoning.json", report)
    png = plot_poisoning(result, out / "poisoning.png")
    print(f"\nwrote {json_path} and {png}")
    return 0


def print_sweep(result: poisoning.PoisoningReport, notes: list[str]) -> None:
    print(
        f"\nsweep (held-out metrics, mean ± sd over seeds; model: how a set too lopsided for the clean "
        f"model's {result.clean_fit} was modelled instead, n/a when no seed's set was trainable):"
    )
    rows = []
    for r_, t_, note in zip(result.sweep["random"], result.sweep["targeted_positive_to_negative"], notes):
        rows.append(
            [
                f"{r_.rate:.0%}",
                *(_ms(r_.summary.metrics[m]) for m in METRICS),
                _ms(t_.summary.metrics["recall"]),
                note or "as clean",
            ]
        )
    print(format_table(["flipped", *(f"random {m}" for m in METRICS), "targeted recall", "model"], rows))


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
