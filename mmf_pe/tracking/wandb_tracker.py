"""Weights & Biases backend: offline by default, `WANDB_MODE`/`WANDB_DIR` and the other WANDB_* variables win.

Credentials are wandb's own business (WANDB_API_KEY or netrc, needed only by `wandb sync` / online mode); nothing
here reads or writes them. The run id is kept in the log dir so a resumed MMF run continues the same W&B run.
"""
import os

import numpy as np

from mmf_pe.tracking.base import Tracker
from mmf_pe.tracking.run_info import as_bool

RUN_ID_FILE = "wandb_run_id"


def resolve_mode(wandb_config):
    """WANDB_MODE if set, else `training.wandb.mode`, else offline."""
    return os.environ.get("WANDB_MODE") or (wandb_config.get("mode", None) or "offline")


class WandbTracker(Tracker):
    def __init__(self, wandb_config, log_dir, resume=False):
        self.options = dict(wandb_config)
        self.log_dir = log_dir
        self.resume = resume
        self.log_curves_enabled = as_bool(self.options.get("log_curves", True))
        self.run = None

    def start(self, run_info, config):
        try:
            import wandb
        except ImportError as error:
            raise ImportError("training.wandb.enabled=true needs the wandb package (pip install wandb)") from error
        self._wandb = wandb
        os.makedirs(self.log_dir, exist_ok=True)
        id_path = os.path.join(self.log_dir, RUN_ID_FILE)
        run_id = None
        if self.resume and os.path.exists(id_path):
            with open(id_path) as f:
                run_id = f.read().strip() or None
        mode = resolve_mode(self.options)
        # wandb keeps process-wide settings apart from the run's: with `mode` given to init() alone they stay online,
        # and its usage telemetry (every run.log() feeds it) then posts to WANDB_BASE_URL at exit, even for an
        # offline run. The process settings get the run's mode, so offline makes no network attempt at all.
        wandb.setup(settings=wandb.Settings(mode=mode))
        self.run = wandb.init(
            project=self.options.get("project", None) or "mmf-pe",
            entity=self.options.get("entity", None),
            name=self.options.get("name", None) or run_info.get("experiment"),
            mode=mode,
            dir=os.environ.get("WANDB_DIR") or self.log_dir,
            id=run_id,
            resume="allow" if run_id else None,
            config={"run": {k: v for k, v in run_info.items() if k != "event"}, "mmf": config},
            tags=[t for t in (run_info.get("mode"), run_info.get("dataset")) if t],
            settings=wandb.Settings(console="off", silent=True),
        )
        if self.run is not None and getattr(self.run, "id", None):
            with open(id_path, "w") as f:
                f.write(self.run.id)
        params = run_info.get("params") or {}
        self.run.summary.update({f"params/{k}": v for k, v in params.items() if v is not None})

    def log_metrics(self, metrics, step):
        self.run.log(dict(metrics), step=int(step))

    def log_curves(self, prefix, probabilities, targets, step):
        if not self.log_curves_enabled or len(np.unique(targets)) < 2:
            return
        probas = np.stack([1.0 - probabilities, probabilities], axis=1)
        labels = ["negative", "positive"]
        plot = self._wandb.plot
        self.run.log(
            {
                f"{prefix}/roc_curve": plot.roc_curve(targets, probas, labels=labels, classes_to_plot=[1]),
                f"{prefix}/pr_curve": plot.pr_curve(targets, probas, labels=labels, classes_to_plot=[1]),
            },
            step=int(step),
        )

    def set_summary(self, values):
        self.run.summary.update(dict(values))

    def finish(self, status="completed"):
        if self.run is not None:
            self.run.finish(exit_code=0 if status == "completed" else 1)
            self.run = None
