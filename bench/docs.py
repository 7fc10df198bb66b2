"""Generated blocks in the docs: the benchmarks write their tables between HTML comment markers
(<!-- NAME:begin --> ... <!-- NAME:end -->), so docs/performance.md shows the latest run and the
prose around it stays as written."""

from __future__ import annotations

from pathlib import Path

from heart.files import atomic_write


def replace_block(path: str | Path, name: str, text: str) -> None:
    """Put `text` between the file's `name` markers; a file without them is an error, not a silent no-op."""
    path = Path(path)
    doc = path.read_text()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if doc.count(begin) != 1 or doc.count(end) != 1 or doc.index(begin) > doc.index(end):
        raise ValueError(f"{path}: expected one {begin} ... {end} block")
    head, rest = doc.split(begin)
    _, tail = rest.split(end)
    atomic_write(path, f"{head}{begin}\n{text.strip()}\n{end}{tail}".encode())


LABELS = {
    "predict": "this API, defaults (no collector: trace ids, no span recorded)",
    "predict_traced": "this API, every request traced and exported to a collector",
    "predict_sampled": "this API, traces sampled at 10% and exported (the deployment's setting)",
    "predict_batch": "this API, 1,000 patients per request",
    "v2_infer": "this API, V2 infer, 1,000 patients per request",
    "bare": "bare FastAPI, same request model, constant answer",
    "original_style": "original style (DataFrame + sklearn, blocking)",
    "baseline_predict": "the baseline (--baseline), `/predict`",
    "baseline_batch": "the baseline (--baseline), 1,000 patients",
    "baseline_v2": "the baseline (--baseline), V2 infer, 1,000 patients",
}


def bench_table(report: dict, container_figures: str | Path = "") -> str:
    """The Markdown docs/performance.md shows: the run's table, its ratios, ready time and RSS, the
    container check's figures (when its JSON exists) and the machine with its load."""
    results = report["results"]
    lines = [
        "| server | path | req/s | rows/s | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {LABELS.get(name, name)} | `{r['path']}` | {r['rps']:,.0f} | {r['rows_per_s']:,.0f} | "
            f"{r['p50']:.1f} | {r['p99']:.1f} |"
        )
    goals, notes = report["goals"], []
    if "predict_vs_bare" in goals:
        x = goals["predict_vs_bare"]
        notes.append(
            f"`/predict` at **{x:.2f}x** the bare endpoint (goal ≥ 0.5x: {'met' if x >= 0.5 else 'MISSED'}; "
            f"0.6x {'reached' if x >= 0.6 else 'not reached'}, 0.7x {'reached' if x >= 0.7 else 'not reached'})"
            + (
                f", {goals['predict_vs_original_x']:.0f}x the original style"
                if "predict_vs_original_x" in goals
                else ""
            )
            + "."
        )
    traced = [
        f"{goals[f'{name}_vs_bare']:.2f}x {what}"
        for name, what in (("predict_traced", "with every request traced and exported"), ("predict_sampled", "at 10%"))
        if f"{name}_vs_bare" in goals
    ]
    if traced:
        notes.append(f"Traced, `/predict` against the bare endpoint: {', '.join(traced)}.")
    against = [
        f"{what} {goals[key]:.2f}x"
        for key, what in (
            ("predict_vs_baseline", "`/predict`"),
            ("predict_batch_vs_baseline", "`/predict/batch`"),
            ("v2_infer_vs_baseline", "V2 infer"),
        )
        if key in goals
    ]
    if against:
        notes.append(f"Against the baseline in the same rounds: {', '.join(against)}.")
    ready, rss = report["ready_seconds"], report["rss_mib_after_rounds"].get("full")
    notes.append(
        f"The server (outside a container): ready {sorted(ready)[len(ready) // 2]:.2f} s after it is spawned "
        f"(median of {len(ready)}), RSS {rss:.0f} MiB after the rounds."
    )
    notes.append(_container_note(container_figures))
    m = report["machine"]
    notes.append(
        f"Machine: {m['cpus']} cores ({m['cpu'] or 'cpu unknown'}), Python {m['python']}, wrk and the servers on the "
        f"same cores; load average {', '.join(map(str, m['load_average_at_start']))} at the start, "
        f"{', '.join(map(str, m['load_average_at_end']))} at the end. {report['started']}, "
        f"`{report['command']}` ({report['wrk']['connections']} connections, {report['wrk']['rounds']} rounds of "
        f"{report['wrk']['duration_s']:g} s per target, the median round shown)."
    )
    return "\n".join(lines) + "\n\n" + "\n\n".join(n for n in notes if n)


def _container_note(path: str | Path) -> str:
    import json

    try:
        f = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return "No container figures: run `make container-check` for the image size, ready time and RSS."
    overlay2 = f.get("overlay2", {})
    ready = overlay2.get("median_time_to_ready_ms")
    bare = overlay2.get("median_bare_app_ready_ms")
    return (
        f"Container (`make container-check`, {f['measured_at']}, load average {f.get('load_average_at_end')} at its end): "
        f"predictor image **{f['image_size_bytes'] / 1e6:.0f} MB** (goal ≤ 400), ready **{ready} ms** after "
        f"`docker run` on overlay2, median of 3 (goal ≤ 1,000; a bare FastAPI app from the same image {bare} ms), "
        f"RSS **{f['rss_mib_after_1000_predict']:.0f} MiB** after 1,000 `/predict` (goal ≤ 150); explainer image "
        f"{f['explainer_image_size_bytes'] / 1e6:.0f} MB, first `/explain` {f['explainer_first_explain_ms']} ms, "
        f"RSS {f['explainer_rss_mib_after_first_explain']:.0f} MiB then."
    )
