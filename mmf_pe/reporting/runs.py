"""Runs as the report sees them: read from local metrics.jsonl files only (no W&B needed)."""
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from mmf_pe.tracking.jsonl import FILENAME, find_metrics_file, read_events

SPLIT_ORDER = ["val", "test_seen", "test_unseen", "test"]


@dataclass
class Run:
    path: str                      # the run directory given (or found)
    metrics_file: str
    info: dict                     # the `run` event
    curve: List[tuple] = field(default_factory=list)        # [(step, val metrics)] one per validation, by step
    results: Dict[str, dict] = field(default_factory=dict)  # split -> metrics of the best checkpoint
    predictions: Dict[str, str] = field(default_factory=dict)  # split -> predictions CSV (absolute)
    status: Optional[str] = None
    best_step: Optional[int] = None
    seconds: Dict[int, float] = field(default_factory=dict)  # validation step -> wall seconds since the run started

    @property
    def mode(self):
        return self.info.get("mode") or self.info.get("model") or "unknown"

    @property
    def dataset(self):
        return self.info.get("dataset") or "unknown"

    @property
    def seed(self):
        return self.info.get("seed")


def _best_eval(evals):
    """The validation of the best checkpoint: the last one marked best, else the highest roc_auc."""
    marked = [e for e in evals if e.get("is_best")]
    if marked:
        return marked[-1]
    scored = [e for e in evals if (e.get("metrics") or {}).get("roc_auc") is not None]
    return max(scored, key=lambda e: e["metrics"]["roc_auc"]) if scored else None


def load_run(metrics_file, path=None):
    events = read_events(metrics_file)
    log_dir = os.path.dirname(os.path.abspath(metrics_file))
    infos = [e for e in events if e["event"] == "run"]
    if not infos:
        raise ValueError(f"{metrics_file}: no 'run' line (not written by mmf-pe tracking?)")
    run = Run(path=path or os.path.dirname(log_dir), metrics_file=metrics_file, info=infos[-1])

    def absolute(event):
        return os.path.join(log_dir, event["predictions"]) if event.get("predictions") else None

    evals = {}
    for event in events:
        kind = event["event"]
        if kind == "eval" and event.get("split", "val") == "val":
            evals[int(event["step"])] = event  # a resumed run re-logs steps: the last line wins
        elif kind in ("final", "test"):
            run.results[event["split"]] = event.get("metrics") or {}
            if absolute(event):
                run.predictions[event["split"]] = absolute(event)
            if kind == "final" and event["split"] == "val":
                run.best_step = event.get("step")
        elif kind == "end":
            run.status = event.get("status")
    run.curve = [(step, evals[step].get("metrics") or {}) for step in sorted(evals)]
    started = infos[0].get("time")  # the first `run` line: a resumed run's clock keeps counting from the start
    if started is not None:
        run.seconds = {step: float(evals[step]["time"]) - float(started) for step in evals if "time" in evals[step]}
    if "val" not in run.results:
        best = _best_eval(list(evals.values()))
        if best is not None:
            run.results["val"] = best.get("metrics") or {}
            run.best_step = best.get("step")
            if absolute(best):
                run.predictions["val"] = absolute(best)
    return run


def find_runs(paths):
    """Every run under the given paths: a path is a run dir (holds metrics.jsonl or logs/metrics.jsonl), a
    metrics.jsonl, or a folder searched recursively (not inside a run once found)."""
    found = []
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"report: {path} does not exist")
        metrics_file = find_metrics_file(path)
        if metrics_file:
            found.append((metrics_file, path if os.path.isdir(path) else None))
            continue
        before = len(found)
        for root, dirs, files in os.walk(path):
            dirs.sort()
            metrics_file = find_metrics_file(root)
            if metrics_file:
                found.append((metrics_file, root))
                dirs[:] = []
            elif FILENAME in files:
                found.append((os.path.join(root, FILENAME), None))
        if len(found) == before:
            raise FileNotFoundError(f"report: no {FILENAME} under {path} (is it a run's save dir?)")
    runs = []
    for metrics_file, path in found:
        try:
            runs.append(load_run(metrics_file, path))
        except ValueError as error:
            warnings.warn(str(error))
    return runs


def split_key(split):
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def mean_std(values):
    """(mean, sample std or None, n) of the values that are not None."""
    values = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None, None, 0
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None, len(values)
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance), len(values)
