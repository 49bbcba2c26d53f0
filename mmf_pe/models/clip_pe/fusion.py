"""Fusion of the two L2-normalised projections: `concat` ([img; txt], 2*d inputs) or `cross` (the outer product
img txt^T flattened, d^2 inputs: every image feature times every text feature, Hate-CLIPper's "cross")."""
import torch

FUSIONS = ("concat", "cross")


def check_fusion(name):
    if name not in FUSIONS:
        raise ValueError(f"model_config.clip_pe.fusion must be one of {FUSIONS}, got {name!r}")
    return name


def fused_dim(name, map_dim):
    return 2 * map_dim if check_fusion(name) == "concat" else map_dim * map_dim


def fuse(name, image, text):
    """image, text: [batch, map_dim] -> [batch, fused_dim]."""
    if name == "concat":
        return torch.cat([image, text], dim=1)
    if name == "cross":
        return torch.bmm(image.unsqueeze(2), text.unsqueeze(1)).flatten(1)
    check_fusion(name)
