"""Helpers for the PE-method tests: tiny visual_bert_pe models (hidden 32, 2 layers, random weights)."""
import torch

from mmf_pe.tuners import PE_METHODS

TINY = [
    "hidden_size=32", "num_hidden_layers=2", "num_attention_heads=2", "intermediate_size=64", "vocab_size=100",
    "max_position_embeddings=32", "visual_embedding_dim=16", "hidden_dropout_prob=0.0",
    "attention_probs_dropout_prob=0.0",
]
BOTTLENECK = "reduction_factor=4"  # a wider tiny bottleneck (pe.<method>.reduction_factor), where a method has one
# Every registered method, the test-only one of tests/tuners/scale_method included (tests/tuners/conftest.py
# registers it before collection): a new method folder gets every contract test parametrised over METHODS.
METHODS = sorted(PE_METHODS)


def method_of(overrides):
    """The pe.method an override list selects (the paper's adapter when none does)."""
    chosen = [o.split("=", 1)[1] for o in overrides if o.startswith("pe.method=")]
    return chosen[-1] if chosen else "paper"


def build(mode, *overrides, seed=0):
    from mmf_pe.tools.table1 import build_model

    torch.manual_seed(seed)
    method = PE_METHODS.get(method_of(overrides))  # (an unknown name is the model's to refuse)
    has_bottleneck = method is not None and "reduction_factor" in method.config_cls.keys()
    bottleneck = [f"pe.{method.name}.{BOTTLENECK}"] if has_bottleneck else []
    return build_model(mode, TINY + bottleneck + list(overrides))


def trained_by_method(model):
    """The parameters a PE model of this method should train: its own, the classifier, and the LayerNorms or the
    visual projection where its config asks for them (names as in the model's state dict)."""
    expected = {f"model.bert.{n}" for n in model.pe_parameter_names}
    expected |= {n for n, _ in model.model.classifier.named_parameters(prefix="model.classifier")}
    bert = dict(model.model.bert.named_parameters(prefix="model.bert"))
    if model.pe_config.train_layer_norms:  # every LayerNorm (the embeddings' included)
        expected |= {n for n in bert if "LayerNorm" in n}
    if model.config.get("train_visual_projection", False):
        expected |= {n for n in bert if ".embeddings.projection." in n}
    return expected


def pe_model_on_base(method, *overrides):
    """(base fc model, PE model of `method` with the base's weights loaded through the MMF key mapping)."""
    base = build("fc", seed=0)
    model = build("pe", f"pe.method={method}", *overrides, seed=1)
    result = model.load_state_dict(base.state_dict(), strict=False)
    added = {f"model.bert.{name}" for name in model.pe_parameter_names}
    assert not result.unexpected_keys, result.unexpected_keys
    assert set(result.missing_keys) == added, set(result.missing_keys) ^ added
    return base, model


def inputs(batch=3, tokens=6, regions=4, dim=16, vocab=100):
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, vocab, (batch, tokens), generator=generator)
    attention = torch.ones(batch, tokens + regions, dtype=torch.long)
    attention[0, -2:] = 0  # some padded regions
    segments = torch.zeros(batch, tokens, dtype=torch.long)
    visual = torch.randn(batch, regions, dim, generator=generator)
    return input_ids, attention, segments, visual


def encode(model, batch=None):
    """Sequence output of the VisualBERT encoder and the classifier scores."""
    model.eval()
    batch = batch or inputs()
    sequence = model.model.bert(*batch)[0]
    scores = model.model(*batch)["scores"]
    return sequence, scores
