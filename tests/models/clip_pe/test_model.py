"""clip_pe without MMF's trainer: fusions, what trains, LoRA, the cache, checkpoints, errors."""
import os

import pytest
import torch

from tests.models.clip_pe.helpers import build_model
from tests.models.frozen_vl.helpers import grads_after_step, samples_from


def batch(clip_dir, n=4, image_size=32, seed=0):
    from omegaconf import OmegaConf

    from mmf_pe.models.frozen_vl.processors import CLIPTokenizerProcessor

    tokenizer = CLIPTokenizerProcessor(OmegaConf.create({"tokenizer_config": {"type": clip_dir},
                                                         "max_seq_length": 16}))
    return samples_from(tokenizer, n=n, image_size=image_size, seed=seed)


@pytest.mark.parametrize("fusion,pre_output,fused", [("concat", 1, 16), ("cross", 0, 64), ("cross", 1, 64)])
def test_fusions_forward_backward_only_head_trains(clip_hmd, fusion, pre_output, fused):
    model = build_model(clip_hmd["clip_dir"], fusion=fusion, num_pre_output_layers=pre_output)
    output, with_grad = grads_after_step(model, batch(clip_hmd["clip_dir"]))
    assert output["scores"].shape == (4, 2)
    assert model.head_memory["fused_dim"] == fused
    assert with_grad and all(n.startswith("head.") for n in with_grad)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {n for n, _ in model.named_parameters() if n.startswith("head.")}
    assert model.head_memory["parameters"] == sum(p.numel() for p in model.head.parameters())
    assert model.parameter_counts()["trained"] == model.head_memory["parameters"]


def test_lora_starts_as_identity_and_only_lora_and_head_train(clip_hmd):
    samples = batch(clip_hmd["clip_dir"])
    plain = build_model(clip_hmd["clip_dir"])
    lora = build_model(clip_hmd["clip_dir"], training_mode="pe", pe={"method": "lora", "lora": {"rank": 2}})
    plain.eval(), lora.eval()
    with torch.no_grad():
        for a, b in zip(plain.encode(samples), lora.encode(samples)):
            assert torch.allclose(a, b, atol=1e-6)
    assert (plain.mode_label(), lora.mode_label()) == ("clip-cross/fc", "clip-cross/pe/lora")
    assert lora.pe_parameter_names and all("lora_" in n for n in lora.pe_parameter_names)
    assert any(n.startswith("vision_model.") for n in lora.pe_parameter_names)
    assert any(n.startswith("text_model.") for n in lora.pe_parameter_names)
    lora_a = dict(lora.clip.named_parameters())[next(n for n in lora.pe_parameter_names if "lora_A" in n)]
    assert lora_a.shape[0] == 2, "pe.rank is honoured"
    _, with_grad = grads_after_step(lora, samples)
    assert all(n.startswith("head.") or "lora_" in n for n in with_grad)
    assert any("lora_B" in n for n in with_grad)
    assert lora.parameter_counts()["adapter"] == sum(
        p.numel() for n, p in lora.clip.named_parameters() if n in set(lora.pe_parameter_names))


def test_cache_matches_uncached_and_invalidates(clip_hmd, tmp_path):
    samples = batch(clip_hmd["clip_dir"])
    torch.manual_seed(0)
    plain = build_model(clip_hmd["clip_dir"])
    cached = build_model(clip_hmd["clip_dir"], embedding_cache={"enabled": True, "dir": str(tmp_path)})
    cached.head.load_state_dict(plain.head.state_dict())
    plain.eval(), cached.eval()
    with torch.no_grad():
        expected = plain.forward(samples)["scores"]
        first = cached.forward(samples)["scores"]     # misses: computed and stored
        second = cached.forward(samples)["scores"]    # hits only
    assert torch.allclose(first, expected, atol=1e-6) and torch.allclose(second, expected, atol=1e-6)
    assert cached.cache.misses == 8 and cached.cache.hits == 8 and len(cached.cache) == 8
    # an edited image is a new entry, never a stale hit
    samples.image[0, 0, 0, 0] += 1.0
    with torch.no_grad():
        assert torch.allclose(cached.forward(samples)["scores"], plain.forward(samples)["scores"], atol=1e-6)
    assert len(cached.cache) == 9
    # other weights -> another fingerprint -> another, empty cache directory
    with torch.no_grad():
        plain.clip.text_model.final_layer_norm.weight.add_(0.5)
    changed = build_model(clip_hmd["clip_dir"], embedding_cache={"enabled": True, "dir": str(tmp_path)})
    assert changed.cache.path == cached.cache.path  # same directory: weights come from clip_dir again
    changed.clip.text_model.final_layer_norm.weight.data.add_(0.5)
    changed.cache = changed._open_cache()
    assert changed.cache.path != cached.cache.path and len(changed.cache) == 0
    assert len(os.listdir(tmp_path)) == 2


def test_cache_refused_when_encoders_train(clip_hmd, tmp_path):
    with pytest.raises(ValueError, match="embedding_cache needs frozen encoders"):
        build_model(clip_hmd["clip_dir"], training_mode="pe", pe={"method": "lora"},
                    embedding_cache={"enabled": True, "dir": str(tmp_path)})


