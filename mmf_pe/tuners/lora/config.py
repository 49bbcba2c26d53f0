"""LoRA's knobs. `alpha` null means alpha = rank (scaling 1); `target_modules` are exact paths relative to one
encoder layer, or one regex string over such paths (the one meaning everywhere in mmf_pe)."""
from dataclasses import dataclass, field
from typing import List, Optional, Union

from mmf_pe.tuners.config import BasePEConfig
from mmf_pe.tuners.peft_methods.config import check_targets


@dataclass
class LoraConfig(BasePEConfig):
    method: str = "lora"
    rank: int = 8
    alpha: Optional[float] = None
    dropout: float = 0.0
    target_modules: Union[List[str], str] = field(
        default_factory=lambda: ["attention.self.query", "attention.self.value"])

    @property
    def scaling_alpha(self):
        return self.rank if self.alpha is None else self.alpha

    def validate(self):
        if self.rank < 1:
            raise ValueError(f"{self.key('rank')} must be >= 1, got {self.rank}")
        if self.alpha is not None and self.alpha <= 0:
            raise ValueError(f"{self.key('alpha')} must be positive (or null = rank), got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"{self.key('dropout')} must be in [0, 1), got {self.dropout}")
        check_targets(self.key("target_modules"), self.target_modules)
        return super().validate()
