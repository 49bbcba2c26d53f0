"""`mmf_pe drift`: how a detector's quality moves over time: AUROC, positive rate and sample count per time window.

    mmf_pe drift <run dir> --windows N [--split test] [--out DIR]
    mmf_pe drift <exported adapter> --data annotations.jsonl --features regions.lmdb --windows N [--base FOLDER]
        [--out DIR] [--time-from-id]

A run is scored by `mmf_pe evaluate` (its best checkpoint on the split, predictions written beside its metrics); an
exported adapter by the server's Engine on its served folder's base (default: the folder the adapter sits in).
The split's samples are ordered by `timestamp_ms` (or, with --time-from-id, by the time in their snowflake ids)
and cut into N consecutive windows of equal sample counts; each window's time range is reported. Writes drift.csv,
drift.md and drift.png. Annotations without timestamps are refused, naming the file and line.
"""
import argparse
import csv
import io
import os
import sys

import numpy as np

from mmf_pe.data.timeline import TimelineError, iso, read_timed_jsonl, time_windows
from mmf_pe.experiments.evaluate import EvaluateError
from mmf_pe.experiments.periods import PeriodDataError
from mmf_pe.utils.io import atomic_write_text

COLUMNS = ("window", "first", "last", "samples", "positives", "positive_rate", "auroc", "accuracy",
           "mean_probability")


class DriftError(ValueError):
    pass


def window_rows(timestamps, probabilities, targets, windows):
    """One dict per time window (and a last one, window "all", over every sample): see COLUMNS."""
    from mmf_pe.metrics.binary import binary_metrics

    timestamps, probabilities = list(timestamps), np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    groups = time_windows(timestamps, windows) + [list(range(len(timestamps)))]
    rows = []
    for number, indices in enumerate(groups, start=1):
        times = [timestamps[i] for i in indices]
        metrics = binary_metrics(probabilities=probabilities[indices], targets=targets[indices])
        rows.append({"window": number if number <= windows else "all", "first": iso(min(times)),
                     "last": iso(max(times)), "samples": len(indices), "positives": int(targets[indices].sum()),
                     "positive_rate": float(targets[indices].mean()), "auroc": metrics["roc_auc"],
                     "accuracy": metrics["accuracy"], "mean_probability": float(probabilities[indices].mean())})
    return rows


def _timestamps_by_id(paths):
    try:
        rows = read_timed_jsonl(paths)
    except TimelineError as error:
        raise DriftError(str(error)) from None
    return {str(record.get("id")): timestamp for timestamp, record, _ in rows}


def _run_split(run_dir, split):
    """(split name, annotation files, data_dir) of a run's evaluation split, as `mmf_pe evaluate` resolves it."""
    from omegaconf import OmegaConf

    from mmf_pe.experiments.evaluate import test_splits

    config_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(config_path):
        raise DriftError(f"{config_path} not found: give an mmf run's save dir or an exported adapter folder")
    saved = OmegaConf.load(config_path)
    dataset = str(saved.datasets).split(",")[0]
    chosen = test_splits(saved, dataset, [split] if split else None)
    if not chosen:
        raise DriftError(f"{config_path}: no test annotations for {dataset}; give --split name:annotations.jsonl")
    name, paths = next(iter(chosen.items()))
    data_dir = str(saved.dataset_config[dataset].get("data_dir", ""))
    return name, [os.path.join(data_dir, p) for entry in paths for p in str(entry).split(",")]


def drift_of_run(run_dir, windows, split=None, checkpoint="best", overrides=()):
    """Rows for a run: its checkpoint scored by `mmf_pe evaluate` on the split, predictions joined to timestamps."""
    from mmf_pe.experiments.evaluate import evaluate_run
    from mmf_pe.tracking.jsonl import find_metrics_file

    name, files = _run_split(run_dir, split)
    times = _timestamps_by_id(files)  # refused before any scoring when a line has no timestamp
    evaluate_run(run_dir, [split] if split else None, checkpoint, overrides)
    metrics_file = find_metrics_file(run_dir) or os.path.join(run_dir, "logs", "metrics.jsonl")  # as evaluate's
    predictions = os.path.join(os.path.dirname(metrics_file), "predictions", f"{name}.csv")
    stamps, probabilities, targets = [], [], []
    with open(predictions, newline="") as f:
        for number, row in enumerate(csv.DictReader(f), start=2):
            if row["id"] not in times:
                raise DriftError(f"{predictions}:{number}: id {row['id']!r} is in none of {files}")
            stamps.append(times[row["id"]])
            probabilities.append(float(row["proba"]))
            targets.append(int(float(row["target"])))
    return window_rows(stamps, probabilities, targets, windows), {"source": run_dir, "split": name,
                                                                  "predictions": predictions}


