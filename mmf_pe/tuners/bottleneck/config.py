"""Config shared by the bottleneck adapters (paper, pfeiffer, houlsby): the bottleneck size and its checks."""
from dataclasses import dataclass

from mmf_pe.tuners.bottleneck.layer import ACTIVATIONS, INIT_WEIGHTS
from mmf_pe.tuners.config import BasePEConfig


@dataclass
class BottleneckConfig(BasePEConfig):
    reduction_factor: float = 10  # bottleneck = int(hidden / reduction_factor)

    def validate(self):
        if self.reduction_factor <= 0:
            raise ValueError(f"{self.key('reduction_factor')} must be positive, got {self.reduction_factor}")
        return super().validate()


@dataclass
class SequentialBottleneckConfig(BottleneckConfig):
    """AdapterHub-style adapters: also the activation and the initialisation."""

    non_linearity: str = "relu"  # relu | swish | silu | gelu | tanh
    init_weights: str = "bert"   # bert (N(0, 0.02)) | houlsby (near-identity) | zeros (exact identity)

    def validate(self):
        if self.non_linearity not in ACTIVATIONS:
            raise ValueError(f"{self.key('non_linearity')} must be one of {sorted(ACTIVATIONS)}, "
                             f"got {self.non_linearity!r}")
        if self.init_weights not in INIT_WEIGHTS:
            raise ValueError(f"{self.key('init_weights')} must be one of {' | '.join(INIT_WEIGHTS)}, "
                             f"got {self.init_weights!r}")
        return super().validate()
