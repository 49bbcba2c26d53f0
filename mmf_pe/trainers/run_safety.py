"""The `mmf_pe` trainer's run safety: a non-finite loss stops training, and a resumed run continues exactly.

Non-finite loss: checked once per update, before the backward pass, so the weights (and every checkpoint saved so far)
stay those of the last good update; the error names the batch's sample ids. In a multi-process run the check is
agreed over all processes (one scalar all-reduce), so every rank stops together. Hook for mixed precision:
`skipped_by_grad_scaler(loss)` returns True when an enabled `torch.amp.GradScaler` is set as `self.grad_scaler`;
such a step is the scaler's to skip (it lowers its scale), not a failure, unless `training.max_skipped_steps`
(default 100) of them come in a row.

Exact resume (the trainer's checkpoint class, `mmf_pe/trainers/checkpoint.py`, stores `resume_state()` in every
checkpoint, hands it back to `restore_resume_state()` and picks the file to resume from): the epoch being trained, how
many of its batches were done, the training random number stream and numpy's / Python's generator states. Training
forward passes draw from their own torch random state (dropout), swapped in around each of them, so evaluation and
data-loader start-up (which draw seeds from the global generator) do not shift it; a resumed run therefore makes the
same draws as one never interrupted.
"""
import random

import numpy as np
import torch
from mmf.common.registry import registry

from mmf_pe.launch.sampling import GlobalOrderSampler
from mmf_pe.metrics.gather import get_world_size
from mmf_pe.utils.finite import NonFiniteError

RESUME_FORMAT = 1


