"""The paper's adapter has one knob: the bottleneck size (its reference runs: rf 10; exact, do not change)."""
from dataclasses import dataclass

from mmf_pe.tuners.bottleneck.config import BottleneckConfig


@dataclass
class PaperConfig(BottleneckConfig):
    method: str = "paper"
