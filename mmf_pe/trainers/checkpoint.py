"""The `mmf_pe` trainer's checkpoint: rc10's `Checkpoint` with safe writes, exact resume and safe, reported loads.

rc10's `BaseTrainer.load_extras` builds `Checkpoint(self)` and loads from it at once; the `mmf_pe` trainer hands it
this class for that call (`MMFPETrainer.load_extras`, `use_checkpoint_class`). What it changes, method by method
(each was an import-hook patch of rc10's class before; the ids are patches/README.md's history):

- `save` writes each file atomically (temporary file + rename: a kill mid-save leaves the last checkpoint readable,
  F11), refuses a model or optimizer state holding NaN/inf (`NonFiniteError` naming the tensors; nothing written,
  F26), and stores the trainer's `resume_state()` under `mmf_pe_resume` (F25). `finalize` writes the final `.pth`
  atomically too.
- `_load_counts` hands `mmf_pe_resume` back to the trainer's `restore_resume_state()` (F25): the epoch, the batches
  done in it, the random generators, early stopping's best update (`mmf_pe/trainers/run_safety.py` keeps that
  state; this class only stores and returns it).
- `_torch_load`: on resume, an unreadable `current.ckpt` falls back to the newest loadable `models/model_<n>.ckpt`
  with a warning naming both (F27); any other unreadable file is an error naming it; a file that weights-only loading
  refuses for pickled OmegaConf objects is read by `pretrained_weights.load_checkpoint` (allow-list, sha256-verified
  downloads only).
- `_load_pretrained` reports what `checkpoint.resume_pretrained` copied and stops on missing encoder weights (F18).
- `_load_from_zoo` fetches `checkpoint.resume_zoo=<key>` through `mmf_pe download` for the model keys it knows (F19).

A run with another trainer (rc10's `base_trainer`) gets rc10's `Checkpoint` unchanged (plus the version fix F9):
in-place saves, no NaN check, no exact resume or fallback, rc10's silent pretrained copy and zoo lookup.
"""
import contextlib
import glob
import os
import pickle
import re
import warnings

import torch
from mmf.utils.checkpoint import Checkpoint
from mmf.utils.distributed import is_master
from omegaconf import OmegaConf

from mmf_pe.utils.finite import NonFiniteError, nonfinite_tensors
from mmf_pe.utils.io import atomic_torch_save

RESUME_STATE_KEY = "mmf_pe_resume"


def _unwrapped(model):
    return model.module if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) \
        else model


def _numbered(path):
    found = re.search(r"model_(\d+)\.ckpt$", path)
    return int(found.group(1)) if found else -1


