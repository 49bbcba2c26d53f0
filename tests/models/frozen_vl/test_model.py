"""frozen_vl without MMF's trainer, for every encoder class: forward, what trains, the cache, LoRA, precision,
checkpoints and errors."""
import os

import pytest
import torch

from tests.models.frozen_vl.helpers import ENCODERS, batch, build, grads_after_step

# test id -> (stream widths of the tiny models, fusion)
EXPECTED = {"clip": ({"image": 32, "text": 32}, "cross"), "blip": ({"image": 16, "text": 16}, "cross"),
            "blip_itm": ({"fused": 32}, "concat"), "blip2_opt": ({"image": 32, "qformer": 32, "text": 32}, "concat"),
            "blip2_t5": ({"image": 32, "qformer": 32, "text": 32}, "concat")}


@pytest.mark.parametrize("key", list(ENCODERS))
def test_forward_only_head_trains_and_cache_hit_equals_uncached(vl_hmd, key, tmp_path):
    widths, fusion = EXPECTED[key]
    samples = batch(vl_hmd, key)
    torch.manual_seed(0)
    plain = build(vl_hmd, key, fusion=fusion)
    assert {s.name: s.width for s in plain.streams} == widths
    assert plain.mode_label() == f"{ENCODERS[key][0]}-{fusion}/fc"
    cached = build(vl_hmd, key, fusion=fusion, embedding_cache={"enabled": True, "dir": str(tmp_path)})
    cached.head.load_state_dict(plain.head.state_dict())
    plain.eval(), cached.eval()
    with torch.no_grad():
        expected = plain.forward(samples)["scores"]
        first = cached.forward(samples)["scores"]     # misses: computed and stored
        second = cached.forward(samples)["scores"]    # hits only
    assert expected.shape == (4, 2)
    assert torch.allclose(first, expected, atol=1e-5) and torch.allclose(second, expected, atol=1e-5)
    entries = 4 * len(widths)
    assert (cached.cache.misses, cached.cache.hits, len(cached.cache)) == (entries, entries, entries)

    output, with_grad = grads_after_step(plain, samples)
    assert with_grad and all(n.startswith("head.") for n in with_grad)
    assert {n for n, p in plain.named_parameters() if p.requires_grad} == {
        n for n, _ in plain.named_parameters() if n.startswith("head.")}
    assert plain.head_memory["parameters"] == sum(p.numel() for p in plain.head.parameters())


def pe_model_starting_as_identity(vl_hmd, key, pe):
    """(batch, model with `pe`), after checking its encoder gives the plain encoder's features at init."""
    samples = batch(vl_hmd, key)
    plain = build(vl_hmd, key)
    model = build(vl_hmd, key, training_mode="pe", pe=pe)
    plain.eval(), model.eval()
    with torch.no_grad():
        for a, b in zip(plain.encode(samples), model.encode(samples)):
            assert torch.allclose(a, b, atol=1e-5)
    return samples, model


@pytest.mark.parametrize("key", list(ENCODERS))
def test_lora_starts_as_identity_and_only_lora_and_head_train(vl_hmd, key):
    samples, lora = pe_model_starting_as_identity(vl_hmd, key, {"method": "lora", "lora": {"rank": 2}})
    names = lora.pe_parameter_names
    assert names and all(".lora_" in n for n in names)
    for path in lora.spec.towers(lora.backbone).values():  # every tower the features use gets LoRA
        assert any(n.startswith(path + ".") for n in names), path
    parameters = dict(lora.backbone.named_parameters())
    assert parameters[next(n for n in names if "lora_A" in n)].shape[0] == 2
    _, with_grad = grads_after_step(lora, samples)
    assert all(n.startswith("head.") or ".lora_" in n for n in with_grad)
    assert any("lora_B" in n for n in with_grad)
    trained = {n for n, p in lora.named_parameters() if p.requires_grad}
    assert trained == {n for n, _ in lora.named_parameters() if n.startswith("head.") or ".lora_" in n}
    assert lora.mode_label().endswith("/pe/lora")


