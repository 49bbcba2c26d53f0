"""pe.method=pfeiffer: AdapterHub's SeqBn, one adapter after the FFN (Pfeiffer et al. 2020)."""
from mmf_pe.tuners.batched import BOTTLENECK_HANDLERS, register_batched
from mmf_pe.tuners.bottleneck.model import inject_pfeiffer_adapters
from mmf_pe.tuners.pfeiffer.config import PfeifferConfig
from mmf_pe.tuners.registry import register_pe_method

register_pe_method("pfeiffer", PfeifferConfig, inject_pfeiffer_adapters)
register_batched("pfeiffer", BOTTLENECK_HANDLERS)  # mixed-adapter batches (mmf_pe/tuners/batched.py)
