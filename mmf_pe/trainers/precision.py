"""The `mmf_pe` trainer's mixed precision: `training.precision: auto | fp32 | bf16 | fp16` (`training.fp16: true` =
fp16).

rc10 has no mixed precision. Training, validation and `mmf_predict` forward passes run under `torch.autocast`; the
model's outputs are cast back to fp32 before MMF computes losses and metrics. Weights, optimiser state and checkpoints
stay fp32 (autocast never converts parameters). fp16 adds a GradScaler, set as `self.grad_scaler`, the hook run
safety uses so that steps the scaler skips (inf/NaN gradients) are not failures; its state is saved with the
resume state. What each precision does on which device, and what `auto` picks: `mmf_pe/utils/precision.py`; the
decision (with its reason, the hardware and the bf16 probe) is written to the run log and kept as
`self.precision_decision` for the run's metadata (the `run` event of metrics.jsonl).
"""
from mmf_pe.utils import precision as amp


class PrecisionMixin:
    precision = "fp32"
    precision_decision = None

    def load_model_and_optimizer(self):
        # Decided before the model is built, so an fp16 request on CPU stops before any work is done.
        self.precision_decision = amp.resolve_precision(amp.requested_precision(self.config.training), self.device)
        self.precision = self.precision_decision.name
        self.writer.write(self.precision_decision.describe(),
                          "warning" if self.precision_decision.warning else "info")
        super().load_model_and_optimizer()
        if self.precision != "fp32":
            model = self.model.module if hasattr(self.model, "module") else self.model
            amp.install_fp32_outputs(model)
            self.grad_scaler = amp.make_grad_scaler(self.precision, self.device)
            self.writer.write(f"Mixed precision: {self.precision} autocast on {amp.device_type(self.device)}, fp32 "
                              f"weights{', gradient scaler' if self.grad_scaler is not None else ''}")

    def _forward_pass(self, batch):
        with amp.autocast(self.precision, self.device):
            return super()._forward_pass(batch)

    def predict(self, dataset_type):
        with amp.autocast(self.precision, self.device):
            return super().predict(dataset_type)

    def _backward(self, loss):
        scaler = self.grad_scaler
        if scaler is None or not scaler.is_enabled():
            return super()._backward(loss)
        # rc10's _backward with the scaler's steps: scaled loss, unscale before clipping, a step it may skip.
        self.optimizer.zero_grad()
        scaler.scale(loss).backward()
        if self.should_clip_gradients:
            from mmf.utils.general import clip_gradients  # here: importing mmf registers this trainer's module

            scaler.unscale_(self.optimizer)
            clip_gradients(self.model, self.num_updates, self.tb_writer, self.config)
        scaler.step(self.optimizer)
        scaler.update()
        self._run_scheduler()
        self.num_updates += 1
        self.profile("Backward time")

    def resume_state(self):
        state = super().resume_state()
        if self.grad_scaler is not None and self.grad_scaler.is_enabled():
            state["grad_scaler"] = {k: v for k, v in self.grad_scaler.state_dict().items()
                                    if isinstance(v, (int, float))}
        return state

    def restore_resume_state(self, state):
        super().restore_resume_state(state)
        if isinstance(state, dict) and state.get("grad_scaler") and self.grad_scaler is not None:
            self.grad_scaler.load_state_dict(dict(state["grad_scaler"]))