def test_lora_targets_by_path_or_regex_and_alpha_defaults_to_rank(vl_hmd):
    model = build(vl_hmd, "blip2_opt", training_mode="pe", pe_towers="qformer",
                  pe={"method": "lora", "lora": {"rank": 4, "target_modules": ["attention.attention.query"],
                                                 "layers": [-1]}})
    assert model.pe_parameter_names and all(
        n.startswith("qformer.encoder.layer.1.attention.attention.query.lora_") for n in model.pe_parameter_names)
    lora_layer = model.backbone.get_submodule("qformer.encoder.layer.1.attention.attention.query")
    assert lora_layer.scaling["default"] == 1.0  # alpha null = rank
    regex = build(vl_hmd, "blip", training_mode="pe", pe_towers=["vision"],
                  pe={"method": "lora", "lora": {"rank": 2, "alpha": 4, "target_modules": r"mlp\.fc\d"}})
    assert regex.pe_parameter_names and all(".mlp.fc" in n for n in regex.pe_parameter_names)
    assert regex.backbone.get_submodule("vision_model.encoder.layers.0.mlp.fc1").scaling["default"] == 2.0
    vision_only = build(vl_hmd, "blip", training_mode="pe", pe_towers="vision", pe={"method": "lora"})
    assert vision_only.pe_parameter_names and all(  # the defaults keep only the paths the chosen tower has
        n.startswith("vision_model.") and ".self_attn.qkv.lora_" in n for n in vision_only.pe_parameter_names)
    with pytest.raises(ValueError, match="pe_towers"):
        build(vl_hmd, "blip", training_mode="pe", pe_towers="qformer", pe={"method": "lora"})
    with pytest.raises(ValueError, match="has no nn.Linear 'no_such_proj'"):
        build(vl_hmd, "blip", training_mode="pe",
              pe={"method": "lora", "lora": {"target_modules": ["no_such_proj"]}})


def test_pe_settings_go_through_the_core_method_configs(vl_hmd):
    """Paths are exact (a last part is refused, naming the exact path); unknown keys, moved keys and BERT-only
    methods are errors naming the key."""
    with pytest.raises(ValueError, match=r"has no nn.Linear 'q_proj'.*did you mean \['self_attn.q_proj'\]"):
        build(vl_hmd, "clip", training_mode="pe", pe={"method": "lora", "lora": {"target_modules": ["q_proj"]}})
    with pytest.raises(ValueError, match="pe.lora.reduction_factor is not a key of pe.method='lora'"):
        build(vl_hmd, "clip", training_mode="pe", pe={"method": "lora", "lora": {"reduction_factor": 4}})
    with pytest.raises(ValueError, match="pe.encoders is now model_config.frozen_vl.pe_towers"):
        build(vl_hmd, "clip", training_mode="pe", pe={"method": "lora", "encoders": "vision"})
    with pytest.raises(ValueError, match="pe.method='paper' works on BERT-family encoders only"):
        build(vl_hmd, "clip", training_mode="pe", pe={"method": "paper"})
    with pytest.raises(ValueError, match="pe.lora.train_layer_norms is not supported"):
        build(vl_hmd, "clip", training_mode="pe", pe={"method": "lora", "lora": {"train_layer_norms": True}})
    with pytest.raises(ValueError, match="no default targets for pe.method=ia3"):
        build(vl_hmd, "blip", training_mode="pe", pe={"method": "ia3"})
    with pytest.raises(ValueError, match="frozen_vl.pe.method=lora is set but model_config.frozen_vl.training_mode=fc"):
        build(vl_hmd, "clip", pe={"method": "lora"})  # the mode is training_mode's alone (null = fc)
    # a key of another method's node never reaches the chosen one (frozen_vl.yaml lists lora's and ia3's)
    ia3 = build(vl_hmd, "clip", training_mode="pe", pe={"method": "ia3", "lora": {"rank": 3}})
    assert ia3.pe_config.method == "ia3"


