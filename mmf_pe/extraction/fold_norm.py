"""Fold each frozen BatchNorm into the convolution before it, for `--precision bf16` extraction.

Why: torchvision's `FrozenBatchNorm2d` keeps its scale and shift in fp32, so under bf16 autocast every convolution's
bf16 output is promoted back to fp32 by the norm and cast down again by the next convolution (measured: ~1/5 of the
bf16 backbone's CPU time in those casts and fp32 elementwise ops). Folded, the backbone stays bf16 from one convolution
to the next. A frozen norm is an affine map per channel, so folding is exact in real arithmetic (fp32 results move by
rounding only); it is applied to bf16 runs only, so fp32 extraction stays bit-identical to before.
"""
import torch
from torchvision.ops import FrozenBatchNorm2d


def fold_frozen_batchnorm(model):
    """Fold every `conv -> FrozenBatchNorm2d` pair that is registered as consecutive attributes (torchvision ResNet's
    `convN`/`bnN`, stem `conv1`/`bn1`, `downsample[0]`/`[1]`) and replace the norm by Identity. Returns the count."""
    folded = 0
    for module in list(model.modules()):
        children = list(module.named_children())
        for (conv_name, conv), (norm_name, norm) in zip(children, children[1:]):
            if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, FrozenBatchNorm2d):
                scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
                shift = norm.bias - norm.running_mean * scale
                with torch.no_grad():
                    conv.weight.mul_(scale.reshape(-1, 1, 1, 1).to(conv.weight.dtype))
                    base = conv.bias if conv.bias is not None else torch.zeros_like(shift)
                    conv.bias = torch.nn.Parameter(base * scale + shift, requires_grad=False)
                setattr(module, norm_name, torch.nn.Identity())
                folded += 1
    return folded
