"""Pfeiffer adapters: AdapterHub `SeqBnConfig`'s defaults (ReLU, BERT's init)."""
from dataclasses import dataclass

from mmf_pe.tuners.bottleneck.config import SequentialBottleneckConfig


@dataclass
class PfeifferConfig(SequentialBottleneckConfig):
    method: str = "pfeiffer"
