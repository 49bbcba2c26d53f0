"""The trained part of clip_pe: per-modality projections, fusion, pre-output layers and the classifier.

Layout (Hate-CLIPper's): projection = Linear(in, d) Dropout(p0) [ReLU Linear(d, d) Dropout(p0)]*(n-1), then L2
normalisation; after fusion Dropout(p1) [Linear(., d) ReLU Dropout(p2)]*num_pre_output_layers; Linear(., num_labels).
"""
from dataclasses import dataclass
from typing import Sequence

import torch.nn as nn
import torch.nn.functional as F

from mmf_pe.models.clip_pe.fusion import check_fusion, fuse, fused_dim

TRAINING_BYTES_PER_PARAMETER = 16  # fp32 weight + gradient + AdamW's two moments


@dataclass
class HeadConfig:
    image_dim: int
    text_dim: int
    fusion: str = "cross"
    map_dim: int = 1024
    num_mapping_layers: int = 1
    num_pre_output_layers: int = 1
    dropout: Sequence[float] = (0.1, 0.4, 0.2)
    num_labels: int = 2

    def __post_init__(self):
        check_fusion(self.fusion)
        if self.map_dim <= 0 or self.num_mapping_layers < 1 or self.num_pre_output_layers < 0:
            raise ValueError("clip_pe needs map_dim > 0, num_mapping_layers >= 1, num_pre_output_layers >= 0; got "
                             f"{self.map_dim}, {self.num_mapping_layers}, {self.num_pre_output_layers}")
        if len(self.dropout) != 3:
            raise ValueError(f"clip_pe dropout needs 3 values (mapping, after fusion, pre-output), got {self.dropout}")


def projection(in_dim, map_dim, num_layers, dropout):
    layers = [nn.Linear(in_dim, map_dim), nn.Dropout(dropout)]
    for _ in range(num_layers - 1):
        layers += [nn.ReLU(), nn.Linear(map_dim, map_dim), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class FusionHead(nn.Module):
    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        p_map, p_fused, p_pre = (float(p) for p in config.dropout)
        self.image_map = projection(config.image_dim, config.map_dim, config.num_mapping_layers, p_map)
        self.text_map = projection(config.text_dim, config.map_dim, config.num_mapping_layers, p_map)
        layers, width = [nn.Dropout(p_fused)], fused_dim(config.fusion, config.map_dim)
        for _ in range(config.num_pre_output_layers):
            layers += [nn.Linear(width, config.map_dim), nn.ReLU(), nn.Dropout(p_pre)]
            width = config.map_dim
        self.pre_output = nn.Sequential(*layers)
        self.output = nn.Linear(width, config.num_labels)

    def forward(self, image_embeds, text_embeds):
        image = F.normalize(self.image_map(image_embeds), p=2, dim=1)
        text = F.normalize(self.text_map(text_embeds), p=2, dim=1)
        return self.output(self.pre_output(fuse(self.config.fusion, image, text)))


def head_memory(config: HeadConfig, batch_size=64):
    """Parameters and memory of a head before building it (a cross head at map_dim 1024 is ~1 B parameters)."""
    d, n = config.map_dim, config.num_mapping_layers
    parameters = sum((dim + 1) * d + (n - 1) * (d + 1) * d for dim in (config.image_dim, config.text_dim))
    width = fused_dim(config.fusion, d)
    for _ in range(config.num_pre_output_layers):
        parameters += (width + 1) * d
        width = d
    parameters += (width + 1) * config.num_labels
    fused = fused_dim(config.fusion, d)
    return {
        "parameters": parameters,
        "fp32_bytes": 4 * parameters,
        "training_bytes": TRAINING_BYTES_PER_PARAMETER * parameters,
        "fused_dim": fused,
        # the fused vector, its dropout output and their gradients, per batch
        "activation_bytes": 4 * 4 * fused * batch_size,
    }


def _size(n_bytes):
    for unit, scale in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{n_bytes / 1024:.1f} KiB"


def describe_memory(memory):
    return (f"head {memory['parameters']:,} parameters: {_size(memory['fp32_bytes'])} fp32 weights, "
            f"~{_size(memory['training_bytes'])} with gradients and AdamW state; fused width "
            f"{memory['fused_dim']:,} (~{_size(memory['activation_bytes'])} activations per batch)")
