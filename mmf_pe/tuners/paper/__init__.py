"""pe.method=paper: the reference paper's adapter in BERT's FFN output sublayer (shared LayerNorm, rf 10):
each selected layer's `output` becomes an `AdaptBertOutput`."""
from mmf_pe.tuners.batched import BOTTLENECK_HANDLERS, register_batched
from mmf_pe.tuners.bottleneck.layer import AdaptBertOutput
from mmf_pe.tuners.bottleneck.model import inject_paper_adapters
from mmf_pe.tuners.paper.config import PaperConfig
from mmf_pe.tuners.registry import register_pe_method

register_pe_method("paper", PaperConfig, inject_paper_adapters)
register_batched("paper", BOTTLENECK_HANDLERS)  # mixed-adapter batches (mmf_pe/tuners/batched.py)

__all__ = ["AdaptBertOutput", "PaperConfig"]
