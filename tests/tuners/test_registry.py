"""The PE method registry: per-method configs and YAML defaults, unknown keys refused, a new method from a folder."""
import pytest
import torch

from mmf_pe.tuners import PE_METHODS, all_pe_keys, pe_config_from
from mmf_pe_testing import write_run_config

RUN = ["model=visual_bert_pe", "dataset=hateful_memes", "run_type=train", "training.max_updates=2",
       "training.checkpoint_interval=2", "training.evaluation_interval=100", "training.log_interval=1"]


SHIPPED = {"paper", "pfeiffer", "houlsby", "lora", "ia3"}


def test_each_method_has_its_config_and_yaml_defaults():
    assert SHIPPED <= set(PE_METHODS)
    for name, method in PE_METHODS.items():
        defaults = method.defaults()
        assert defaults["method"] == name and set(defaults) == set(method.config_cls.keys())
        config = pe_config_from({"method": name})
        assert {k: getattr(config, k) for k in defaults} == defaults  # registration checked they agree
    assert pe_config_from({"method": "lora"}).scaling_alpha == 8  # alpha null = rank
    assert pe_config_from(None).method == "paper"


def test_the_yaml_mmf_reads_has_one_node_per_method_from_its_defaults():
    """So any key can be overridden on the command line (MMF refuses overrides of missing keys), per method."""
    import yaml

    from mmf_pe import PACKAGE_DIR
    from mmf_pe.models.pe_node import yaml_with_method_nodes

    with open(yaml_with_method_nodes(f"{PACKAGE_DIR}/configs/models/visual_bert_pe.yaml", "visual_bert_pe")) as f:
        pe = yaml.safe_load(f)["model_config"]["visual_bert_pe"]["pe"]
    assert set(pe) == {"method"} | set(PE_METHODS) and pe["method"] is None  # the test-only method's node too
    for name, method in PE_METHODS.items():
        assert pe[name] == {k: v for k, v in method.defaults().items() if k != "method"}
    assert "init_scale" in all_pe_keys()


@pytest.mark.parametrize("node, message", [
    ({"method": "pfeiffer", "pfeiffer": {"reduction_factr": 4}},
     r"pe.pfeiffer.reduction_factr is not a key of pe.method='pfeiffer'; its keys: layers, .*reduction_factor"),
    ({"method": "paper", "paper": {"non_linearity": "gelu"}}, r"pe.paper.non_linearity is not a key of pe.method="),
    ({"method": "paper", "init_weights": "zeros", "rank": 4}, r"pe.paper.init_weights .*\(nor are pe.paper.rank\)"),
    ({"method": "lora", "reduction_factor": 4}, r"pe.lora.reduction_factor is not a key of pe.method='lora'"),
    ({"method": "lora", "target_modules": []}, r"pe.lora.target_modules must be a non-empty list"),
    ({"method": "houlsby", "init_weights": "xavier"}, r"pe.houlsby.init_weights must be one of bert \| houlsby"),
    ({"method": "prefix"}, r"unknown pe.method 'prefix'; known: \["),
])
def test_unknown_or_inapplicable_keys_are_refused_by_name(node, message):
    with pytest.raises(ValueError, match=message):
        pe_config_from(node)


def test_runs_saved_before_per_method_keys_still_build():
    """The old model YAML put pe.reduction_factor=10 in every run's config; other values stay an error."""
    from tests.tuners.helpers import build

    assert build("pe", "pe.method=lora", "pe.reduction_factor=10").pe_config.method == "lora"
    with pytest.raises(ValueError, match="pe.lora.reduction_factor is not a key of pe.method='lora'"):
        build("pe", "pe.method=lora", "pe.reduction_factor=16")


def test_one_methods_key_no_longer_breaks_another_method():
    """pe.paper.reduction_factor set (as hmd_pe.yaml does) while the run chooses lora: only lora's node is read."""
    from tests.tuners.helpers import build

    model = build("pe", "pe.paper.reduction_factor=16", "pe.method=lora", "pe.lora.rank=3")
    assert model.pe_config.method == "lora" and model.pe_config.rank == 3
    assert pe_config_from({"method": "ia3", "lora": {"rank": 3}, "paper": {"rank": 3}}).method == "ia3"


@pytest.mark.parametrize("keys, message", [
    (["training_mode=full", "freeze_base=true"], r"freeze_base=True contradicts model_config.visual_bert_pe."
                                                 r"training_mode=full"),
    (["training_mode=pe", "freeze_base=false"], r"freeze_base=False contradicts .*training_mode=pe"),
    (["training_mode=fc", "pe.method=lora"], r"pe.method=lora is set but model_config.visual_bert_pe.training_mode=fc"),
])
def test_the_mode_is_chosen_one_way_and_contradictions_are_refused_by_name(keys, message):
    from mmf_pe.tools.table1 import build_model
    from tests.tuners.helpers import TINY

    with pytest.raises(ValueError, match=message):
        build_model(keys[0].split("=")[1], TINY + keys)


