"""The PE method registry (peft's `register_peft_method` pattern): name -> config class, injector, YAML defaults.

A method registers itself from its own folder (`mmf_pe/tuners/<name>/__init__.py`), next to its config class and
its `defaults.yaml`; nothing else names it. See docs/pe-methods.md.
"""
import os
import sys
from dataclasses import MISSING, dataclass, fields

import yaml

DEFAULTS_NAME = "defaults.yaml"


@dataclass(frozen=True)
class PEMethod:
    name: str
    config_cls: type
    inject: callable  # inject(bert, config[, layer_lists]) -> names (relative to bert) of the parameters it added
    defaults_path: str
    any_encoder: bool = False  # inject also takes `layer_lists` (any encoder's ModuleLists of layers), not BERT only

    def defaults(self):
        """The method's YAML defaults (every key; null = unset)."""
        with open(self.defaults_path) as f:
            return yaml.safe_load(f) or {}


PE_METHODS = {}


def register_pe_method(name, config_cls, inject_fn, defaults_path=None, any_encoder=False):
    """Register a PE method. `defaults_path` defaults to `defaults.yaml` next to the module defining `config_cls`;
    it must list exactly the config class's keys with the class's defaults (checked here, so they cannot drift).
    `any_encoder`: `inject_fn(model, config, layer_lists)` works on any encoder's lists of layers (the frozen
    encoders of `frozen_vl` can use it), not only on a BertModel."""
    if name in PE_METHODS:
        raise ValueError(f"pe.method {name!r} is already registered (by {PE_METHODS[name].config_cls.__module__})")
    if defaults_path is None:
        defaults_path = os.path.join(os.path.dirname(sys.modules[config_cls.__module__].__file__), DEFAULTS_NAME)
    method = PEMethod(name, config_cls, inject_fn, defaults_path, any_encoder)
    _check_defaults(method)
    PE_METHODS[name] = method
    return method


def _check_defaults(method):
    defaults = method.defaults()
    expected = {f.name: _default(f) for f in fields(method.config_cls)}
    expected["method"] = method.name
    if set(defaults) != set(expected):
        raise ValueError(f"{method.defaults_path}: keys {sorted(defaults)} differ from {method.config_cls.__name__}'s "
                         f"{sorted(expected)}")
    differ = [k for k in expected if defaults[k] != expected[k]]
    if differ:
        raise ValueError(f"{method.defaults_path}: {differ[0]}: {defaults[differ[0]]!r} in the YAML, "
                         f"{expected[differ[0]]!r} in {method.config_cls.__name__}")


def _default(f):
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def get_pe_method(name):
    if name not in PE_METHODS:
        raise ValueError(f"unknown pe.method {name!r}; known: {sorted(PE_METHODS)}")
    return PE_METHODS[name]


def apply_pe_method(bert, pe_config, layer_lists=None):
    """Add the method's modules to `bert`; returns the names (relative to `bert`) of the parameters it added.

    `layer_lists`: dotted paths of the ModuleLists of layers to use instead of a BertModel's `encoder.layer` (any
    encoder: CLIP's two towers, BLIP-2's three); only methods registered with `any_encoder` take them."""
    method = get_pe_method(pe_config.method)
    if layer_lists is None:
        return method.inject(bert, pe_config)
    if not method.any_encoder:
        raise ValueError(f"pe.method={method.name!r} works on BERT-family encoders only; on this encoder use one of "
                         f"{any_encoder_methods()}")
    return method.inject(bert, pe_config, list(layer_lists))


def any_encoder_methods():
    """The registered methods that go into any encoder's layers (not only a BertModel's)."""
    return sorted(name for name, method in PE_METHODS.items() if method.any_encoder)


def all_pe_keys():
    """Every key some registered method knows."""
    keys = {}
    for method in PE_METHODS.values():
        keys.update(dict.fromkeys(method.config_cls.keys()))
    return list(keys)
