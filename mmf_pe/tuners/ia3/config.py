"""IA3's knobs: which linears get a scale, and which of them are feed-forward (scaled on their input)."""
from dataclasses import dataclass, field
from typing import List, Union

from mmf_pe.tuners.config import BasePEConfig
from mmf_pe.tuners.peft_methods.config import check_targets


@dataclass
class IA3Config(BasePEConfig):
    method: str = "ia3"
    target_modules: Union[List[str], str] = field(
        default_factory=lambda: ["attention.self.key", "attention.self.value", "output.dense"])
    feedforward_modules: Union[List[str], str] = field(default_factory=lambda: ["output.dense"])

    # The scaling vectors start at 1: weight decay would pull them towards 0, so they take none.
    no_weight_decay_markers = (".ia3_l.",)

    def validate(self):
        check_targets(self.key("target_modules"), self.target_modules)
        check_targets(self.key("feedforward_modules"), self.feedforward_modules)
        return super().validate()
