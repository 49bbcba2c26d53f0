"""The always-on local record: `metrics.jsonl` (schema in mmf_pe.tracking) and its reader."""
import json
import math
import os
import time
import warnings

from mmf_pe.tracking.base import Tracker

FILENAME = "metrics.jsonl"


def _clean(value):
    """JSON-safe: numpy/torch scalars to float, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class JsonlTracker(Tracker):
    """Appends one line per event; each line is flushed and fsynced so a crash loses at most the line being written."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.path = os.path.join(log_dir, FILENAME)

    def log_event(self, event):
        record = {"event": event["event"], "time": round(time.time(), 3)}
        record.update(_clean({k: v for k, v in event.items() if k != "event"}))
        line = json.dumps(record, sort_keys=False)
        os.makedirs(self.log_dir, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


def find_metrics_file(run_dir):
    """`metrics.jsonl` of a run directory (its save dir, its log dir, or the file itself); None if absent."""
    for candidate in (run_dir, os.path.join(run_dir, FILENAME), os.path.join(run_dir, "logs", FILENAME)):
        if os.path.isfile(candidate) and candidate.endswith(FILENAME):
            return candidate
    return None


def read_events(path):
    """All events of a metrics.jsonl. A line that is not valid JSON is reported (file:line) and skipped, never
    silently: a crash can truncate the last line."""
    events = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as error:
                warnings.warn(f"{path}:{number}: skipped a line that is not JSON ({error.msg})")
                continue
            if not isinstance(event, dict) or "event" not in event:
                warnings.warn(f"{path}:{number}: skipped a line without an 'event' field")
                continue
            events.append(event)
    return events
