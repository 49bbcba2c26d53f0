"""PE methods: init behaviour, what trains, layer/target selection, base checkpoints, LoRA merge."""
import pytest
import torch

from mmf_pe.tuners import pe_config_from
from tests.tuners.helpers import METHODS, build, encode, inputs, pe_model_on_base, trained_by_method


@pytest.mark.parametrize("method, overrides", [
    ("pfeiffer", ["pe.pfeiffer.init_weights=zeros"]),
    ("houlsby", ["pe.houlsby.init_weights=zeros"]),
    ("lora", []),  # B = 0
    ("ia3", []),   # scaling vectors = 1
])
def test_exact_identity_at_init(method, overrides):
    base, model = pe_model_on_base(method, *overrides)
    with torch.no_grad():
        for expected, actual in zip(encode(base), encode(model)):
            torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["houlsby", "pfeiffer"])
def test_near_identity_init(method):
    """Houlsby's init (its default; pfeiffer on request) starts close to the base model, BERT's init does not."""
    base, near = pe_model_on_base(method, f"pe.{method}.init_weights=houlsby")
    _, bert_init = pe_model_on_base(method, f"pe.{method}.init_weights=bert", f"pe.{method}.reduction_factor=1")
    with torch.no_grad():
        reference = encode(base)[0]
        near_gap = (encode(near)[0] - reference).abs().max().item()
        bert_gap = (encode(bert_init)[0] - reference).abs().max().item()
    assert 0 < near_gap < 0.05
    assert bert_gap > near_gap
    assert pe_config_from({"method": "houlsby"}).init_weights == "houlsby"


def test_paper_is_not_identity_but_zero_up_is():
    base, model = pe_model_on_base("paper")
    with torch.no_grad():
        assert not torch.allclose(encode(model)[0], encode(base)[0], atol=1e-4)
        for layer in model.model.bert.encoder.layer:
            layer.output.adapter.up.weight.zero_()
            layer.output.adapter.up.bias.zero_()
        torch.testing.assert_close(encode(model)[0], encode(base)[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_only_method_parameters_get_gradients(method):
    model = build("pe", f"pe.method={method}")
    model.train()
    scores = model.model(*inputs())["scores"]
    torch.nn.functional.cross_entropy(scores, torch.tensor([0, 1, 1])).backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    # all nonzero, except LoRA's A at init (B = 0 blocks its gradient)
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n in with_grad and "lora_A" not in n)
    assert model.pe_parameter_names, f"pe.method={method} added no parameter"
    expected = trained_by_method(model)
    assert with_grad == expected, with_grad ^ expected
    if method == "houlsby":  # Houlsby trains the LayerNorms (embeddings' included) by default
        assert "model.bert.embeddings.LayerNorm.weight" in expected
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_knobs_layer_norms_visual_projection_top_k():
    model = build("pe", "pe.method=lora", "pe.lora.train_layer_norms=true", "train_visual_projection=true",
                  "pe.lora.top_k_layers=1", "pe.lora.rank=2")
    trained = {n for n, p in model.model.bert.named_parameters() if p.requires_grad}
    assert all(".layer.1." in n for n in model.pe_parameter_names) and model.pe_parameter_names
    assert {"embeddings.projection.weight", "embeddings.LayerNorm.weight", "encoder.layer.0.output.LayerNorm.bias"} \
        <= trained
    lora_a = model.model.bert.encoder.layer[1].attention.self.query.lora_A["default"].weight
    assert lora_a.shape == (2, 32)
    houlsby = build("pe", "pe.method=houlsby", "pe.houlsby.train_layer_norms=false")
    assert not any("LayerNorm" in n for n, p in houlsby.model.bert.named_parameters() if p.requires_grad)


def test_layer_selection():
    config = pe_config_from({"method": "pfeiffer", "layers": [0, -1, 5], "top_k_layers": 3})
    assert config.selected_layers(6) == [5]
    assert pe_config_from({"layers": [-1]}).selected_layers(12) == [11]
    with pytest.raises(ValueError, match="out of range"):
        pe_config_from({"layers": [12]}).selected_layers(12)
    with pytest.raises(ValueError, match="select no layer"):
        pe_config_from({"layers": [0], "top_k_layers": 1}).selected_layers(12)
    model = build("pe", "pe.method=houlsby", "pe.houlsby.layers=[1]")
    assert model.pe_parameter_names and all(n.startswith("encoder.layer.1.") for n in model.pe_parameter_names)


def test_target_modules_match_only_what_is_meant():
    """IA3's FFN target "output.dense" must not also hit attention.output.dense (a plain peft suffix would)."""
    model = build("pe", "pe.method=ia3")
    wrapped = {p.replace("model.bert.", "") for p in model.peft_wrapped_paths}
    assert wrapped == {f"encoder.layer.{i}.{m}" for i in (0, 1)
                       for m in ("attention.self.key", "attention.self.value", "output.dense")}
    ffn = model.model.bert.encoder.layer[0].output.dense
    assert ffn.ia3_l["default"].shape == (1, 64)  # feed-forward: scales the 64-wide input
    with pytest.raises(ValueError, match="no nn.Linear 'attention.self.quer'"):
        build("pe", "pe.method=lora", "pe.lora.target_modules=[attention.self.quer,attention.self.value]")
    regex = build("pe", "pe.method=lora", "pe.lora.target_modules='attention\\.self\\.(key|query)'")
    assert {p.rsplit(".", 1)[-1] for p in regex.peft_wrapped_paths} == {"key", "query"}


def test_unknown_method_and_bad_knobs():
    with pytest.raises(ValueError, match="unknown pe.method"):
        build("pe", "pe.method=prefix")
    with pytest.raises(ValueError, match="non_linearity"):
        build("pe", "pe.method=pfeiffer", "pe.pfeiffer.non_linearity=softplus")
    with pytest.raises(ValueError, match="rank"):
        pe_config_from({"method": "lora", "rank": 0})


def test_base_checkpoint_loads_into_peft_models_and_merge():
    """Base keys (`...query.weight`) load into `...query.base_layer.weight`; merging gives back plain names."""
    base, model = pe_model_on_base("lora")
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)  # a trained-looking update
    with torch.no_grad():
        before = encode(model)
        assert not torch.allclose(before[0], encode(base)[0], atol=1e-4)
        assert model.merge_pe() == 4
        after = encode(model)
    torch.testing.assert_close(after[0], before[0], rtol=1e-4, atol=1e-5)
    assert set(model.state_dict()) == set(base.state_dict())
    # MMF's pretrained mapping (checkpoint.pretrained_state_mapping) goes through format_state_key as well.
    _, lora = pe_model_on_base("lora")
    key = "model.bert.encoder.layer.1.attention.self.value.weight"
    assert lora.format_state_key(key) == "model.bert.encoder.layer.1.attention.self.value.base_layer.weight"
    assert lora.format_state_key("bert.bert.pooler.dense.weight") == "model.bert.pooler.dense.weight"


