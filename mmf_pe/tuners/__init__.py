"""Parameter-efficient methods for BERT-family encoders, one folder per method family (peft's layout).

`apply_pe_method(bert, config)` adds a method's modules to `bert` and returns the names (relative to `bert`) of the
parameters it added; the model decides what trains from them.
"""
from mmf_pe.tuners.bottleneck import inject_paper_adapters
from mmf_pe.tuners.config import PEConfig

PE_METHODS = {
    "paper": inject_paper_adapters,
}


def apply_pe_method(bert, pe_config):
    if pe_config.method not in PE_METHODS:
        raise ValueError(f"unknown pe.method {pe_config.method!r}; known: {sorted(PE_METHODS)}")
    return PE_METHODS[pe_config.method](bert, pe_config)


__all__ = ["PEConfig", "PE_METHODS", "apply_pe_method"]
