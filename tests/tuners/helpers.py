"""Helpers for the PE-method tests: tiny visual_bert_pe models (hidden 32, 2 layers, random weights)."""
import torch

TINY = [
    "hidden_size=32", "num_hidden_layers=2", "num_attention_heads=2", "intermediate_size=64", "vocab_size=100",
    "max_position_embeddings=32", "visual_embedding_dim=16", "hidden_dropout_prob=0.0",
    "attention_probs_dropout_prob=0.0",
]
BOTTLENECK = ["pe.reduction_factor=4"]  # a wider tiny bottleneck, for the methods that have one
METHODS = ["paper", "pfeiffer", "houlsby", "lora", "ia3"]


def build(mode, *overrides, seed=0):
    from mmf_pe.tools.table1 import build_model

    torch.manual_seed(seed)
    peft_method = any(o in ("pe.method=lora", "pe.method=ia3") for o in overrides)
    return build_model(mode, TINY + ([] if peft_method else BOTTLENECK) + list(overrides))


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