def test_backward_stops_below_the_lowest_adapter():
    """With adapters only in the top layer and nothing below training, autograd records no graph below it:
    the frozen lower layers cost no backward time or activation memory (no torch.no_grad needed)."""
    model = build("pe", "pe.method=pfeiffer", "pe.pfeiffer.top_k_layers=1")
    outputs = {}
    for index, layer in enumerate(model.model.bert.encoder.layer):
        layer.register_forward_hook(lambda module, args, out, i=index: outputs.__setitem__(i, out[0]))
    model.train()
    model.model(*inputs())["scores"].sum().backward()
    assert not outputs[0].requires_grad and outputs[0].grad_fn is None
    assert outputs[1].requires_grad


def test_optimizer_groups_do_not_decay_ia3_scales():
    from omegaconf import OmegaConf

    model = build("pe", "pe.method=ia3")
    config = OmegaConf.create({"model": "visual_bert_pe",
                               "model_config": {"visual_bert_pe": {"finetune_lr_multiplier": 1}},
                               "optimizer": {"params": {"lr": 1e-3}}})
    groups = model.get_optimizer_parameters(config)
    assert all(g["lr"] == 1e-3 for g in groups)
    decayed = {id(p) for g in groups if g.get("weight_decay", 0.0) for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert not any(".ia3_l." in names[i] for i in decayed)
    assert {id(p) for g in groups for p in g["params"]} == {id(p) for p in model.parameters() if p.requires_grad}


# A paper-method checkpoint's keys as saved before the module was renamed AdaptBertOutput (was PaperAdapterOutput).
KEYS_BEFORE_THE_RENAME = [
    "model.bert.encoder.layer.0.output.dense.weight",
    "model.bert.encoder.layer.0.output.dense.bias",
    "model.bert.encoder.layer.0.output.LayerNorm.weight",
    "model.bert.encoder.layer.0.output.LayerNorm.bias",
    "model.bert.encoder.layer.0.output.adapter.down.weight",
    "model.bert.encoder.layer.0.output.adapter.down.bias",
    "model.bert.encoder.layer.0.output.adapter.up.weight",
    "model.bert.encoder.layer.0.output.adapter.up.bias",
    "model.bert.encoder.layer.1.output.adapter.down.weight",
    "model.bert.encoder.layer.1.output.adapter.down.bias",
    "model.bert.encoder.layer.1.output.adapter.up.weight",
    "model.bert.encoder.layer.1.output.adapter.up.bias",
]


def test_the_paper_module_is_adapt_bert_output_and_old_checkpoints_load(tmp_path):
    from mmf_pe.tuners.legacy import PaperAdapterOutput
    from mmf_pe.tuners.paper import AdaptBertOutput

    model = build("pe", "pe.method=paper")
    assert all(type(layer.output) is AdaptBertOutput for layer in model.model.bert.encoder.layer)
    assert PaperAdapterOutput is AdaptBertOutput
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(3)
    old = {key: torch.randn(shapes[key], generator=generator) for key in KEYS_BEFORE_THE_RENAME}
    torch.save({"model": old}, tmp_path / "old.ckpt")
    result = model.load_state_dict(torch.load(tmp_path / "old.ckpt", weights_only=True)["model"], strict=False)
    assert not result.unexpected_keys
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], old[key]) for key in KEYS_BEFORE_THE_RENAME)
