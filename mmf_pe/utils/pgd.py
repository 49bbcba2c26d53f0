"""L-infinity projected gradient descent (Madry et al.): the white-box attack `mmf_pe robustness` measures and the
inner maximisation of adversarial training (`training.augment`). Plain torch: `torchattacks` fixes the input range
to [0, 1] (region features are unbounded) and pins `requests~=2.25` (a downgrade of this environment's)."""
from typing import Callable, Optional, Tuple

import torch


def linf_pgd(loss: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, epsilon: float, steps: int,
             step_size: Optional[float] = None, generator: Optional[torch.Generator] = None,
             bounds: Optional[Tuple[float, float]] = None) -> torch.Tensor:
    """`inputs` moved within the L-infinity ball of radius `epsilon` (and inside `bounds`, e.g. (0, 1) for pixels)
    to increase `loss(inputs)`: a uniform random start, then `steps` signed-gradient steps of `step_size` (default
    2.5 epsilon / steps), each projected back. `generator` seeds the start (None: torch's global generator).
    Gradients go to the inputs only (torch.autograd.grad), never into parameters' .grad."""
    if epsilon < 0 or steps < 1:
        raise ValueError(f"PGD needs epsilon >= 0 and steps >= 1 (got epsilon {epsilon}, steps {steps})")
    inputs = inputs.detach()
    step_size = step_size if step_size is not None else 2.5 * epsilon / steps
    start = torch.empty(inputs.shape, dtype=inputs.dtype).uniform_(-epsilon, epsilon, generator=generator)
    adversarial = _project(inputs + start.to(inputs.device), inputs, epsilon, bounds)
    for _ in range(int(steps)):
        adversarial.requires_grad_(True)
        with torch.enable_grad():
            gradient, = torch.autograd.grad(loss(adversarial), adversarial)
        with torch.no_grad():
            adversarial = _project(adversarial + step_size * gradient.sign(), inputs, epsilon, bounds)
    return adversarial.detach()


def _project(adversarial, inputs, epsilon, bounds):
    adversarial = inputs + (adversarial - inputs).clamp(-epsilon, epsilon)
    return adversarial.clamp(*bounds) if bounds is not None else adversarial
