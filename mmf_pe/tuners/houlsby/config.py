"""Houlsby adapters: AdapterHub `DoubleSeqBnConfig`'s defaults (swish, near-identity init, LayerNorms train)."""
from dataclasses import dataclass

from mmf_pe.tuners.bottleneck.config import SequentialBottleneckConfig


@dataclass
class HoulsbyConfig(SequentialBottleneckConfig):
    method: str = "houlsby"
    non_linearity: str = "swish"
    init_weights: str = "houlsby"
    train_layer_norms: bool = True