def test_checkpoint_holds_trained_parameters_only_and_restores(clip_hmd):
    samples = batch(clip_hmd["clip_dir"])
    model = build_model(clip_hmd["clip_dir"], training_mode="pe", pe={"method": "lora", "lora": {"rank": 2}})
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    state = model.state_dict()
    assert all(k.startswith("head.") or "lora_" in k for k in state)
    assert any("lora_" in k for k in state)
    restored = build_model(clip_hmd["clip_dir"], training_mode="pe", pe={"method": "lora", "lora": {"rank": 2}})
    result = restored.load_state_dict(state, strict=False)
    assert not result.unexpected_keys
    model.eval(), restored.eval()
    with torch.no_grad():
        assert torch.allclose(model.forward(samples)["scores"], restored.forward(samples)["scores"], atol=1e-6)
    full = build_model(clip_hmd["clip_dir"], save_frozen_encoders=True).state_dict()
    assert any(k.startswith("clip.vision_model.") for k in full)


def test_missing_clip_dir_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "no-clip-here")
    with pytest.raises(FileNotFoundError, match="no-clip-here.*not a local CLIP directory"):
        build_model(missing)


def test_oversized_cross_head_is_refused_before_allocation(clip_hmd):
    with pytest.raises(ValueError, match=r"1,073,\d{3},\d{3} parameters.*head_memory_limit_gb=12"):
        build_model(clip_hmd["clip_dir"], fusion="cross", map_dim=1024, num_pre_output_layers=1)
    small = build_model(clip_hmd["clip_dir"], fusion="cross", map_dim=1024, num_pre_output_layers=0,
                        head_memory_limit_gb=1)
    assert small.head_memory["fused_dim"] == 1024 ** 2


def test_image_size_mismatch_names_the_fix(clip_hmd):
    model = build_model(clip_hmd["clip_dir"])
    with pytest.raises(ValueError, match="expects 32x32"):
        model.forward(batch(clip_hmd["clip_dir"], image_size=48))


def test_clip_tokenizer_processor(clip_hmd):
    from omegaconf import OmegaConf

    from mmf_pe.models.frozen_vl.processors import CLIPTokenizerProcessor

    processor = CLIPTokenizerProcessor(OmegaConf.create({"tokenizer_config": {"type": clip_hmd["clip_dir"]},
                                                         "max_seq_length": 8}))
    out = processor({"text": "gross cat"})
    eos = processor._tokenizer.eos_token_id
    assert out["input_ids"].shape == out["input_mask"].shape == (8,)
    assert out["input_ids"][0] == processor._tokenizer.bos_token_id and out["input_ids"][-1] == eos  # truncated
    assert out["input_mask"].sum() == 8 and out["text"] == "gross cat"
    short = processor({"text": "a"})
    assert short["input_mask"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="max_seq_length"):
        CLIPTokenizerProcessor(OmegaConf.create({"tokenizer_config": {"type": clip_hmd["clip_dir"]},
                                                 "max_seq_length": 100}))


def test_lora_settings_and_layers_from_the_top(clip_hmd):
    model = build_model(clip_hmd["clip_dir"], training_mode="pe", pe_towers="text",
                        pe={"method": "lora", "lora": {"rank": 3, "alpha": 3, "layers": [-1],
                            "target_modules": ["self_attn.k_proj"]}})
    depth = model.clip.config.text_config.num_hidden_layers
    names = model.pe_parameter_names
    assert names and all(n.startswith(f"text_model.encoder.layers.{depth - 1}.self_attn.k_proj.lora_") for n in names)
    lora_a = dict(model.clip.named_parameters())[next(n for n in names if "lora_A" in n)]
    assert lora_a.shape[0] == 3


def test_a_run_saved_with_the_old_pe_node_rebuilds_with_the_same_lora_keys(clip_hmd):
    """config.yaml of runs saved before the PE core unification: pe.encoders (default), last-part targets, alpha 16."""
    old = build_model(clip_hmd["clip_dir"], training_mode="pe",
                      pe={"method": "lora", "rank": 8, "alpha": 16, "dropout": 0.0, "encoders": "both",
                          "target_modules": ["q_proj", "v_proj"], "layers": None, "top_k_layers": None})
    new = build_model(clip_hmd["clip_dir"], training_mode="pe", pe={"method": "lora"})
    assert old.pe_parameter_names == new.pe_parameter_names
    assert any(".self_attn.q_proj.lora_A." in n for n in new.pe_parameter_names)
    assert any(".self_attn.v_proj.lora_B." in n for n in new.pe_parameter_names)
    assert {n for n in old.state_dict() if ".lora_" in n} == {n for n in new.state_dict() if ".lora_" in n}
    layer = "text_model.encoder.layers.0.self_attn.q_proj"
    assert (old.clip.get_submodule(layer).scaling["default"], new.clip.get_submodule(layer).scaling["default"]) == (
        2.0, 1.0)  # alpha: the saved 16 is kept; the default is now alpha = rank
    with pytest.raises(ValueError, match="pe.encoders is now model_config.clip_pe.pe_towers"):
        build_model(clip_hmd["clip_dir"], training_mode="pe", pe={"method": "lora", "encoders": "vision"})
