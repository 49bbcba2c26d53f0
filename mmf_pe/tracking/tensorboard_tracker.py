"""TensorBoard backend. rc10 already writes the meter's scalars when `training.tensorboard=true`; this adds what it
lacks (lr, PR curves, parameter counts) to the same SummaryWriter, or to `<log dir>/tensorboard` without one."""
import os

from mmf_pe.tracking.base import Tracker


class TensorBoardTracker(Tracker):
    def __init__(self, log_dir, summary_writer=None, scalars=False):
        self.log_dir = log_dir
        self.writer = summary_writer
        self.own_writer = summary_writer is None
        self.scalars = scalars or self.own_writer  # rc10's writer logs the meter scalars itself

    def start(self, run_info, config):
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(self.log_dir, "tensorboard"))
        params = run_info.get("params") or {}
        text = ", ".join(f"{k} {v:,}" for k, v in params.items() if v is not None)
        self.writer.add_text("run/parameters", f"mode {run_info.get('mode')}: {text}", 0)

    def log_metrics(self, metrics, step):
        for key, value in metrics.items():
            if self.scalars or key.endswith("/lr"):
                self.writer.add_scalar(key, value, step)

    def log_curves(self, prefix, probabilities, targets, step):
        self.writer.add_pr_curve(f"{prefix}/pr_curve", targets, probabilities, step)

    def finish(self, status="completed"):
        if self.writer is not None:
            self.writer.flush()
            if self.own_writer:
                self.writer.close()
