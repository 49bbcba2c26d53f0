"""`mmf_pe` trainer: rc10's BaseTrainer plus the hooks this plugin needs.

It is set in our base config (`training.trainer: mmf_pe`) and is the one place where data pre-flight checks, tracking,
multi-process handling and our checkpoint class (`checkpoint.py`) attach (rc10 has no callback registry).
"""
import torch
from mmf.common.registry import registry
from mmf.trainers.base_trainer import BaseTrainer

from mmf_pe.data.checks import check_config_data, check_pretrained_checkpoint
from mmf_pe.launch import ddp
from mmf_pe.tracking.hooks import TrackingTrainerMixin
from mmf_pe.trainers.augment import AugmentMixin
from mmf_pe.trainers.checkpoint import MMFPECheckpoint, use_checkpoint_class
from mmf_pe.trainers.loading import configure_loaders, trainer_loaders
from mmf_pe.trainers.precision import PrecisionMixin
from mmf_pe.trainers.redaction import checkpointer_config, install_log_redaction
from mmf_pe.trainers.run_safety import RunSafetyMixin


@registry.register_trainer("mmf_pe")
class MMFPETrainer(TrackingTrainerMixin, PrecisionMixin, AugmentMixin, RunSafetyMixin, BaseTrainer):
    # AugmentMixin: training.augment, adversarial training with the robustness attacks (augment.py); inside
    # PrecisionMixin, so its PGD steps run under the run's autocast
    # TrackingTrainerMixin: tracking + exact global metrics (mmf_pe/tracking)
    # PrecisionMixin: training.precision fp32 | bf16 | fp16 through torch.autocast (precision.py)
    # RunSafetyMixin: a non-finite loss stops training naming the batch's ids; exact resume (run_safety.py)
    checkpoint_class = MMFPECheckpoint  # atomic saves, no NaN saved, exact resume, fallbacks, load reports
    def load(self):
        install_log_redaction(registry.get("writer", no_warning=True))  # before rc10 logs the detailed config
        check_config_data(self.config)
        check_pretrained_checkpoint(self.config)
        super().load()

    def load_model_and_optimizer(self):
        super().load_model_and_optimizer()
        model = self.model.module if hasattr(self.model, "module") else self.model
        if hasattr(model, "describe"):
            self.writer.write(model.describe())

    def load_extras(self):
        # rc10 builds self.checkpoint and loads from it here (base weights, or a resumed training state): with our
        # class (checkpoint.py), and config.yaml and every checkpoint's config redacted (redaction.py)
        with checkpointer_config(self), use_checkpoint_class(self.checkpoint_class):
            super().load_extras()
        self._load_exported_adapter()

    def _load_exported_adapter(self):
        """`model_config.<model>.load_adapter`: an `mmf_pe export-adapter` directory put onto the model after its
        base weights are in (so the fingerprint check sees them). Skipped when a training state was resumed: that
        checkpoint already holds the adapter as trained since."""
        model = self.model.module if hasattr(self.model, "module") else self.model
        adapter_dir = model.config.get("load_adapter", None)
        if not adapter_dir:
            return
        if self.num_updates > 0:
            self.writer.write(f"load_adapter={adapter_dir} not applied: training resumed at update {self.num_updates}")
            return
        from mmf_pe.tuners import method_settings
        from mmf_pe.tuners.export import load_adapter

        merge = bool(model.config.get("merge_adapter", False))
        if merge and "train" in self.run_type:
            raise ValueError("model_config.*.merge_adapter=True is for evaluation / prediction; with run_type="
                             f"{self.run_type} the merged LoRA/IA3 weights would no longer be the ones trained")
        check = bool(model.config.get("load_adapter_check_fingerprint", True))
        exported = load_adapter(model, adapter_dir, merge=merge, check_fingerprint=check)
        self.writer.write(f"Loaded adapter {adapter_dir}: {exported['num_parameters']:,} parameters "
                          f"({exported['training_mode']}, pe.method={method_settings(exported.get('pe'), None)[0]})")

    def _set_device(self):
        ddp.set_device(self)  # rc10 puts every distributed run on CUDA (mmf_pe/launch/ddp.py)

    def load_datasets(self):
        super().load_datasets()
        ddp.use_global_sample_order(self)  # same global batches for any number of processes
        # our collator (one copy per batch) and pinned memory on CUDA runs (loading.py)
        configure_loaders(trainer_loaders(self), self.config.training.get("pin_memory", None), self.device)

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
