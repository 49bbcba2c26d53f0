"""pe.method=ia3: peft's IA3, learned scales of keys, values and the FFN's inner activation (Liu et al. 2022)."""
from mmf_pe.tuners.batched import IA3_HANDLERS, register_batched
from mmf_pe.tuners.ia3.config import IA3Config
from mmf_pe.tuners.peft_methods.model import inject_ia3
from mmf_pe.tuners.registry import register_pe_method

register_pe_method("ia3", IA3Config, inject_ia3, any_encoder=True)
register_batched("ia3", IA3_HANDLERS)  # mixed-adapter batches (mmf_pe/tuners/batched.py)
