"""pe.method=paper: the reference paper's adapter in BERT's FFN output sublayer (shared LayerNorm, rf 10)."""
from mmf_pe.tuners.bottleneck.model import inject_paper_adapters
from mmf_pe.tuners.paper.config import PaperConfig
from mmf_pe.tuners.registry import register_pe_method

register_pe_method("paper", PaperConfig, inject_paper_adapters)
