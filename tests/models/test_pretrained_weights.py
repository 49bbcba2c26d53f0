"""Real weight files load exactly (tensors compared), report what they did not provide, and stop when encoder weights
are missing: a hub-layout `bert-base-uncased` directory and MMF's `visual_bert.pretrained.coco` zoo files (F18)."""
import os
import types

import pytest
import torch
from mmf.utils.checkpoint import Checkpoint
from omegaconf import OmegaConf

from mmf_pe.models.pretrained_weights import MissingWeightsError, read_state_dict
from mmf_pe.tools.table1 import build_model
from mmf_pe.trainers.checkpoint import MMFPECheckpoint
from mmf_pe_testing import bare_checkpoint
from tests.real_files import MODEL_ARCH, coco_visual_bert_state, tf_era_name, write_hub_bert, write_zoo_folder


def _assert_bert_equals_file(model, state):
    """Every text-BERT tensor of the model is the file's (under the file's gamma/beta `bert.*` name)."""
    compared = 0
    for key, value in model.model.bert.state_dict().items():
        file_key = "bert." + tf_era_name(key)
        if file_key in state:
            assert torch.equal(value, state[file_key]), key
            compared += 1
    assert compared == len([k for k in state if k.startswith("bert.")])
    return compared


@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
def test_hub_bert_directory_loads_exactly_with_gamma_beta_names(weights_file, tmp_path):
    directory = str(tmp_path / "bert-base-uncased")
    state = write_hub_bert(directory)
    other = {"model.safetensors": "pytorch_model.bin", "pytorch_model.bin": "model.safetensors"}[weights_file]
    os.unlink(os.path.join(directory, other))
    assert any(k.endswith("LayerNorm.gamma") for k in state) and any(k.startswith("cls.") for k in state)
    model = build_model("pe", MODEL_ARCH + [f"bert_model_name={directory}"])
    compared = _assert_bert_equals_file(model, state)
    report = model.weights_report
    assert report.source.endswith(weights_file) and len(report.loaded) == compared and not report.missing
    assert {k for k in report.unused if not k.startswith("cls.")} == set() and report.unused
    assert f"loaded {compared} tensors" in model.describe() and "unused from the file" in model.describe()


def test_safetensors_is_the_file_used_when_both_are_there(tmp_path):
    directory = str(tmp_path / "bert-base-uncased")
    state = write_hub_bert(directory)
    torch.save({k: torch.zeros_like(v) for k, v in state.items()}, os.path.join(directory, "pytorch_model.bin"))
    model = build_model("fc", MODEL_ARCH + [f"bert_model_name={directory}"])
    _assert_bert_equals_file(model, state)
    assert model.weights_report.source.endswith("model.safetensors")


def test_bert_directory_missing_encoder_weights_is_refused_by_name(tmp_path):
    directory = str(tmp_path / "bert-base-uncased")
    missing = ["bert.encoder.layer.1.output.dense.weight", "bert.encoder.layer.0.output.LayerNorm.gamma"]
    write_hub_bert(directory, drop=missing)
    with pytest.raises(MissingWeightsError, match="allow_missing_weights") as error:
        build_model("pe", MODEL_ARCH + [f"bert_model_name={directory}"])
    assert "encoder.layer.1.output.dense.weight" in str(error.value)
    assert "encoder.layer.0.output.LayerNorm.weight" in str(error.value) and "2 encoder weight(s)" in str(error.value)
    model = build_model("pe", MODEL_ARCH + [f"bert_model_name={directory}", "allow_missing_weights=true"])
    assert len(model.weights_report.missing) == 2 and "NOT loaded: 2" in model.describe()


def _load_pretrained(model, state, source="visual_bert_coco/model.pth", checkpoint_class=MMFPECheckpoint):
    """The `mmf_pe` trainer's `Checkpoint._load_pretrained` (F18; or rc10's) as hmd_base.yaml calls it: mapping
    model.bert -> model.bert."""
    lines = []
    config = OmegaConf.create({"model": "visual_bert_pe", "checkpoint": {
        "resume_file": source, "pretrained_state_mapping": {"model.bert": "model.bert"}}})
    trainer = types.SimpleNamespace(model=model, config=config, writer=types.SimpleNamespace(write=lines.append))
    checkpoint_class._load_pretrained(bare_checkpoint(checkpoint_class, trainer=trainer), state)
    return lines


@pytest.mark.parametrize("wrapped", [False, True])
def test_coco_visual_bert_zoo_file_loads_exactly_into_pe_mode(wrapped, tmp_path):
    coco = coco_visual_bert_state()
    path = write_zoo_folder(str(tmp_path / "visual_bert_coco"), coco, wrapped=wrapped)
    state = read_state_dict(path)  # what MMF's _load hands on: the {"model": ...} level unwrapped
    assert set(state) == set(coco)
    model = build_model("pe", MODEL_ARCH + ["vocab_size=30522"])
    lines = _load_pretrained(model, state)
    own = model.state_dict()
    for key in (k for k in coco if k.startswith("model.bert.")):
        assert torch.equal(own[key], coco[key]), key
    report = next(line for line in lines if line.startswith("visual_bert_coco/model.pth: loaded"))
    assert "NOT loaded" not in report and "unused from the file: 8 (model.cls." in report
    assert "Copying model.bert.encoder.layer.1.output.dense.weight from model.bert.encoder.layer.1.output.dense" \
           ".weight" in lines and lines[-1] == "Pretrained model loaded"


def test_f18_pretrained_file_missing_encoder_weights_stops(tmp_path):
    coco = coco_visual_bert_state()
    del coco["model.bert.encoder.layer.1.attention.self.key.weight"]
    path = write_zoo_folder(str(tmp_path / "visual_bert_coco"), coco)
    rc10 = build_model("pe", MODEL_ARCH + ["vocab_size=30522"])
    lines = _load_pretrained(rc10, torch.load(path, weights_only=True), source=path, checkpoint_class=Checkpoint)
    assert lines[-1] == "Pretrained model loaded" and not any("NOT loaded" in line for line in lines)  # not a word
    with pytest.raises(MissingWeightsError, match=r"1 encoder weight\(s\).*encoder\.layer\.1\.attention\.self\.key"):
        _load_pretrained(build_model("pe", MODEL_ARCH + ["vocab_size=30522"]), coco, source=path)
    lines = _load_pretrained(build_model("pe", MODEL_ARCH + ["vocab_size=30522", "allow_missing_weights=true"]), coco)
    assert lines[-1] == "Pretrained model loaded" and any("NOT loaded: 1" in line for line in lines)
