"""Parameter-efficient methods for BERT-family encoders, one folder per method family (peft's layout).

`apply_pe_method(bert, config)` adds a method's modules to `bert` and returns the names (relative to `bert`) of the
parameters it added; the model decides what trains from them.

    paper     the reference paper's adapter (FFN output, shared LayerNorm, rf 10)          bottleneck/
    pfeiffer  AdapterHub's SeqBn: one adapter after the FFN                                bottleneck/
    houlsby   AdapterHub's DoubleSeqBn: after attention and FFN, near-identity, LNs train  bottleneck/
    lora      peft LoRA on configurable linears (default query, value)                     peft_methods/
    ia3       peft IA3 on key, value and the FFN's inner activation                        peft_methods/
"""
from mmf_pe.tuners.bottleneck import inject_houlsby_adapters, inject_paper_adapters, inject_pfeiffer_adapters
from mmf_pe.tuners.config import METHOD_DEFAULTS, PEConfig
from mmf_pe.tuners.peft_methods import inject_ia3, inject_lora

PE_METHODS = {
    "paper": inject_paper_adapters,
    "pfeiffer": inject_pfeiffer_adapters,
    "houlsby": inject_houlsby_adapters,
    "lora": inject_lora,
    "ia3": inject_ia3,
}


def apply_pe_method(bert, pe_config):
    if pe_config.method not in PE_METHODS:
        raise ValueError(f"unknown pe.method {pe_config.method!r}; known: {sorted(PE_METHODS)}")
    return PE_METHODS[pe_config.method](bert, pe_config)


__all__ = ["PEConfig", "PE_METHODS", "METHOD_DEFAULTS", "apply_pe_method"]
