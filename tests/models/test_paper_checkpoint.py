"""Checkpoints written by the paper's patched setup (`output.AdaptComb1/2`, MMF's checkpoint layout, model visual_bert)
load into visual_bert_pe PE mode and score exactly as the paper's computation does.

The reference is written here from the paper's description (its edited transformers 4.10.1 `BertOutput`), not from
this project's adapter code: a VisualBERT whose every `output` sublayer is `PaperBertOutput`.
"""
import os

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from mmf_pe.tools.table1 import build_model

ARCH = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "vocab_size": 100, "max_position_embeddings": 32, "visual_embedding_dim": 16, "num_labels": 2}
OPTIONS = [f"{k}={v}" for k, v in ARCH.items()] + ["hidden_dropout_prob=0.0", "attention_probs_dropout_prob=0.0"]


class PaperBertOutput(nn.Module):
    """transformers 4.10.1's BertOutput as the paper edited it (adapt=True): AdaptComb1 hidden -> int(hidden / 10),
    AdaptComb2 back; the adapter reads the sublayer's LayerNorm of h and adds h; then the usual residual LayerNorm."""

    def __init__(self, hidden_size, intermediate_size, eps, dropout):
        super().__init__()
        self.dense = nn.Linear(intermediate_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.AdaptComb1 = nn.Linear(hidden_size, int(hidden_size / 10))
        self.AdaptComb2 = nn.Linear(int(hidden_size / 10), hidden_size)

    def forward(self, hidden_states, input_tensor):
        hidden_states = self.dropout(self.dense(hidden_states))
        adapted = self.AdaptComb2(torch.relu(self.AdaptComb1(self.LayerNorm(hidden_states)))) + hidden_states
        return self.LayerNorm(adapted + input_tensor)


def paper_model(seed=0):
    """A plain VisualBERT classifier (no adapters) with the paper's BertOutput in every layer; random weights."""
    torch.manual_seed(seed)
    model = build_model("fc", OPTIONS)
    for layer in model.model.bert.encoder.layer:
        original = layer.output
        patched = PaperBertOutput(ARCH["hidden_size"], ARCH["intermediate_size"], original.LayerNorm.eps, 0.0)
        patched.load_state_dict(original.state_dict(), strict=False)
        for linear in (patched.AdaptComb1, patched.AdaptComb2):  # trained-looking, far from identity
            nn.init.normal_(linear.weight, std=0.5)
            nn.init.normal_(linear.bias, std=0.5)
        layer.output = patched
    for parameter in model.parameters():  # every weight random, so nothing can match by accident
        with torch.no_grad():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return model.eval()


def inputs(size=3, tokens=6, regions=4):
    """VisualBERTForClassification's inputs: ids, attention mask (some regions padded), segments, region features."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, ARCH["vocab_size"], (size, tokens), generator=generator)
    attention = torch.ones(size, tokens + regions, dtype=torch.long)
    attention[0, -2:] = 0
    segments = torch.zeros(size, tokens, dtype=torch.long)
    visual = torch.randn(size, regions, ARCH["visual_embedding_dim"], generator=generator)
    visual_segments = torch.ones(size, regions, dtype=torch.long)
    return input_ids, attention, segments, visual, None, visual_segments


def scores(model):
    with torch.no_grad():
        return model.model(*inputs())["scores"]


def paper_checkpoint(directory, model):
    """MMF's checkpoint layout (best.ckpt: model, optimizer, config, counts) of the paper's run, model visual_bert."""
    os.makedirs(directory, exist_ok=True)
    config = {"model": "visual_bert", "datasets": "hateful_memes",
              "model_config": {"visual_bert": {**ARCH, "freeze_base": True, "training_head_type": "classification",
                                               "bert_model_name": "bert-base-uncased"}}}
    checkpoint = {"model": model.state_dict(), "optimizer": {}, "lr_scheduler": {}, "config": config,
                  "num_updates": 22000, "current_iteration": 22000, "current_epoch": 42, "best_update": 22000,
                  "best_iteration": 22000, "best_metric_value": 0.7}
    path = os.path.join(directory, "best.ckpt")
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model = paper_model()
    keys = model.state_dict()
    assert "model.bert.encoder.layer.1.output.AdaptComb1.weight" in keys
    assert tuple(keys["model.bert.encoder.layer.1.output.AdaptComb2.weight"].shape) == (32, 3)
    directory = str(tmp_path_factory.mktemp("paper_run"))
    return {"model": model, "scores": scores(model), "path": paper_checkpoint(directory, model), "dir": directory}


def test_paper_checkpoint_through_resume_file_scores_as_the_paper(reference):
    """checkpoint.resume_file: rc10's Checkpoint._load hands the file's `model` dict to model.load_state_dict."""
    state = torch.load(reference["path"], weights_only=True)["model"]
    model = build_model("pe", OPTIONS + ["pe.method=paper", "pe.paper.reduction_factor=10"])
    model.load_state_dict(state, strict=True)  # every key of the file has its place, none is left out
    model.eval()
    torch.testing.assert_close(scores(model), reference["scores"], rtol=0, atol=1e-6)
    down = model.model.bert.encoder.layer[0].output.adapter.down.weight
    assert torch.equal(down, reference["model"].model.bert.encoder.layer[0].output.AdaptComb1.weight)


def test_paper_checkpoint_exports_as_a_pe_adapter(reference, tmp_path):
    from mmf_pe.experiments.export import export
    from mmf_pe.tuners.export import load_adapter

    weights, path, model = export(reference["dir"], str(tmp_path / "adapter"))
    assert path == reference["path"] and model.training_mode == "pe" and model.pe_config.reduction_factor == 10
    torch.testing.assert_close(scores(model.eval()), reference["scores"], rtol=0, atol=1e-6)
    saved = load_file(weights)
    paper = reference["model"].state_dict()
    for i in range(ARCH["num_hidden_layers"]):
        for ours, theirs in (("adapter.down", "AdaptComb1"), ("adapter.up", "AdaptComb2")):
            for kind in ("weight", "bias"):
                key = f"model.bert.encoder.layer.{i}.output.{{}}.{kind}"
                assert torch.equal(saved[key.format(ours)], paper[key.format(theirs)])
    # the exported adapter on the same base weights (put on after them, as load_adapter does) scores the same
    base = build_model("pe", OPTIONS + ["pe.method=paper", "pe.paper.reduction_factor=10"])
    base.load_state_dict({k: v for k, v in paper.items() if "AdaptComb" not in k}, strict=False)
    load_adapter(base, str(tmp_path / "adapter"))
    torch.testing.assert_close(scores(base.eval()), reference["scores"], rtol=0, atol=1e-6)
