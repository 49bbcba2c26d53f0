"""pe.method=houlsby: AdapterHub's DoubleSeqBn, adapters after attention and after the FFN (Houlsby et al. 2019)."""
from mmf_pe.tuners.batched import BOTTLENECK_HANDLERS, register_batched
from mmf_pe.tuners.bottleneck.model import inject_houlsby_adapters
from mmf_pe.tuners.houlsby.config import HoulsbyConfig
from mmf_pe.tuners.registry import register_pe_method

register_pe_method("houlsby", HoulsbyConfig, inject_houlsby_adapters)
register_batched("houlsby", BOTTLENECK_HANDLERS)  # mixed-adapter batches (mmf_pe/tuners/batched.py)
