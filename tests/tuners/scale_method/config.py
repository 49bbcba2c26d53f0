from dataclasses import dataclass

from mmf_pe.tuners import BasePEConfig


@dataclass
class ScaleConfig(BasePEConfig):
    method: str = "scale"
    init_scale: float = 1.0

    def validate(self):
        if self.init_scale <= 0:
            raise ValueError(f"pe.init_scale must be positive, got {self.init_scale}")
        return super().validate()
