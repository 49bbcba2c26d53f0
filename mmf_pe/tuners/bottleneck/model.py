"""Wiring: put bottleneck adapters into the (selected) encoder layers of a BERT model.

Every injector takes a BertModel-like module and its method's config (a BasePEConfig) and returns the names
(relative to it) of the parameters it added.
"""
from mmf_pe.tuners.bottleneck.layer import AdaptBertOutput, SequentialAdapterOutput

ADAPTER_TYPES = (AdaptBertOutput, SequentialAdapterOutput)


def bottleneck_size(bert, pe_config):
    hidden_size = bert.config.hidden_size
    size = int(hidden_size / pe_config.reduction_factor)
    if size < 1:
        raise ValueError(
            f"pe.reduction_factor {pe_config.reduction_factor} leaves no bottleneck for hidden {hidden_size}")
    return size


def _wrap(bert, pe_config, sublayer_paths, make):
    """Replace each sublayer `encoder.layer.<i>.<path>` of the selected layers by `make(sublayer)`."""
    added = []
    layers = bert.encoder.layer
    for index in pe_config.selected_layers(len(layers)):
        for path in sublayer_paths:
            parent_path, _, attribute = path.rpartition(".")
            parent = layers[index].get_submodule(parent_path) if parent_path else layers[index]
            sublayer = getattr(parent, attribute)
            if isinstance(sublayer, ADAPTER_TYPES):
                raise RuntimeError(f"encoder layer {index} already has an adapter in {path}")
            wrapped = make(sublayer)
            setattr(parent, attribute, wrapped)
            prefix = f"encoder.layer.{index}.{path}.adapter."
            added += [prefix + name for name, _ in wrapped.adapter.named_parameters()]
    return added


def inject_paper_adapters(bert, pe_config, init_range=0.02):
    """The reference paper's adapter: `encoder.layer[i].output` becomes an `AdaptBertOutput`."""
    size = bottleneck_size(bert, pe_config)
    return _wrap(bert, pe_config, ["output"], lambda sublayer: AdaptBertOutput(sublayer, size, init_range))


def _sequential(bert, pe_config, sublayer_paths, ln_before):
    size = bottleneck_size(bert, pe_config)
    non_linearity, init_weights = pe_config.get("non_linearity"), pe_config.get("init_weights")
    return _wrap(
        bert, pe_config, sublayer_paths,
        lambda sublayer: SequentialAdapterOutput(sublayer, size, ln_before, non_linearity, init_weights),
    )


def inject_pfeiffer_adapters(bert, pe_config):
    """Pfeiffer et al. 2020 (AdapterHub `SeqBnConfig`): one adapter after the FFN, after its LayerNorm."""
    return _sequential(bert, pe_config, ["output"], ln_before=True)


def inject_houlsby_adapters(bert, pe_config):
    """Houlsby et al. 2019 (AdapterHub `DoubleSeqBnConfig`): adapters after attention and after the FFN."""
    return _sequential(bert, pe_config, ["attention.output", "output"], ln_before=False)