class RunSafetyMixin:
    _train_rng = None          # torch (and CUDA) random state of the training forward passes
    _epoch_batches = 0         # batches of the current epoch trained so far (this process)
    _counted_epoch = None
    _resume_offset = 0         # batches of the resumed epoch done before the interruption
    _training_started = False
    _skipped_in_a_row = 0
    grad_scaler = None

    # ---- non-finite loss ------------------------------------------------------------------------------------------
    def _extract_loss(self, report):
        loss = super()._extract_loss(report)
        self._count_batch()
        finite = bool(torch.isfinite(loss.detach()).all())
        if get_world_size() > 1:
            flag = torch.tensor([1.0 if finite else 0.0], device=loss.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            everywhere = bool(flag.item() == 1.0)
        else:
            everywhere = finite
        if everywhere:
            self._skipped_in_a_row = 0
            return loss
        if self.skipped_by_grad_scaler(loss):
            return loss
        where = f"update {self.num_updates + 1} (epoch {self.current_epoch}, iteration {self.current_iteration})"
        if finite:
            message = f"training stopped at {where}: another process's batch gave a non-finite loss"
        else:
            message = (f"training stopped at {where}: the loss is {loss.detach().float().mean().item()} on the batch "
                       f"of sample ids {batch_ids(report)}; check those records' features and text")
        raise NonFiniteError(message + ". No update was made from it; the checkpoints saved before are unchanged.")

    def skipped_by_grad_scaler(self, loss):
        """True when a mixed-precision GradScaler will skip this step by design (see the module docstring)."""
        scaler = self.grad_scaler
        if scaler is None or not scaler.is_enabled():
            return False
        self._skipped_in_a_row += 1
        limit = int(self.config.training.get("max_skipped_steps", 100) or 100)
        if self._skipped_in_a_row > limit:
            return False
        return True

    # ---- exact resume ------------------------------------------------------------------------------------------
    def _count_batch(self):
        if self._counted_epoch != self.current_epoch:
            self._counted_epoch, self._epoch_batches = self.current_epoch, 0
        self._epoch_batches += 1

    def _forward_pass(self, batch):
        if not self.model.training:
            return super()._forward_pass(batch)
        outside = self._random_state()
        if self._train_rng is not None:
            self._set_random_state(self._train_rng)
        try:
            return super()._forward_pass(batch)
        finally:
            self._train_rng = self._random_state()
            self._set_random_state(outside)

    def _random_state(self):
        state = {"torch": torch.get_rng_state()}
        if isinstance(self.device, torch.device) and self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_random_state(self, state):
        torch.set_rng_state(state["torch"])
        if "cuda" in state and isinstance(self.device, torch.device) and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)

    def resume_state(self):
        """What a checkpoint needs, beyond rc10's counts, for a resumed run to continue exactly (tensors and numbers
        only, so `torch.load(weights_only=True)` reads it)."""
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        return {
            "format": RESUME_FORMAT,
            "current_epoch": int(self.current_epoch),
            "epoch_batches": int(self._epoch_batches if self._counted_epoch == self.current_epoch else 0),
            "world_size": get_world_size(),
            "train_rng": self._train_rng if self._train_rng is not None else self._random_state(),
            "numpy_rng": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "position": int(position),
                          "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python_rng": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
            "best_update": int(self.early_stopping.best_monitored_update or 0),
        }

    def restore_resume_state(self, state):
        if self._training_started or not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
            return  # rc10's restore() of best.ckpt at the end of training, or a checkpoint of another format
        if state.get("world_size") != get_world_size():
            self.writer.write(f"Resuming a {state.get('world_size')}-process run with {get_world_size()} processes: "
                              "the epoch restarts (the sample position is per process)", "warning")
            return
        self.current_epoch = int(state["current_epoch"]) - 1  # rc10's loop adds 1 as the epoch (re)starts
        registry.register("current_epoch", self.current_epoch)
        self._resume_offset = int(state["epoch_batches"])
        self._counted_epoch, self._epoch_batches = int(state["current_epoch"]), self._resume_offset
        # rc10 maps a checkpoint onto the training device: generator states must be CPU byte tensors again
        self._train_rng = {k: v.cpu() for k, v in state["train_rng"].items()}
        numpy_state = state["numpy_rng"]
        np.random.set_state(("MT19937", numpy_state["keys"].cpu().numpy().astype(np.uint32), numpy_state["position"],
                             numpy_state["has_gauss"], numpy_state["gauss"]))
        python_state = state["python_rng"]
        random.setstate((python_state["version"], tuple(python_state["internal"]), python_state["gauss_next"]))
        self.early_stopping.best_monitored_update = int(state.get("best_update", 0))

    def load_extras(self):
        super().load_extras()
        if self.num_updates > 0 and getattr(self, "lr_scheduler", None) is not None:
            # rc10 builds the scheduler after the checkpoint is loaded; building it resets the learning rate to that
            # of update 0, so the first resumed update would use it. Step it to where the run was: rc10 steps it with
            # the count of updates before the one just made (`_backward` increments num_updates after stepping).
            self.lr_scheduler.step(self.num_updates - 1)

    def train(self):
        self._training_started = True
        if self._resume_offset and "train" in self.run_type:
            self._skip_done_batches(self._resume_offset)
        return super().train()

    def _skip_done_batches(self, batches):
        loader = self.train_loader
        samplers = [s for s in getattr(loader, "samplers", []) if isinstance(s, GlobalOrderSampler)]
        loaders = getattr(loader, "loaders", [])
        if len(samplers) != 1 or len(loaders) != 1:
            self.writer.write("Exact resume needs one training dataset read through the global sample order "
                              "(training.global_sample_order=true); the interrupted epoch restarts", "warning")
            self._resume_offset = self._epoch_batches = 0
            return
        samplers[0].skip_once(batches * loaders[0].batch_size)
        self.writer.write(f"Resuming inside epoch {self.current_epoch + 1}: its first {batches} batches were trained "
                          "before the interruption and are skipped")


def batch_ids(report, limit=32):
    """The sample ids of a report's batch, as a list (at most `limit`)."""
    ids = report["id"] if "id" in report else None
    if ids is None:
        return "(not recorded in the batch)"
    if isinstance(ids, torch.Tensor):
        ids = ids.reshape(ids.shape[0], -1)[:, 0].tolist()
    ids = list(ids)
    return ids[:limit] + (["..."] if len(ids) > limit else [])
