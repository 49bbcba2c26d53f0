"""Checkpoints written by the paper's patched setup, read as `visual_bert_pe` PE mode (method `paper`).

The paper edited transformers' `BertOutput`: `AdaptComb1` (hidden -> hidden/10) and `AdaptComb2` (back) beside
`dense` / `LayerNorm` / `dropout`, the computation of our `paper` method. MMF saved them as
`model.bert.encoder.layer.<i>.output.AdaptComb1.*` / `AdaptComb2.*` under `model: visual_bert`. Here those names map
to `...output.adapter.down.*` / `adapter.up.*`, and such a run's config becomes a visual_bert_pe PE config.
"""
import os
import re

from mmf_pe import PACKAGE_DIR

PAPER_NAMES = re.compile(r"\.output\.AdaptComb([12])\.")
OURS = {"1": ".output.adapter.down.", "2": ".output.adapter.up."}
ARCHITECTURE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                     "visual_embedding_dim", "num_labels", "embedding_strategy", "bypass_transformer")


def paper_key(key):
    """`...output.AdaptComb1.weight` -> `...output.adapter.down.weight` (AdaptComb2 -> up); other keys unchanged."""
    return PAPER_NAMES.sub(lambda match: OURS[match.group(1)], key)


def is_paper_state(keys):
    return any(PAPER_NAMES.search(key) for key in keys)


def paper_reduction_factor(state):
    """The reduction factor whose `int(hidden / factor)` is the saved bottleneck (the paper: 768 -> 76, factor 10)."""
    key = next(k for k in state if PAPER_NAMES.search(k) and k.endswith("AdaptComb1.weight"))
    bottleneck, hidden = tuple(state[key].shape)
    factor = hidden // bottleneck
    if int(hidden / factor) != bottleneck:
        raise ValueError(f"{key}: bottleneck {bottleneck} of hidden {hidden} is no int(hidden / factor)")
    return factor


def pe_model_config(state, saved_model_config=None):
    """A complete visual_bert_pe config (our defaults) for a paper checkpoint: the saved run's architecture keys,
    training_mode pe, method paper, the reduction factor the weights have. `bert_model_name` stays null: the
    checkpoint holds every weight."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.load(os.path.join(PACKAGE_DIR, "configs", "models", "visual_bert_pe.yaml"))
    config = defaults.model_config.visual_bert_pe
    for key, value in pe_overrides(state, saved_model_config).items():
        OmegaConf.update(config, key, value, merge=True)
    return config


def pe_overrides(state, saved_model_config=None):
    """{dotted key under model_config.visual_bert_pe: value} that turn a paper run's model into ours."""
    overrides = {"training_mode": "pe", "pe.method": "paper",
                 "pe.paper.reduction_factor": paper_reduction_factor(state), "bert_model_name": None}
    for key in ARCHITECTURE_KEYS:
        try:
            value = saved_model_config.get(key, None) if saved_model_config is not None else None
        except Exception:  # an interpolation this process cannot resolve: our default stays
            value = None
        if value is not None:
            overrides[key] = value
    return overrides


def as_pe_run_config(config, state):
    """A paper run's saved config (dict; `model: visual_bert`) with a visual_bert_pe PE model config instead."""
    from omegaconf import OmegaConf

    config = dict(config)
    saved_model = (config.get("model_config") or {}).get(config.get("model") or "visual_bert", {})
    model_configs = dict(config.get("model_config") or {})
    model_configs["visual_bert_pe"] = OmegaConf.to_container(pe_model_config(state, saved_model), resolve=True)
    config.update(model="visual_bert_pe", model_config=model_configs)
    return config


def evaluate_options(state, saved_model_config=None):
    """MMF command-line options that evaluate a paper checkpoint as visual_bert_pe (rc10 spells null as None)."""
    options = ["model=visual_bert_pe"]
    for key, value in pe_overrides(state, saved_model_config).items():
        options.append(f"model_config.visual_bert_pe.{key}={'None' if value is None else value}")
    return options
