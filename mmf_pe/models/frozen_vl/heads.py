"""The trained part of the family: one projection per feature stream, fusion, pre-output layers, classifier.

Layout (Hate-CLIPper's, and the BLIP/BLIP-2 source's): per stream Linear(in, d) Dropout(p0)
[ReLU Linear(d, d) Dropout(p0)]*(n-1), L2-normalised; fusion `concat` ([s1; ...; sk], k*d) or `cross` (two streams:
outer product, d^2); then Dropout(p1) [Linear(., d) ReLU Dropout(p2)]*num_pre_output_layers; Linear(., num_labels).
Projections are named `<stream>_map`, so a two-stream (image, text) head has clip_pe's parameter names.
"""
from dataclasses import dataclass
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

FUSIONS = ("concat", "cross")
TRAINING_BYTES_PER_PARAMETER = 16  # fp32 weight + gradient + AdamW's two moments


@dataclass
class StreamHeadConfig:
    streams: Tuple[Tuple[str, int], ...]   # (name, input width) per stream, in fusion order
    fusion: str = "concat"
    map_dim: int = 1024
    num_mapping_layers: int = 1
    num_pre_output_layers: int = 1
    dropout: Sequence[float] = (0.1, 0.4, 0.2)
    num_labels: int = 2

    def __post_init__(self):
        self.streams = tuple((str(n), int(w)) for n, w in self.streams)
        if self.fusion not in FUSIONS:
            raise ValueError(f"model_config.*.fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.fusion == "cross" and len(self.streams) != 2:
            raise ValueError(f"cross fusion needs exactly two feature streams; this encoder gives "
                             f"{[n for n, _ in self.streams]}: use fusion=concat")
        if self.map_dim <= 0 or self.num_mapping_layers < 1 or self.num_pre_output_layers < 0:
            raise ValueError("the head needs map_dim > 0, num_mapping_layers >= 1, num_pre_output_layers >= 0; got "
                             f"{self.map_dim}, {self.num_mapping_layers}, {self.num_pre_output_layers}")
        if len(self.dropout) != 3:
            raise ValueError(f"dropout needs 3 values (mapping, after fusion, pre-output), got {self.dropout}")

    @property
    def fused_dim(self):
        return self.map_dim * self.map_dim if self.fusion == "cross" else len(self.streams) * self.map_dim


def projection(in_dim, map_dim, num_layers, dropout):
    layers = [nn.Linear(in_dim, map_dim), nn.Dropout(dropout)]
    for _ in range(num_layers - 1):
        layers += [nn.ReLU(), nn.Linear(map_dim, map_dim), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class StreamHead(nn.Module):
    def __init__(self, config: StreamHeadConfig):
        super().__init__()
        self.config = config
        p_map, p_fused, p_pre = (float(p) for p in config.dropout)
        for name, width in config.streams:
            self.add_module(f"{name}_map", projection(width, config.map_dim, config.num_mapping_layers, p_map))
        layers, width = [nn.Dropout(p_fused)], config.fused_dim
        for _ in range(config.num_pre_output_layers):
            layers += [nn.Linear(width, config.map_dim), nn.ReLU(), nn.Dropout(p_pre)]
            width = config.map_dim
        self.pre_output = nn.Sequential(*layers)
        self.output = nn.Linear(width, config.num_labels)

    def forward(self, *features):
        mapped = [F.normalize(getattr(self, f"{name}_map")(x), p=2, dim=1)
                  for (name, _), x in zip(self.config.streams, features)]
        if self.config.fusion == "cross":
            fused = torch.bmm(mapped[0].unsqueeze(2), mapped[1].unsqueeze(1)).flatten(1)
        else:
            fused = torch.cat(mapped, dim=1)
        return self.output(self.pre_output(fused))


def head_memory(config: StreamHeadConfig, batch_size=64):
    """Parameters and memory of a head before building it (a cross head at map_dim 1024 is ~1 B parameters)."""
    d, n = config.map_dim, config.num_mapping_layers
    parameters = sum((width + 1) * d + (n - 1) * (d + 1) * d for _, width in config.streams)
    width = config.fused_dim
    for _ in range(config.num_pre_output_layers):
        parameters += (width + 1) * d
        width = d
    parameters += (width + 1) * config.num_labels
    return {
        "parameters": parameters,
        "fp32_bytes": 4 * parameters,
        "training_bytes": TRAINING_BYTES_PER_PARAMETER * parameters,
        "fused_dim": config.fused_dim,
        "activation_bytes": 4 * 4 * config.fused_dim * batch_size,  # fused vector, dropout output, their gradients
    }


def format_bytes(n_bytes):
    for unit, scale in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{n_bytes / 1024:.1f} KiB"


def describe_memory(memory):
    return (f"head {memory['parameters']:,} parameters: {format_bytes(memory['fp32_bytes'])} fp32 weights, "
            f"~{format_bytes(memory['training_bytes'])} with gradients and AdamW state; fused width "
            f"{memory['fused_dim']:,} (~{format_bytes(memory['activation_bytes'])} activations per batch)")


__all__ = ["FUSIONS", "StreamHead", "StreamHeadConfig", "describe_memory", "format_bytes", "head_memory", "projection"]