def test_ia3_on_clip_starts_as_identity_and_its_scales_take_no_weight_decay(vl_hmd):
    _, ia3 = pe_model_starting_as_identity(vl_hmd, "clip", {"method": "ia3"})
    names = ia3.pe_parameter_names
    assert names and all(".ia3_l." in n for n in names)
    assert {n.split(".")[0] for n in names} == {"vision_model", "text_model"}
    assert any(".mlp.fc2.ia3_l." in n for n in names) and any(".self_attn.k_proj.ia3_l." in n for n in names)
    assert ia3.mode_label().endswith("/pe/ia3")
    groups = ia3.get_optimizer_parameters(None)
    scales = {id(p) for n, p in ia3.backbone.named_parameters() if n in set(names)}
    assert [g.get("weight_decay") for g in groups] == [None, 0.0]
    assert {id(p) for p in groups[1]["params"]} == scales
    assert not scales & {id(p) for p in groups[0]["params"]}


def test_blip2_text_features_logits_and_layer(vl_hmd, tmp_path):
    samples = batch(vl_hmd, "blip2_opt")
    opt = build(vl_hmd, "blip2_opt", blip2={"text_features": "logits", "logits_length": 20})
    t5 = build(vl_hmd, "blip2_t5", blip2={"text_features": "logits"})
    assert opt.streams[2].width == 20  # logits[:, :, 0]: one value per position, padded to logits_length
    assert t5.streams[2].width == t5.backbone.config.text_config.vocab_size  # first decoder step's logits
    assert "text_decoder" in t5.spec.towers(t5.backbone)
    opt.eval()
    with torch.no_grad():
        text = opt.encode(samples)[2]
        lm_logits = opt.backbone.language_model(input_ids=samples.input_ids,
                                                attention_mask=samples.input_mask).logits[:, :, 0]
    assert torch.allclose(text[:, :12], lm_logits, atol=1e-5) and not text[:, 12:].any()
    cache = {"enabled": True, "dir": str(tmp_path)}
    last, middle = (build(vl_hmd, "blip2_opt", blip2={"text_layer": layer}, embedding_cache=cache)
                    for layer in (-1, 1))
    with torch.no_grad():
        assert not torch.allclose(last.encode(samples)[2], middle.encode(samples)[2])
    assert last.cache.path != middle.cache.path  # the layer is part of the cache key
    with pytest.raises(ValueError, match="text_layer=7 is out of range"):
        build(vl_hmd, "blip2_opt", blip2={"text_layer": 7})


def test_encoder_dtype_half_precision(vl_hmd, caplog, tmp_path):
    samples = batch(vl_hmd, "blip2_opt")
    cache = {"enabled": True, "dir": str(tmp_path)}
    full = build(vl_hmd, "blip2_opt", embedding_cache=cache)
    with caplog.at_level("INFO"):
        half = build(vl_hmd, "blip2_opt", encoder_dtype="bf16", embedding_cache=cache)
    assert half.backbone.vision_model.embeddings.patch_embedding.weight.dtype == torch.bfloat16
    assert half.head.output.weight.dtype == torch.float32
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert "encoder BLIP-2 (bf16)" in messages and "in memory" in messages and "head " in messages
    assert half.cache.path != full.cache.path
    half.eval()
    with torch.no_grad():
        scores = half.forward(samples)["scores"]
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()
    with pytest.raises(ValueError, match="encoder_dtype must be one of"):
        build(vl_hmd, "blip", encoder_dtype="fp8")
    with pytest.raises(ValueError, match="use encoder_dtype fp32"):
        build(vl_hmd, "blip", encoder_dtype="fp16", training_mode="full")


