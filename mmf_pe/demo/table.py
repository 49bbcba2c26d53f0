"""The demo's Table II: per mode how good (dev_seen, test_seen, test_unseen) and at what cost (updates, wall seconds,
seconds per update, peak memory, trained parameters), mean ± sample std over seeds. This is what `mmf_pe demo`
prints and what the README shows."""
from collections import OrderedDict

from mmf_pe.reporting.runs import mean_std

SPLITS = [("val", "dev_seen"), ("test_seen", "test_seen"), ("test_unseen", "test_unseen")]
METRICS = [("roc_auc", "AUROC"), ("accuracy", "Acc."), ("binary_f1", "F1")]
# (key, header, decimals) of the cost columns
COST = [("trained", "Trained params", 0), ("best_update", "Best update", 0), ("updates", "Updates run", 0),
        ("wall_seconds", "Wall s", 0), ("seconds_per_update", "s / update", 3), ("peak_rss_mb", "Peak RSS MB", 0)]


def run_row(run, stamp):
    """One run's numbers: the report's Run (metrics.jsonl) + the pipeline's stamp (demo_settings.json)."""
    points = [(step, m["roc_auc"]) for step, m in run.curve if m.get("roc_auc") is not None]
    best = max(points, key=lambda p: p[1])[0] if points else None  # first maximum: rc10's early stopping keeps it
    row = {"mode": run.mode, "seed": run.seed, "trained": (run.info.get("params") or {}).get("trained"),
           "best_update": best, "updates": max((s for s, _ in points), default=None),
           "wall_seconds": stamp.get("train_seconds"), "seconds_per_update": stamp.get("seconds_per_update"),
           "peak_rss_mb": stamp.get("peak_rss_mb")}
    for split, _ in SPLITS:
        for metric, _ in METRICS:
            row[f"{split}/{metric}"] = (run.results.get(split) or {}).get(metric)
    return row


def aggregate(rows):
    """{mode: {column: (mean, std, n)}, seeds} in the order the modes first appear."""
    modes = OrderedDict()
    for row in rows:
        modes.setdefault(row["mode"], []).append(row)
    table = OrderedDict()
    for mode, group in modes.items():
        cells = {key: mean_std([r[key] for r in group]) for key in group[0] if key not in ("mode", "seed")}
        cells["seeds"] = sorted(r["seed"] for r in group if r["seed"] is not None)
        table[mode] = cells
    return table


def _cell(stat, decimals):
    mean, std, n = stat
    if mean is None:
        return "—"
    text = f"{mean:,.{decimals}f}"
    return f"{text} ± {std:,.{decimals}f}" if std is not None else text


def markdown(rows):
    table = aggregate(rows)
    header = ["Mode"] + [h for _, h, _ in COST] + [f"{split} {title}" if title == "AUROC" else title
                                                   for _, split in SPLITS for _, title in METRICS]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for mode, cells in table.items():
        values = [_cell(cells[key], decimals) for key, _, decimals in COST]
        values += [_cell(cells[f"{split}/{metric}"], 3) for split, _ in SPLITS for metric, _ in METRICS]
        lines.append(f"| {mode} | " + " | ".join(values) + " |")
    seeds = sorted({s for cells in table.values() for s in cells["seeds"]})
    lines.append("")
    lines.append(f"Training seed(s): {', '.join(map(str, seeds)) or '—'} (mean ± sample std where more than one). "
                 "AUROC / Acc. / F1 of the best-by-dev_seen checkpoint; wall s = the whole `mmf_run` (start-up and "
                 "validations included); s / update = training only; peak RSS = the run's process.")
    return "\n".join(lines)
