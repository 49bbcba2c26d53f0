"""Bottleneck adapters (peft has none): the paper's, Pfeiffer's and Houlsby's, in BERT's residual sublayers."""
from mmf_pe.tuners.bottleneck.layer import (
    AdaptBertOutput,
    BottleneckAdapter,
    SequentialAdapterOutput,
)
from mmf_pe.tuners.bottleneck.model import (
    inject_houlsby_adapters,
    inject_paper_adapters,
    inject_pfeiffer_adapters,
)

__all__ = [
    "AdaptBertOutput", "BottleneckAdapter", "SequentialAdapterOutput",
    "inject_paper_adapters", "inject_pfeiffer_adapters", "inject_houlsby_adapters",
]
