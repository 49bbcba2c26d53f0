"""PNG plots from local run files: AUROC vs updates per mode, ROC curves of the best checkpoints."""
import csv
import os
import re
import warnings
from collections import OrderedDict

import numpy as np

from mmf_pe.reporting.runs import split_key
from mmf_pe.reporting.tables import mode_key


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def safe_name(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "x"


def read_predictions(path):
    """(proba, target) arrays of a predictions CSV (id,proba,target,prediction); rows without a target skipped."""
    probabilities, targets = [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"proba", "target"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
        for number, row in enumerate(reader, 2):
            if row["target"] in ("", None):
                continue
            try:
                probabilities.append(float(row["proba"]))
                targets.append(int(float(row["target"])))
            except ValueError as error:
                raise ValueError(f"{path}:{number}: {error}") from error
    return np.asarray(probabilities), np.asarray(targets)


def plot_auroc_curves(runs, dataset, path):
    """Validation AUROC against updates: per mode the mean over seeds, a band of ± one std where seeds > 1."""
    plt = _pyplot()
    by_mode = OrderedDict()
    for run in sorted((r for r in runs if r.dataset == dataset), key=lambda r: mode_key(r.mode)):
        points = [(step, m.get("roc_auc")) for step, m in run.curve if m.get("roc_auc") is not None]
        if points:
            by_mode.setdefault(run.mode, []).append(dict(points))
    if not by_mode:
        return None
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for mode, curves in by_mode.items():
        steps = sorted({s for curve in curves for s in curve})
        values = [[curve[s] for curve in curves if s in curve] for s in steps]
        mean = np.array([np.mean(v) for v in values])
        line, = axes.plot(steps, mean, marker="o", markersize=3, label=f"{mode} (seeds: {len(curves)})")
        if len(curves) > 1:
            std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values])
            axes.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    axes.set_xlabel("updates")
    axes.set_ylabel("validation AUROC")
    axes.set_title(f"{dataset}: validation AUROC")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_auroc_twin(runs, dataset, path):
    """Validation AUROC against updates (left) and against wall-clock seconds since each run started (right): how
    good, and at what cost. One line per run (mode and seed)."""
    plt = _pyplot()
    chosen = sorted((r for r in runs if r.dataset == dataset and r.curve), key=lambda r: (mode_key(r.mode),
                                                                                          str(r.seed)))
    if not chosen:
        return None
    figure, (by_updates, by_seconds) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100, sharey=True)
    colors = {}
    for run in chosen:
        points = [(step, m["roc_auc"]) for step, m in run.curve if m.get("roc_auc") is not None]
        if not points:
            continue
        color = colors.setdefault(run.mode, f"C{len(colors) % 10}")
        label = f"{run.mode} seed {run.seed}"
        by_updates.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3, color=color,
                        label=label)
        timed = [(run.seconds[s], v) for s, v in points if s in run.seconds]
        if timed:
            by_seconds.plot([t for t, _ in timed], [v for _, v in timed], marker="o", markersize=3, color=color,
                            label=label)
    by_updates.set_xlabel("updates")
    by_seconds.set_xlabel("wall-clock seconds since the run started")
    by_updates.set_ylabel("validation AUROC")
    for axes in (by_updates, by_seconds):
        axes.grid(alpha=0.3)
    by_updates.legend(loc="best", fontsize=7)
    figure.suptitle(f"{dataset}: validation AUROC vs updates and vs wall-clock seconds")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_roc_curves(runs, dataset, split, path):
    """ROC curves of each run's best checkpoint on one split (from its predictions file)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.2, 5.0), dpi=100)
    colors = {}
    drawn = 0
    for run in sorted((r for r in runs if r.dataset == dataset), key=lambda r: (mode_key(r.mode), str(r.seed))):
        source = run.predictions.get(split)
        if not source:
            continue
        if not os.path.exists(source):
            warnings.warn(f"report: {source} is missing; no ROC curve for {run.path} ({split})")
            continue
        probabilities, targets = read_predictions(source)
        if len(np.unique(targets)) < 2:
            warnings.warn(f"report: {source} has one class only; no ROC curve")
            continue
        fpr, tpr, _ = roc_curve(targets, probabilities)
        color = colors.setdefault(run.mode, f"C{len(colors) % 10}")
        auc = roc_auc_score(targets, probabilities)
        axes.plot(fpr, tpr, color=color, alpha=0.85, label=f"{run.mode} seed {run.seed} (AUC {auc:.3f})")
        drawn += 1
    if not drawn:
        plt.close(figure)
        return None
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title(f"{dataset} {split}: ROC of best checkpoints")
    axes.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def make_plots(runs, out_dir):
    """All plots; returns [(title, path)]."""
    plots = []
    for dataset in sorted({r.dataset for r in runs}):
        path = plot_auroc_curves(runs, dataset, os.path.join(out_dir, f"auroc_vs_updates_{safe_name(dataset)}.png"))
        if path:
            plots.append((f"{dataset}: validation AUROC vs updates", path))
        splits = sorted({s for r in runs if r.dataset == dataset for s in r.predictions}, key=split_key)
        for split in splits:
            name = f"roc_{safe_name(dataset)}_{safe_name(split)}.png"
            path = plot_roc_curves(runs, dataset, split, os.path.join(out_dir, name))
            if path:
                plots.append((f"{dataset} {split}: ROC curves of the best checkpoints", path))
    return plots
