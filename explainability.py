"""Explain the model with SHAP: python explainability.py [--all-rows] [--patient N]

The 13 features ranked by mean |SHAP| on the held-out split (or every row), the additivity check, and what lowered
the risk of the patients the model missed and raised it for those it caught (heart.analyses.explainability). Writes
<out-dir>/explainability.json and shap_bar.png, shap_beeswarm.png, shap_waterfall.png."""

from heart import cli
from heart.analyses import explainability, explainability_report, report


def parse_args(argv):
    p = cli.parser(__doc__)
    cli.add_analysis_args(p, "explainability.json and the SHAP plots")
    p.add_argument(
        "--all-rows",
        action="store_true",
        help="explain every row, not only the held-out split (training rows are in-sample)",
    )
    p.add_argument(
        "--patient",
        type=int,
        help="row number in the data file (0-based, excluding the header) for the waterfall; "
        "default: the first false negative, else the first explained row",
    )
    p.add_argument("--top", type=cli.integer(1), default=3, help="features named in each plain-English summary")
    args = p.parse_args(argv)
    cli.check_report_files(p, args, "explainability.json", "shap_bar.png", "shap_beeswarm.png", "shap_waterfall.png")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    model, data, labels = cli.load_analysis_inputs(args)
    result = explainability.analyze(model, data, all_rows=args.all_rows, patient=args.patient, top=args.top)
    print(explainability_report.text(result))
    paths = explainability_report.write(result, args.out_dir, report.provenance(model, data, labels))
    print("\nwrote " + ", ".join(map(str, paths)))
    return cli.EXIT_OK if result.holds else cli.EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(cli.run_main(main))
