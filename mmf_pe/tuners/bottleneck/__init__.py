"""Bottleneck adapters (peft has none): the paper's adapter in BERT's output sublayer."""
from mmf_pe.tuners.bottleneck.layer import BottleneckAdapter, PaperAdapterOutput
from mmf_pe.tuners.bottleneck.model import inject_paper_adapters

__all__ = ["BottleneckAdapter", "PaperAdapterOutput", "inject_paper_adapters"]