def test_only_ia3_scales_skip_weight_decay():
    from omegaconf import OmegaConf

    from tests.tuners.helpers import build

    for method, exempt in (("ia3", True), ("lora", False)):
        model = build("pe", f"pe.method={method}")
        config = OmegaConf.create({"optimizer": {"params": {"lr": 1e-3}}, "model": "visual_bert_pe",
                                   "model_config": {"visual_bert_pe": {"finetune_lr_multiplier": 1}}})
        groups = model.get_optimizer_parameters(config)
        undecayed = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
        scales = [p for n, p in model.named_parameters() if ".ia3_l." in n]
        assert bool(scales) == exempt and all(id(p) in undecayed for p in scales)


def test_a_command_line_pe_key_reaches_the_method(mmf_inprocess, tmp_path):
    """`model_config.visual_bert_pe.pe.lora.layers=[99]` on a real mmf_run command line gets to the method's check."""
    opts = [f"config={write_run_config(tmp_path, 'hmd_pe_lora.yaml')}"] + RUN
    with pytest.raises(ValueError, match="pe.lora.layers: 99 is out of range for a model with 2 layers"):
        mmf_inprocess(opts + ["model_config.visual_bert_pe.pe.lora.layers=[99]"], tmp_path / "save")


def test_a_new_method_is_one_folder_and_trains_through_mmf_run(mmf_inprocess, tmp_path):
    """The worked example of docs/pe-methods.md: tests/tuners/scale_method, registered by importing its folder."""
    assert PE_METHODS["scale"].config_cls.__module__ == "tests.tuners.scale_method.config"
    opts = [f"config={write_run_config(tmp_path, 'hmd_pe.yaml')}"] + RUN + [
        "model_config.visual_bert_pe.pe.method=scale", "model_config.visual_bert_pe.pe.scale.init_scale=0.5",
        "model_config.visual_bert_pe.pe.scale.layers=[1]",
        "training.lr_scheduler=false"]  # no 2000-step warm-up: 2 updates move the scales visibly
    save = tmp_path / "save"
    log = mmf_inprocess(opts, save)
    assert "mode=pe (scale)" in log and "adapter 32" in log
    state = torch.load(save / "models" / "model_2.ckpt", weights_only=True)["model"]
    scale = state["model.bert.encoder.layer.1.output.scale"]
    assert scale.shape == (32,) and (scale - 0.5).abs().max() > 1e-4  # it trained
    assert "model.bert.encoder.layer.0.output.scale" not in state
    from mmf_pe.models.visual_bert_pe import VisualBERTPE  # (imported by the run, through MMF's registry)

    assert "init_scale: 1.0" in open(VisualBERTPE.config_path()).read()  # its node, from its defaults.yaml
    with pytest.raises(ValueError, match="pe.scale.rank is not a key of pe.method='scale'"):
        pe_config_from({"method": "scale", "rank": 4})


def _two_towers():
    """A non-BERT encoder: two ModuleLists of layers with CLIP-like names, of different depths."""
    def layer():
        attention = torch.nn.Module()
        attention.q_proj, attention.v_proj = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
        block = torch.nn.Module()
        block.self_attn = attention
        return block

    model = torch.nn.Module()
    model.vision, model.text = torch.nn.ModuleList([layer() for _ in range(2)]), torch.nn.ModuleList([layer()])
    return model


def test_lora_and_ia3_go_into_any_encoders_layer_lists_with_exact_paths():
    from mmf_pe.tuners import any_encoder_methods, apply_pe_method

    assert any_encoder_methods() == ["ia3", "lora"]
    model = _two_towers()
    config = pe_config_from({"method": "lora", "rank": 2, "target_modules": ["self_attn.q_proj"], "layers": [-1]})
    added = apply_pe_method(model, config, ["vision", "text"])
    assert sorted({n.rsplit(".lora_", 1)[0] for n in added}) == ["text.0.self_attn.q_proj", "vision.1.self_attn.q_proj"]
    with pytest.raises(ValueError, match=r"vision.0 has no nn.Linear 'q_proj'; .*did you mean \['self_attn.q_proj'\]"):
        apply_pe_method(_two_towers(), pe_config_from({"method": "lora", "target_modules": ["q_proj"]}), ["vision"])
    with pytest.raises(ValueError, match=r"pe.method='pfeiffer' works on BERT-family encoders only; .*'ia3', 'lora'"):
        apply_pe_method(_two_towers(), pe_config_from({"method": "pfeiffer"}), ["vision"])


def test_the_frozen_encoder_yamls_have_a_node_per_any_encoder_method():
    """Each any-encoder method's node from its defaults, BERT's target paths replaced by null (= the encoder's)."""
    import yaml

    from mmf_pe import PACKAGE_DIR
    from mmf_pe.models.pe_node import yaml_with_method_nodes
    from mmf_pe.tuners import any_encoder_methods

    for model in ("frozen_vl", "clip_pe"):
        with open(yaml_with_method_nodes(f"{PACKAGE_DIR}/configs/models/{model}.yaml", model,
                                         any_encoder_methods())) as f:
            node = yaml.safe_load(f)["model_config"][model]
        assert set(node["pe"]) == {"method", *any_encoder_methods()} and node["pe"]["method"] is None, model
        for name in any_encoder_methods():
            assert set(node["pe"][name]) == set(PE_METHODS[name].config_cls.keys()) - {"method"}, model
            assert node["pe"][name]["target_modules"] is None, model
        assert node["pe"]["lora"]["rank"] == 8
        assert node["pe_towers"] in ("all", "both"), model
