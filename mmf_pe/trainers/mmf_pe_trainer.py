"""`mmf_pe` trainer: rc10's BaseTrainer plus the hooks this plugin needs.

It is set in our base config (`training.trainer: mmf_pe`) and is the one place where data pre-flight checks, tracking
and multi-process handling attach (rc10 has no callback registry).
"""
import torch
from mmf.common.registry import registry
from mmf.trainers.base_trainer import BaseTrainer

from mmf_pe.data.checks import check_config_data, check_pretrained_checkpoint
from mmf_pe.launch import ddp
from mmf_pe.tracking.hooks import TrackingTrainerMixin


@registry.register_trainer("mmf_pe")
class MMFPETrainer(TrackingTrainerMixin, BaseTrainer):  # tracking + exact global metrics (mmf_pe/tracking)
    def load(self):
        check_config_data(self.config)
        check_pretrained_checkpoint(self.config)
        super().load()

    def load_model_and_optimizer(self):
        super().load_model_and_optimizer()
        model = self.model.module if hasattr(self.model, "module") else self.model
        if hasattr(model, "describe"):
            self.writer.write(model.describe())

    def _set_device(self):
        ddp.set_device(self)  # rc10 puts every distributed run on CUDA (mmf_pe/launch/ddp.py)

    def load_datasets(self):
        super().load_datasets()
        ddp.use_global_sample_order(self)  # same global batches for any number of processes

    def parallelize_model(self):
        if not ddp.wrap_model(self):  # DDP on CPU too; frozen parameters never all-reduced
            super().parallelize_model()

    def _calculate_time_left(self):
        # With training.max_epochs set rc10 makes max_updates infinite and its ETA fails with
        # "cannot convert float NaN to integer"; estimate the updates from the epochs instead.
        if self.max_updates == float("inf") and self.max_epochs not in (None, float("inf")):
            finite = self.max_updates
            self.max_updates = int(self.max_epochs * len(self.train_loader))
            try:
                return super()._calculate_time_left()
            finally:
                self.max_updates = finite
        return super()._calculate_time_left()

    def _forward_pass(self, batch):
        # rc10's train() turns on autograd anomaly detection for every run (several times slower); honour the config.
        wanted = bool(self.config.training.get("detect_anomaly", False))
        if torch.is_anomaly_enabled() != wanted:
            torch.autograd.set_detect_anomaly(wanted)
        return super()._forward_pass(batch)
