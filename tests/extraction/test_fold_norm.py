"""bf16 extraction folds torchvision's frozen norms into their convolutions: same outputs, no fp32 detour."""
import torch
from torchvision.models.resnet import Bottleneck
from torchvision.ops import FrozenBatchNorm2d

from mmf_pe.extraction.fold_norm import fold_frozen_batchnorm


def test_folding_keeps_the_outputs_and_keeps_bf16_between_convolutions():
    torch.manual_seed(0)
    downsample = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 1, bias=False), FrozenBatchNorm2d(32))
    block = Bottleneck(16, 8, downsample=downsample, norm_layer=FrozenBatchNorm2d).eval()
    for norm in block.modules():
        if isinstance(norm, FrozenBatchNorm2d):
            for name in ("weight", "bias", "running_mean"):
                getattr(norm, name).normal_()
            norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 16, 9, 9)
    with torch.inference_mode():
        before = block(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert block.bn1(block.conv1(x)).dtype == torch.float32  # the fp32 detour folding removes
    assert fold_frozen_batchnorm(block) == 4
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in block.modules())
    with torch.inference_mode():
        torch.testing.assert_close(block(x), before, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert block.bn1(block.conv1(x)).dtype == torch.bfloat16