class MMFPECheckpoint(Checkpoint):
    """rc10's Checkpoint, keys and file layout unchanged (plain rc10 still reads what it writes)."""

    # ---- saving ---------------------------------------------------------------------------------------------------
    def save(self, update, iteration=None, update_best=False):
        if not is_master():
            return
        trainer = self.trainer
        model = _unwrapped(trainer.model)
        self.refuse_nonfinite(model, trainer.optimizer, update)
        stopping = trainer.early_stopping
        ckpt = {
            "model": model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "best_iteration": stopping.best_monitored_iteration,
            "current_iteration": iteration or update,
            "current_epoch": trainer.current_epoch,
            "num_updates": update,
            "best_update": stopping.best_monitored_update,
            "best_metric_value": stopping.best_monitored_value,
            "config": OmegaConf.to_container(self.config, resolve=True),
        }
        if self.git_repo:
            ckpt.update(self._get_vcs_fields())
        resume_state = getattr(trainer, "resume_state", None)
        if resume_state is not None:
            ckpt[RESUME_STATE_KEY] = resume_state()
        paths = [os.path.join(self.models_foldername, f"model_{update}.ckpt")]
        if update_best:
            paths.append(os.path.join(self.ckpt_foldername, self.ckpt_prefix + "best.ckpt"))
        paths.append(os.path.join(self.ckpt_foldername, self.ckpt_prefix + "current.ckpt"))
        for path in paths:
            atomic_torch_save(ckpt, path)

    def refuse_nonfinite(self, model, optimizer, update):
        """Every floating-point tensor of the model and of the optimizer state is finite, or `NonFiniteError` (every
        DDP rank holds the same weights, so every rank stops here). The trainer already stops on a non-finite loss;
        this catches what a finite loss can still leave behind."""
        bad = nonfinite_tensors(model.state_dict())
        bad += nonfinite_tensors(optimizer.state_dict().get("state", {}), "optimizer.state")
        if bad:
            shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
            raise NonFiniteError(
                f"not saving the checkpoint of update {update} in {self.ckpt_foldername}: {len(bad)} tensors hold NaN "
                f"or inf ({shown}); the checkpoints saved before it are unchanged (resume from current.ckpt)"
            )

    def finalize(self):
        if is_master():
            atomic_torch_save(self.trainer.model.state_dict(), self.pth_filepath)

    # ---- loading --------------------------------------------------------------------------------------------------
    def _load_counts(self, ckpt):
        super()._load_counts(ckpt)
        restore = getattr(self.trainer, "restore_resume_state", None)
        if restore is not None and RESUME_STATE_KEY in ckpt:
            restore(ckpt[RESUME_STATE_KEY])

    def _torch_load(self, file):
        try:
            return self._read(file)
        except Exception as error:
            current = os.path.join(self.ckpt_foldername, self.ckpt_prefix + "current.ckpt")
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            reason = f"{type(error).__name__}: {first_line}"
            if not (self.config.checkpoint.resume and os.path.abspath(str(file)) == os.path.abspath(current)):
                raise RuntimeError(f"{file}: cannot be read as a checkpoint ({reason})") from error
            for candidate in sorted(glob.glob(os.path.join(self.models_foldername, "model_*.ckpt")), key=_numbered,
                                    reverse=True):
                try:
                    ckpt = self._read(candidate)
                except Exception:
                    continue
                message = (f"{file} cannot be read ({reason}); resuming from {candidate}, the newest loadable "
                           "checkpoint of this run")
                warnings.warn(message)
                self.trainer.writer.write(message, "warning")
                return ckpt
            raise RuntimeError(f"{file}: cannot be read as a checkpoint ({reason}), and no models/model_<n>.ckpt of "
                               f"this run can be read instead") from error

    def _read(self, file):
        """rc10's weights-only read; a file refused for pickled OmegaConf objects goes to our allow-list reader, which
        accepts it only as a sha256-verified `mmf_pe download` (a refusal is raised as that reader's ValueError)."""
        try:
            return super()._torch_load(file)
        except pickle.UnpicklingError:
            from mmf_pe.models.pretrained_weights import load_checkpoint

            return load_checkpoint(file, self.device if "cuda" in str(self.device) else "cpu")

    def _load_pretrained(self, ckpt):
        from mmf_pe.models.pretrained_weights import copy_pretrained

        model = self.trainer.model
        inner = getattr(model, "module", model)
        config = self.trainer.config
        prefix = "module." if inner is not model else ""
        new_keys = [prefix + k for k in (inner.pretrained_new_keys() if hasattr(inner, "pretrained_new_keys") else ())]
        source = config.checkpoint.get("resume_file", None) or config.checkpoint.get("resume_zoo", None) or "checkpoint"
        report = copy_pretrained(model, ckpt, config.checkpoint.pretrained_state_mapping, self.trainer.writer.write,
                                 new_keys, str(source))
        self.trainer.writer.write(report.summary())
        model_config = getattr(inner, "config", None)
        allow = bool(model_config.get("allow_missing_weights", False)) if model_config is not None else False
        report.enforce(allow, f"model_config.{config.model}.allow_missing_weights")
        self.trainer.writer.write("Pretrained model loaded")

    def _load_from_zoo(self, file):
        from mmf_pe.datasets import zoo
        from mmf_pe.models.pretrained_weights import read_state_dict
        from mmf_pe.utils.download import DownloadError

        entry = zoo.zoo_entries().get(file)
        if entry is None or entry.get("kind") != "model":
            return super()._load_from_zoo(file)
        env = self.trainer.config.env
        data_dir, weights_dir = env.get("data_dir", None), env.get("weights_dir", None)
        folder = zoo.destination(file, data_dir, weights_dir)
        try:
            folder = zoo.download(file, data_dir, weights_dir)
        except DownloadError as error:
            raise DownloadError(f"checkpoint.resume_zoo={file}: {error}\n  -> on a machine with internet: "
                                f"{zoo.how_to_fetch(file)}, then copy {folder} here") from error
        return self.upgrade_state_dict(read_state_dict(os.path.join(folder, entry["expect"]))), True


@contextlib.contextmanager
def use_checkpoint_class(checkpoint_class):
    """While rc10's `BaseTrainer.load_extras` runs, the `Checkpoint` it builds is `checkpoint_class`.

    rc10 has no factory for its checkpoint (MMF 1.0's `configure_callbacks` / `CheckpointCallback` came later):
    `load_extras` calls the `Checkpoint` name of `mmf.trainers.base_trainer` and loads from the result straight away,
    so the trainer names its class for exactly that call; every other caller keeps rc10's class.
    """
    import mmf.trainers.base_trainer as base_trainer

    original = base_trainer.Checkpoint
    base_trainer.Checkpoint = checkpoint_class
    try:
        yield
    finally:
        base_trainer.Checkpoint = original
