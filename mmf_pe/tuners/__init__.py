"""Parameter-efficient methods for BERT-family encoders, one folder per method (peft's layout). Imports no MMF.

Each folder registers its method (`register_pe_method`) with its config class and `defaults.yaml`; every folder of
this package that has a `defaults.yaml` is imported here, so adding a method is adding a folder (docs/pe-methods.md).

    paper     the reference paper's adapter (FFN output, shared LayerNorm, rf 10)          paper/    (bottleneck/)
    pfeiffer  AdapterHub's SeqBn: one adapter after the FFN                                pfeiffer/ (bottleneck/)
    houlsby   AdapterHub's DoubleSeqBn: after attention and FFN, near-identity, LNs train  houlsby/  (bottleneck/)
    lora      peft LoRA on configurable linears (default query, value)                     lora/     (peft_methods/)
    ia3       peft IA3 on key, value and the FFN's inner activation                        ia3/      (peft_methods/)

A model's `pe:` node has one sub-node per method (`pe: {method: lora, lora: {rank: 8}}`): `method_settings(node)`
reads it (mmf_pe/tuners/settings.py, with `resolve_training_mode`; old layouts: mmf_pe/tuners/legacy.py);
`pe_config_from(node)` builds the method's config (unknown keys refused); `apply_pe_method(bert, config)` adds the
method's modules to `bert` and returns the names (relative to `bert`) of the parameters it added; lora and ia3 also
go into any encoder's lists of layers (`apply_pe_method(model, config, layer_lists)`, used by models/frozen_vl).
"""
import importlib
import os
import pkgutil

from mmf_pe.tuners.config import BasePEConfig
from mmf_pe.tuners.registry import (
    DEFAULTS_NAME,
    PE_METHODS,
    all_pe_keys,
    any_encoder_methods,
    apply_pe_method,
    get_pe_method,
    register_pe_method,
)
from mmf_pe.tuners.settings import TRAINING_MODES, method_settings, pe_config_from, resolve_training_mode


def _import_method_folders():
    here = os.path.dirname(__file__)
    for info in sorted(pkgutil.iter_modules([here]), key=lambda i: i.name):
        if info.ispkg and os.path.isfile(os.path.join(here, info.name, DEFAULTS_NAME)):
            importlib.import_module(f"{__name__}.{info.name}")


_import_method_folders()

__all__ = [
    "BasePEConfig", "PE_METHODS", "TRAINING_MODES", "all_pe_keys", "any_encoder_methods", "apply_pe_method",
    "get_pe_method", "method_settings", "pe_config_from", "register_pe_method", "resolve_training_mode",
]
