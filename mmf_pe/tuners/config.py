"""Config objects of the PE methods (peft-style): one dataclass per method, built from `model_config.*.pe`.

`BasePEConfig` holds the knobs every method shares: which encoder layers get the method (`layers` and/or
`top_k_layers`, AdapterDrop-style) and whether LayerNorms also train (VL-Adapter; the visual projection is the
model's `train_visual_projection`). Each method's folder subclasses it with its own fields; its `defaults.yaml`
lists every key with the same defaults (null = unset), and registration checks the two agree. Keys a method does
not know are refused by name.
"""
from dataclasses import dataclass, fields
from typing import ClassVar, List, Optional


@dataclass
class BasePEConfig:
    method: str = ""
    layers: Optional[List[int]] = None  # encoder layers that get the method (negative = from the top); None = all
    top_k_layers: Optional[int] = None  # only the top k encoder layers (AdapterDrop-style); combines with `layers`
    train_layer_norms: bool = False     # Houlsby / VL-Adapter train LayerNorms

    # Substrings of parameter names that take no weight decay (IA3's scales start at 1: decay would pull them to 0).
    no_weight_decay_markers: ClassVar[tuple] = ()

    @classmethod
    def keys(cls):
        return [f.name for f in fields(cls)]

    @classmethod
    def from_config(cls, config):
        """From a dict or omegaconf node. Null values keep the default; unknown keys are an error naming them."""
        data = _plain(config)
        known = cls.keys()
        unknown = sorted(k for k, v in data.items() if k not in known and v is not None)
        if unknown:
            method = data.get("method") or cls.method
            raise ValueError(
                f"pe.{method}.{unknown[0]} is not a key of pe.method={method!r}"
                + (f" (nor are {', '.join(f'pe.{method}.{k}' for k in unknown[1:])})" if unknown[1:] else "")
                + f"; its keys: {', '.join(k for k in known if k != 'method')}"
            )
        return cls(**{k: v for k, v in data.items() if k in known and v is not None}).validate()

    def key(self, name):
        """The key as a config spells it (`pe.lora.rank`), for messages."""
        return f"pe.{self.method}.{name}"

    def validate(self):
        if self.top_k_layers is not None and self.top_k_layers < 1:
            raise ValueError(f"{self.key('top_k_layers')} must be >= 1, got {self.top_k_layers}")
        return self

    def get(self, name, default=None):
        """A setting by name (None where this method has no such key)."""
        return getattr(self, name, default)

    def takes_no_weight_decay(self, parameter_name):
        return any(marker in parameter_name for marker in self.no_weight_decay_markers)

    def selected_layers(self, num_layers):
        """Sorted indices of the encoder layers that get the method (checks `layers` against the model's depth)."""
        chosen = set(range(num_layers))
        if self.layers is not None:
            chosen = set()
            for index in self.layers:
                if not -num_layers <= index < num_layers:
                    raise ValueError(f"{self.key('layers')}: {index} is out of range for a model with {num_layers} "
                                     "layers")
                chosen.add(index % num_layers)
        if self.top_k_layers is not None:
            chosen &= set(range(max(0, num_layers - self.top_k_layers), num_layers))
        if not chosen:
            raise ValueError(f"{self.key('layers')}={self.layers} / {self.key('top_k_layers')}={self.top_k_layers} "
                             "select no layer")
        return sorted(chosen)

    def layer_selected(self, index, num_layers):
        return index in self.selected_layers(num_layers)

    def to_dict(self):
        """Plain dict of the effective settings (for the adapter export's JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _plain(config):
    from mmf_pe.tuners.settings import plain

    return plain(config)
