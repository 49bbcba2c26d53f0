"""The small config object every PE method reads (peft-style): one dataclass, built from `model_config.*.pe`.

Knobs common to all methods: the bottleneck size (`reduction_factor`) or `rank`, which encoder layers get the method
(`layers` and/or `top_k_layers`, AdapterDrop-style), and whether LayerNorms and the visual projection also train
(VL-Adapter trains both). Fields left at None take the method's own default (see `METHOD_DEFAULTS`).
"""
from dataclasses import dataclass, field, fields
from typing import List, Optional, Union

# Per-method defaults for fields left None. The paper's values are those of the reference runs (exact, do not change).
METHOD_DEFAULTS = {
    "paper": {"train_layer_norms": False, "init_weights": "bert", "non_linearity": "relu"},
    "pfeiffer": {"train_layer_norms": False, "init_weights": "bert", "non_linearity": "relu"},     # AdapterHub SeqBn
    "houlsby": {"train_layer_norms": True, "init_weights": "houlsby", "non_linearity": "swish"},   # AdapterHub DoubleSeqBn
    "lora": {"train_layer_norms": False, "target_modules": ["attention.self.query", "attention.self.value"]},
    "ia3": {"train_layer_norms": False,
            "target_modules": ["attention.self.key", "attention.self.value", "output.dense"],
            "feedforward_modules": ["output.dense"]},
}


@dataclass
class PEConfig:
    method: str = "paper"
    reduction_factor: float = 10        # bottleneck adapters: bottleneck = int(hidden / reduction_factor)
    rank: int = 8                       # lora: r
    alpha: Optional[float] = None       # lora: lora_alpha (None = rank, i.e. scaling 1)
    dropout: float = 0.0                # lora: lora_dropout
    layers: Optional[List[int]] = None  # encoder layers that get the method (negative = from the top); None = all
    top_k_layers: Optional[int] = None  # only the top k encoder layers (AdapterDrop-style); combines with `layers`
    # Module paths relative to one encoder layer (e.g. "attention.self.query"), matched exactly, or one regex string
    # over those paths. lora/ia3 only.
    target_modules: Optional[Union[List[str], str]] = None
    feedforward_modules: Optional[Union[List[str], str]] = None  # ia3: scale the input, not the output
    init_weights: Optional[str] = None  # bottleneck: bert (N(0, 0.02)) | houlsby (near-identity) | zeros (exact identity)
    non_linearity: Optional[str] = None  # bottleneck: relu | swish | gelu | tanh
    train_layer_norms: Optional[bool] = None      # Houlsby / VL-Adapter train LayerNorms
    train_visual_projection: bool = False         # VL-Adapter trains the visual projection
    extra: dict = field(default_factory=dict)     # unknown keys (methods may read their own)

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
        config.validate()
        return config

    def validate(self):
        if self.reduction_factor <= 0:
            raise ValueError(f"pe.reduction_factor must be positive, got {self.reduction_factor}")
        if self.rank < 1:
            raise ValueError(f"pe.rank must be >= 1, got {self.rank}")
        if self.top_k_layers is not None and self.top_k_layers < 1:
            raise ValueError(f"pe.top_k_layers must be >= 1, got {self.top_k_layers}")
        return self

    def get(self, name):
        """A field's value, or the method's default where the field is None."""
        value = getattr(self, name)
        if value is None:
            value = METHOD_DEFAULTS.get(self.method, {}).get(name)
        return value

    def selected_layers(self, num_layers):
        """Sorted indices of the encoder layers that get the method (checks `layers` against the model's depth)."""
        chosen = set(range(num_layers))
        if self.layers is not None:
            chosen = set()
            for index in self.layers:
                if not -num_layers <= index < num_layers:
                    raise ValueError(f"pe.layers: {index} is out of range for a model with {num_layers} layers")
                chosen.add(index % num_layers)
        if self.top_k_layers is not None:
            chosen &= set(range(max(0, num_layers - self.top_k_layers), num_layers))
        if not chosen:
            raise ValueError(f"pe.layers={self.layers} / pe.top_k_layers={self.top_k_layers} select no layer")
        return sorted(chosen)

    def layer_selected(self, index, num_layers):
        return index in self.selected_layers(num_layers)

    def to_dict(self):
        """Plain dict of the effective settings, method defaults filled in (for the adapter export's JSON)."""
        data = {f.name: self.get(f.name) for f in fields(self)}
        return {k: v for k, v in data.items() if v is not None and v != {}}