def drift_of_adapter(adapter_dir, data, features, windows, base=None, time_from_id=False, engine=None):
    """Rows for an exported adapter scored offline by the serve Engine on `data` (jsonl) + `features` (LMDB)."""
    from mmf_pe.experiments.periods import load_examples, open_adapter, score_examples

    examples = load_examples(data, features, time_source="snowflake" if time_from_id else "field")
    if not examples:
        raise DriftError(f"{data}: no samples")
    engine, version, _, _ = open_adapter(adapter_dir, base, engine)
    probabilities = score_examples(engine, version, examples)
    rows = window_rows([e.timestamp_ms for e in examples], probabilities, [e.label for e in examples], windows)
    return rows, {"source": adapter_dir, "split": os.path.basename(data), "fingerprint": version.fingerprint}


def _cell(value):
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_outputs(rows, out_dir, title):
    """drift.csv, drift.md (a markdown table) and drift.png (AUROC and positive rate per window) in `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
    atomic_write_text(os.path.join(out_dir, "drift.csv"), buffer.getvalue())
    lines = [f"# Drift: {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |" for row in rows]
    lines += ["", "Windows hold equal sample counts in posting-time order; AUROC is n/a where a window has one class."]
    markdown = "\n".join(lines) + "\n"
    atomic_write_text(os.path.join(out_dir, "drift.md"), markdown)
    _plot(rows[:-1], os.path.join(out_dir, "drift.png"), title)
    return markdown


def _plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    x = np.arange(1, len(rows) + 1)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, height_ratios=[3, 1])
    top.plot(x, [np.nan if r["auroc"] is None else r["auroc"] for r in rows], "o-", label="AUROC")
    top.plot(x, [r["positive_rate"] for r in rows], "s--", label="positive rate")
    top.set_ylim(-0.02, 1.02)
    top.legend(loc="best")
    top.set_title(title)
    bottom.bar(x, [r["samples"] for r in rows], color="grey")
    bottom.set_ylabel("samples")
    bottom.set_xticks(x, [r["first"][:10] for r in rows], rotation=30, fontsize=7)
    bottom.set_xlabel("window (first posting date)")
    figure.tight_layout()
    tmp = path + ".tmp.png"
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mmf_pe drift", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    parser.add_argument("source", help="an mmf run's save dir, or an exported adapter folder")
    parser.add_argument("--windows", type=int, required=True, help="number of consecutive time windows")
    parser.add_argument("--split", default=None, help="run: the evaluation split (default: the config's test)")
    parser.add_argument("--checkpoint", default="best", help="run: best | current | a file in the run dir")
    parser.add_argument("--data", help="adapter: annotations jsonl (id, text, label, timestamp_ms)")
    parser.add_argument("--features", help="adapter: the feature LMDB of those annotations")
    parser.add_argument("--base", default=None, help="adapter: served folder with base/ (default: the adapter's)")
    parser.add_argument("--time-from-id", action="store_true", help="times from snowflake tweet ids")
    parser.add_argument("--out", default=None, help="output folder (default: <run dir>/drift/<split>; required "
                                                    "for an adapter)")
    args = parser.parse_args(argv)
    try:
        if os.path.isfile(os.path.join(args.source, "adapter_config.json")):
            if not (args.data and args.features and args.out):
                parser.error("an exported adapter needs --data, --features and --out")
            rows, meta = drift_of_adapter(args.source, args.data, args.features, args.windows, args.base,
                                          args.time_from_id)
        else:
            rows, meta = drift_of_run(args.source, args.windows, args.split, args.checkpoint)
        out = args.out or os.path.join(args.source, "drift", meta["split"])
        print(write_outputs(rows, out, f"{meta['source']} on {meta['split']}"), end="")
    except (DriftError, PeriodDataError, TimelineError, EvaluateError) as error:
        print(f"mmf_pe drift: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.join(out, 'drift.csv')}, drift.md and drift.png")
    return 0
