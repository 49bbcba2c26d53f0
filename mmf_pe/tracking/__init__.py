"""Experiment tracking for MMF rc10 runs: a local `metrics.jsonl` always, W&B and TensorBoard when asked.

rc10 has no callback or logger registry, so the registered `mmf_pe` trainer mixes in `TrackingTrainerMixin`
(hooks.py), which sends every train log and evaluation to one `TrackingSession` (session.py) fanned out to trackers
with one small interface (base.py): JSONL (always), W&B (`training.wandb.enabled`), TensorBoard
(`training.tensorboard`, rc10's own key). Only the main process tracks. No API key is ever read or written here:
W&B takes credentials from its own environment/netrc; `WANDB_MODE` and friends are respected.

metrics.jsonl (schema version 1): `<log dir>/metrics.jsonl`, the log dir being `<env.save_dir>/logs` unless
`env.log_dir` is set. One JSON object per line; every line has `event` and `time` (unix seconds). Steps are
`num_updates`. Metric names are short (`roc_auc`, `accuracy`, `binary_f1`, `average_precision`, `loss`, `lr`, ...).
Readers should take the last line of a kind where lines repeat (a resumed run appends).

    run    {"schema": 1, "run_id", "experiment", "model", "dataset", "datasets": [...], "mode", "training_mode",
            "pe_method", "seed", "max_updates", "params": {"total", "trained", "adapter"}, "precision", "save_dir"}
    train  {"step", "metrics": {"total_loss", "lr", "<dataset>/<loss name>", ...}}
    eval   {"step", "split": "val", "dataset", "metrics": {...}, "n", "is_best": bool}   one per validation
    final  {"step", "split": "val" | "test", "dataset", "metrics", "n", "predictions"}  rc10's closing inference,
                                                                  on the restored best checkpoint (step = its update)
    test   {"step", "split": "test_seen" | "test_unseen" | "test" | ..., "dataset", "checkpoint", "metrics", "n",
            "predictions", "precision"}                                         written by `mmf_pe evaluate`
    end    {"step", "status": "completed" | "failed", "error"?}

`mode` is the report label: `training_mode`, plus `/<pe method>` for PE runs (e.g. `fc`, `full`, `pe/paper`).
`precision` is the precision resolver's decision (`{requested, name, device, native_bf16, capability, probe_ratio,
reason, warning}`, docs/precision.md), null for a trainer without it.
`predictions` is a CSV path relative to the log dir with columns `id,proba,target,prediction` (proba = P(class 1)).
"""
from mmf_pe.tracking.base import MultiTracker, Tracker
from mmf_pe.tracking.jsonl import JsonlTracker, find_metrics_file, read_events
from mmf_pe.tracking.session import TrackingSession

SCHEMA_VERSION = 1

__all__ = [
    "JsonlTracker",
    "MultiTracker",
    "SCHEMA_VERSION",
    "Tracker",
    "TrackingSession",
    "find_metrics_file",
    "read_events",
]
