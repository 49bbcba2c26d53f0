"""Wiring: put the paper's adapter into every (selected) encoder layer of a BERT model."""
from mmf_pe.tuners.bottleneck.layer import PaperAdapterOutput


def inject_paper_adapters(bert, pe_config, init_range=0.02):
    """Wrap `encoder.layer[i].output` of `bert` (a BertModel-like module). Returns the new parameters' names."""
    hidden_size = bert.config.hidden_size
    bottleneck_size = int(hidden_size / pe_config.reduction_factor)
    if bottleneck_size < 1:
        raise ValueError(f"pe.reduction_factor {pe_config.reduction_factor} leaves no bottleneck for hidden {hidden_size}")
    added = []
    for index, layer in enumerate(bert.encoder.layer):
        if not pe_config.layer_selected(index):
            continue
        if isinstance(layer.output, PaperAdapterOutput):
            raise RuntimeError(f"encoder layer {index} already has an adapter")
        layer.output = PaperAdapterOutput(layer.output, bottleneck_size, init_range)
        added += [f"encoder.layer.{index}.output.adapter.{name}" for name, _ in layer.output.adapter.named_parameters()]
    return added