def test_checkpoint_holds_trained_parameters_only_and_restores(vl_hmd):
    samples = batch(vl_hmd, "blip_itm")
    options = dict(training_mode="pe", pe={"method": "lora", "lora": {"rank": 2}})
    model = build(vl_hmd, "blip_itm", **options)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    state = model.state_dict()
    assert all(k.startswith("head.") or ".lora_" in k for k in state) and any(".lora_" in k for k in state)
    restored = build(vl_hmd, "blip_itm", **options)
    assert not restored.load_state_dict(state, strict=False).unexpected_keys
    model.eval(), restored.eval()
    with torch.no_grad():
        assert torch.allclose(model.forward(samples)["scores"], restored.forward(samples)["scores"], atol=1e-6)


def test_wrong_or_missing_directory_is_named(vl_hmd, tmp_path):
    from mmf_pe.models.frozen_vl import FrozenVL
    from tests.models.frozen_vl.helpers import model_config

    missing = str(tmp_path / "no-blip2-here")
    with pytest.raises(FileNotFoundError, match="encoder_dir: '.*no-blip2-here' is not a local BLIP-2 directory"):
        FrozenVL(model_config(missing, "blip2")).build()
    with pytest.raises(ValueError, match="clip_tiny/config.json has model_type 'clip'.*'blip-2'"):
        FrozenVL(model_config(vl_hmd["clip_dir"], "blip2")).build()
    with pytest.raises(ValueError, match="cross fusion needs exactly two feature streams"):
        build(vl_hmd, "blip2_opt", fusion="cross")
    with pytest.raises(ValueError, match="encoder must be one of"):
        FrozenVL(model_config(vl_hmd["clip_dir"], "vilt")).build()


def test_clip_pe_points_other_encoders_to_frozen_vl(vl_hmd):
    from tests.models.clip_pe.helpers import build_model

    with pytest.raises(ValueError, match="model=frozen_vl"):
        build_model(vl_hmd["clip_dir"], encoder="blip")


def test_hf_tokenizer_processor(vl_hmd):
    from omegaconf import OmegaConf

    from mmf_pe.models.frozen_vl.processors import HFTokenizerProcessor

    processor = HFTokenizerProcessor(OmegaConf.create({"tokenizer_config": {"type": vl_hmd["blip_dir"]},
                                                       "max_seq_length": 8}))
    out = processor({"text": "gross cat"})
    tokenizer = processor._tokenizer
    assert out["input_ids"].shape == out["input_mask"].shape == (8,)
    assert out["input_ids"][:4].tolist() == [tokenizer.cls_token_id, tokenizer.convert_tokens_to_ids("gross"),
                                             tokenizer.convert_tokens_to_ids("cat"), tokenizer.sep_token_id]
    assert out["input_mask"].tolist() == [1, 1, 1, 1, 0, 0, 0, 0] and out["text"] == "gross cat"
    with pytest.raises(ValueError, match="max_seq_length"):
        HFTokenizerProcessor(OmegaConf.create({"tokenizer_config": {"type": vl_hmd["blip_dir"]},
                                               "max_seq_length": 100}))
    with pytest.raises(FileNotFoundError, match="absent-tok"):
        HFTokenizerProcessor(OmegaConf.create({"tokenizer_config": {"type": os.path.join(vl_hmd["data_dir"],
                                                                                          "absent-tok")}}))


def test_every_registered_encoder_class_is_under_the_contract_tests():
    """The tests parametrised over helpers.ENCODERS cover each encoder class the model can build: a class added to
    mmf_pe.models.frozen_vl.encoders without a tiny model here fails this test by name."""
    from mmf_pe.models.frozen_vl.encoders import ENCODERS as REGISTERED

    covered = {encoder for encoder, _ in ENCODERS.values()}
    assert covered == set(REGISTERED), f"encoders without contract tests: {sorted(set(REGISTERED) - covered)}"
