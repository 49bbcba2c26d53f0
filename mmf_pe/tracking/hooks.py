"""The trainer side of tracking: a mixin for the registered `mmf_pe` trainer (rc10 has no callback registry).

- `evaluate`: rc10's loop, but the metrics are computed once on the predictions gathered from all processes
  (exact global roc_auc; rc10 averaged per-process values) and the predictions are kept for tracking.
- `train`: opens a TrackingSession (main process only) and always closes it, marking failed runs.
- `_summarize_report`: rc10 calls it for train logs, validations and the closing inference; each goes to the session.
Subclasses that override these must call super().
"""
import torch
from mmf.common.meter import Meter
from tqdm import tqdm

from mmf_pe.metrics import gather_predictions, is_main_process
from mmf_pe.tracking.session import TrackingSession


class TrackingTrainerMixin:
    _tracking = None
    last_predictions = None  # {scores, targets, ids, dataset_type, dataset_name} of the latest evaluate(), numpy

    def train(self):
        self._tracking = TrackingSession.from_trainer(self)
        status, error = "failed", None
        try:
            super().train()
            status = "completed"
        except BaseException as exception:
            error = f"{type(exception).__name__}: {exception}"
            raise
        finally:
            if self._tracking is not None:
                session, self._tracking = self._tracking, None
                session.finish(status, error, step=self.num_updates)

    def evaluate(self, loader, use_tqdm=False, single_batch=False):
        meter = Meter()
        wanted = set(self.metrics.required_params) | {"scores", "targets"}
        combined, ids = None, []
        with torch.no_grad():
            self.model.eval()
            for batch in tqdm(loader, disable=not use_tqdm or not is_main_process()):
                report = self._forward_pass(batch)
                self._update_meter(report, meter)
                if "id" in report and ids is not None:
                    ids.append(report["id"].reshape(report["id"].shape[0], -1)[:, 0].cpu())
                else:
                    ids = None
                if combined is None:
                    combined = report
                else:
                    combined.accumulate_tensor_fields(report, [k for k in wanted if k in combined])
                    combined.batch_size += report.batch_size
                if single_batch:
                    break
            if combined is None:
                raise RuntimeError("evaluate(): the loader yielded no batch (empty evaluation split?)")
            self._gather_into(combined, torch.cat(ids) if ids else None, split_length(loader))
            if "targets" in combined:
                combined.metrics = self.metrics(combined, combined)
                self._update_meter(combined, meter, eval_mode=True)
            self.model.train()
        return combined, meter

    def _gather_into(self, report, ids, num_samples=None):
        """Replace the report's scores/targets with the whole evaluation set's (every process calls this)."""
        targets = report["targets"] if "targets" in report else None
        scores, all_targets, all_ids = gather_predictions(report["scores"], targets, ids, num_samples)
        device = report["scores"].device
        report["scores"] = torch.from_numpy(scores).to(device)
        if targets is not None:
            report["targets"] = torch.from_numpy(all_targets).to(targets.device)
        report.batch_size = len(scores)
        self.last_predictions = {
            "scores": scores,
            "targets": all_targets if targets is not None else None,
            "ids": all_ids,
            "dataset_type": report.get("dataset_type", "val"),
            "dataset_name": report.get("dataset_name", None),
        }

    def _summarize_report(self, meter, should_print=True, extra=None):
        super()._summarize_report(meter, should_print, extra)
        session = self._tracking
        if session is None:
            return
        if isinstance(should_print, str):  # rc10's closing inference passes its message as `should_print`
            session.on_final(meter, self.last_predictions, self.num_updates)
        elif extra and "val_time" in extra:  # a validation during training, after early stopping's bookkeeping
            # The update it was run at: when early stopping ends the run, rc10 has already restored the best
            # checkpoint (counters included), so self.num_updates would name the best update, not this one.
            step = int(extra.get("num_updates", self.num_updates))
            is_best = int(extra.get("best_update", -1)) == step
            session.on_validation(meter, self.last_predictions, step, is_best)
        elif should_print:
            session.on_train_log(meter, self.num_updates, self.optimizer.param_groups[0]["lr"])


def split_length(loader):
    """Samples in the one dataset an evaluation loader reads (None for several: the gather then goes by id)."""
    loaders = getattr(loader, "loaders", None)
    if loaders is not None:
        if len(loaders) != 1:
            return None
        loader = loaders[0]
    dataset = getattr(loader, "dataset", None)
    try:
        return len(dataset) if dataset is not None else None
    except TypeError:
        return None
