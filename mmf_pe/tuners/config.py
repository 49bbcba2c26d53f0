"""The small config object every PE method reads (peft-style): one dataclass, built from `model_config.*.pe`."""
from dataclasses import dataclass, field, fields
from typing import List, Optional


@dataclass
class PEConfig:
    method: str = "paper"
    reduction_factor: int = 10          # bottleneck = int(hidden / reduction_factor)
    layers: Optional[List[int]] = None  # encoder layers that get the method; None = all
    train_layer_norms: bool = False     # VL-Adapter / Houlsby also train LayerNorms
    train_visual_projection: bool = False
    extra: dict = field(default_factory=dict)  # method-specific settings

    @classmethod
    def from_config(cls, config):
        """From an omegaconf node or dict; unknown keys go to `extra` so methods can add their own."""
        if config is None:
            return cls()
        if hasattr(config, "items"):
            from omegaconf import OmegaConf

            data = OmegaConf.to_container(config, resolve=True) if OmegaConf.is_config(config) else dict(config)
        else:
            raise TypeError(f"pe config must be a mapping, got {type(config).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known and v is not None}
        extra = {k: v for k, v in data.items() if k not in known}
        extra.update(data.get("extra") or {})
        config = cls(**kwargs, extra=extra)
        if config.reduction_factor <= 0:
            raise ValueError(f"pe.reduction_factor must be positive, got {config.reduction_factor}")
        return config

    def layer_selected(self, index):
        return self.layers is None or index in self.layers
