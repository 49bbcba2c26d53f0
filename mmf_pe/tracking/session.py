"""One tracked run: turns the trainer's reports into metrics.jsonl events, tracker calls and prediction files."""
import csv
import io
import os

import numpy as np

from mmf_pe.metrics import binary_metrics, is_main_process, positive_probability, predicted_labels
from mmf_pe.metrics.binary import class_targets
from mmf_pe.tracking.base import MultiTracker
from mmf_pe.tracking.jsonl import JsonlTracker
from mmf_pe.tracking.run_info import as_bool, config_to_dict, describe_run
from mmf_pe.utils.io import atomic_write_text


def log_dir_of(trainer):
    """rc10's log folder (`<save_dir>/logs` unless env.log_dir is set): metrics.jsonl lives next to train logs."""
    folder = getattr(getattr(trainer, "writer", None), "log_folder", None)
    return folder or os.path.join(str(trainer.config.env.save_dir), "logs")


def meter_metrics(meter, prefix_type, dataset_name, latest=False):
    """Short-named scalars of an rc10 Meter for one split: `val/hateful_memes/roc_auc` -> `roc_auc`,
    `val/total_loss` -> `loss`; other datasets' keys keep their `<dataset>/` part."""
    out = {}
    for key, smoothed in meter.meters.items():
        if not key.startswith(prefix_type + "/"):
            continue
        value = smoothed.get_latest() if latest else smoothed.global_avg
        short = key[len(prefix_type) + 1:]
        if dataset_name and short.startswith(dataset_name + "/"):
            short = short[len(dataset_name) + 1:]
        out["loss" if short == "total_loss" else short] = float(value)
    return out


def write_predictions(path, predictions):
    """CSV `id,proba,target,prediction` (proba = P(class 1)); atomic."""
    scores = predictions["scores"]
    probabilities = positive_probability(scores)
    labels = predicted_labels(scores)
    targets = predictions.get("targets")
    targets = class_targets(targets) if targets is not None else [""] * len(labels)
    ids = predictions.get("ids")
    ids = ids if ids is not None else np.arange(len(labels))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "proba", "target", "prediction"])
    for row in zip(ids, probabilities, targets, labels):
        writer.writerow([row[0].item() if hasattr(row[0], "item") else row[0], repr(float(row[1])), row[2], row[3]])
    atomic_write_text(path, buffer.getvalue())


def evaluation_metrics(meter_values, predictions):
    """Meter values (losses, other metrics) with the binary metrics recomputed on the gathered predictions."""
    metrics = dict(meter_values)
    if predictions is not None and predictions.get("targets") is not None:
        exact = binary_metrics(predictions["scores"], predictions["targets"])
        n = exact.pop("n")
        metrics.update(exact)  # float64 from the logits: equal to the prediction files' values, ties included
        return metrics, n
    return metrics, None if predictions is None else len(predictions["scores"])


class TrackingSession:
    def __init__(self, tracker, log_dir, run_info):
        self.tracker = tracker
        self.log_dir = log_dir
        self.run_info = run_info
        self.step = 0

    @classmethod
    def from_trainer(cls, trainer):
        """The session of a trainer after load(); None on non-main processes (only rank 0 tracks)."""
        if not is_main_process():
            return None
        config = trainer.config
        log_dir = log_dir_of(trainer)
        trackers = [JsonlTracker(log_dir)]
        wandb_config = config.training.get("wandb", None) or {}
        if as_bool(wandb_config.get("enabled", False)):
            from mmf_pe.tracking.wandb_tracker import WandbTracker, resolve_mode

            if resolve_mode(wandb_config) != "disabled":
                resume = as_bool(config.checkpoint.get("resume", False))
                trackers.append(WandbTracker(wandb_config, log_dir, resume=resume))
        if as_bool(config.training.get("tensorboard", False)):
            from mmf_pe.tracking.tensorboard_tracker import TensorBoardTracker

            rc10_writer = getattr(getattr(trainer, "tb_writer", None), "summary_writer", None)
            trackers.append(TensorBoardTracker(log_dir, rc10_writer))
        run_info = describe_run(trainer)
        session = cls(MultiTracker(trackers), log_dir, run_info)
        session.step = int(getattr(trainer, "num_updates", 0))
        session.tracker.start(run_info, config_to_dict(config))
        session.tracker.log_event(run_info)
        return session

    def _predictions_path(self, name):
        return os.path.join(self.log_dir, "predictions", f"{name}.csv")

    def on_train_log(self, meter, step, lr):
        self.step = step
        metrics = meter_metrics(meter, "train", None, latest=True)
        metrics["lr"] = float(lr)
        self.tracker.log_event({"event": "train", "step": step, "metrics": metrics})
        scalars = {key: float(value.get_latest()) for key, value in meter.meters.items() if key.startswith("train/")}
        scalars["train/lr"] = float(lr)  # MMF's own keys (train/total_loss, ...) in W&B / TensorBoard
        self.tracker.log_metrics(scalars, step)

    def on_validation(self, meter, predictions, step, is_best):
        """One validation during training: the AUROC curve's point, ROC/PR curves, best predictions kept."""
        self.step = step
        dataset = predictions["dataset_name"] if predictions else self.run_info.get("dataset")
        metrics, n = evaluation_metrics(meter_metrics(meter, "val", dataset), predictions)
        event = {"event": "eval", "step": step, "split": "val", "dataset": dataset, "metrics": metrics, "n": n,
                 "is_best": bool(is_best)}
        if is_best and predictions is not None:
            write_predictions(self._predictions_path("val_best"), predictions)
            event["predictions"] = "predictions/val_best.csv"
        self.tracker.log_event(event)
        self.tracker.log_metrics({f"val/{dataset}/{k}": v for k, v in metrics.items() if v is not None}, step)
        if predictions is not None and predictions.get("targets") is not None:
            targets = class_targets(predictions["targets"])
            self.tracker.log_curves(f"val/{dataset}", positive_probability(predictions["scores"]), targets, step)

    def on_final(self, meter, predictions, step):
        """rc10's closing inference (val and/or test) on the restored best checkpoint: the run's summary."""
        split = predictions["dataset_type"]
        dataset = predictions["dataset_name"]
        metrics, n = evaluation_metrics(meter_metrics(meter, split, dataset), predictions)
        write_predictions(self._predictions_path(split), predictions)
        self.tracker.log_event({"event": "final", "step": step, "split": split, "dataset": dataset,
                                "metrics": metrics, "n": n, "predictions": f"predictions/{split}.csv"})
        summary = {f"best/{split}/{dataset}/{k}": v for k, v in metrics.items() if v is not None}
        summary["best/update"] = step
        self.tracker.set_summary(summary)

    def finish(self, status, error=None, step=None):
        event = {"event": "end", "step": self.step if step is None else step, "status": status}
        if error:
            event["error"] = error
        try:
            self.tracker.log_event(event)
        finally:
            self.tracker.finish(status)
