"""Table I (parameters per mode) and Table II (metrics per dataset x mode x split, mean ± std over seeds)."""
from collections import OrderedDict

from mmf_pe.reporting.runs import mean_std, split_key

TABLE2_METRICS = [("roc_auc", "AUROC"), ("accuracy", "Accuracy"), ("binary_f1", "F1")]
MODE_ORDER = ["fc", "full"]


def mode_key(mode):
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def _count(value):
    return f"{value:,}" if isinstance(value, int) else "—"


def table1_rows(runs):
    """One row per (model, mode, counts): [{model, mode, total, trained, adapter, trained_pct, runs}]."""
    rows = OrderedDict()
    for run in sorted(runs, key=lambda r: (str(r.info.get("model")), mode_key(r.mode))):
        params = run.info.get("params") or {}
        key = (run.info.get("model"), run.mode, params.get("total"), params.get("trained"), params.get("adapter"))
        if key not in rows:
            total, trained = params.get("total"), params.get("trained")
            pct = 100.0 * trained / total if isinstance(total, int) and total and isinstance(trained, int) else None
            rows[key] = {"model": key[0], "mode": run.mode, "total": total, "trained": trained,
                         "adapter": params.get("adapter"), "trained_pct": pct, "runs": 0}
        rows[key]["runs"] += 1
    return list(rows.values())


def table1_markdown(runs):
    lines = ["| Model | Mode | Total | Trained | Trained % | Adapter |", "|---|---|---:|---:|---:|---:|"]
    for row in table1_rows(runs):
        pct = f"{row['trained_pct']:.2f} %" if row["trained_pct"] is not None else "—"
        lines.append(f"| {row['model']} | {row['mode']} | {_count(row['total'])} | {_count(row['trained'])} | "
                     f"{pct} | {_count(row['adapter'])} |")
    return "\n".join(lines)


def table2_rows(runs):
    """[{dataset, mode, split, seeds, <metric>: (mean, std, n)}] sorted by dataset, mode, split."""
    groups = OrderedDict()
    for run in runs:
        for split, metrics in run.results.items():
            groups.setdefault((run.dataset, run.mode, split), []).append((run.seed, metrics))
    rows = []
    for (dataset, mode, split) in sorted(groups, key=lambda k: (k[0], mode_key(k[1]), split_key(k[2]))):
        entries = groups[(dataset, mode, split)]
        seeds = sorted(s for s, _ in entries if s is not None)
        row = {"dataset": dataset, "mode": mode, "split": split, "seeds": seeds}
        for name, _ in TABLE2_METRICS:
            row[name] = mean_std([m.get(name) for _, m in entries])
        rows.append(row)
    return rows


def format_mean_std(stat):
    mean, std, n = stat
    if mean is None:
        return "—"
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"


def table2_markdown(runs):
    header = "| Dataset | Mode | Split | " + " | ".join(title for _, title in TABLE2_METRICS) + " | Seeds |"
    lines = [header, "|---|---|---|" + "---:|" * len(TABLE2_METRICS) + "---|"]
    for row in table2_rows(runs):
        cells = " | ".join(format_mean_std(row[name]) for name, _ in TABLE2_METRICS)
        seeds = ", ".join(str(s) for s in row["seeds"]) or "—"
        lines.append(f"| {row['dataset']} | {row['mode']} | {row['split']} | {cells} | {seeds} |")
    return "\n".join(lines)
