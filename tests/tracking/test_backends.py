"""Tracker selection and safety without MMF runs: disabled W&B writes nothing; secrets never logged; jsonl reader."""
import os
import types

import pytest
from omegaconf import OmegaConf

from mmf_pe.tracking import TrackingSession, read_events
from mmf_pe.tracking.run_info import as_bool, mode_label, parameter_counts, scrub_secrets


def _fake_trainer(tmp_path, wandb_enabled="True"):
    import torch

    config = OmegaConf.create({
        "model": "toy", "datasets": "hateful_memes", "model_config": {"toy": {}},
        "training": {"seed": 3, "experiment_name": "x", "max_updates": 4, "tensorboard": False,
                     "wandb": {"enabled": wandb_enabled, "project": "p", "mode": "offline"}},
        "checkpoint": {"resume": False}, "env": {"save_dir": str(tmp_path / "save"), "api_key": "hidden"},
    })
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad = False
    return types.SimpleNamespace(config=config, model=model, num_updates=0,
                                 writer=types.SimpleNamespace(log_folder=str(tmp_path / "save" / "logs")))


def test_wandb_disabled_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    monkeypatch.chdir(tmp_path)
    session = TrackingSession.from_trainer(_fake_trainer(tmp_path))
    session.finish("completed")
    assert not os.path.exists(tmp_path / "wandb_home") and not os.path.exists(tmp_path / "wandb")
    assert not os.path.exists(tmp_path / "save" / "logs" / "wandb_run_id")
    events = read_events(str(tmp_path / "save" / "logs" / "metrics.jsonl"))  # the local record is always written
    assert [e["event"] for e in events] == ["run", "end"]
    assert events[0]["params"] == {"total": 8, "trained": 6, "adapter": None} and events[0]["mode"] == "toy"


def test_config_flags_and_secrets():
    assert as_bool("false") is False and as_bool("True") is True and as_bool(1) is True
    assert scrub_secrets({"a": {"WANDB_API_KEY": "k", "token": "t", "b": [1]}}) == {
        "a": {"WANDB_API_KEY": "<redacted>", "token": "<redacted>", "b": [1]}}
    assert mode_label("pe", "lora") == "pe/lora" and mode_label("fc") == "fc" and mode_label(None, None, "m") == "m"


def test_parameter_counts_fallback_counts_requires_grad():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    model[0].requires_grad_(False)
    wrapped = types.SimpleNamespace(module=model)
    assert parameter_counts(wrapped) == {"total": 9, "trained": 3, "adapter": None}


def test_truncated_jsonl_line_is_reported(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"event": "run", "mode": "fc"}\n{"event": "eval", "st')
    with pytest.warns(UserWarning, match=r"metrics.jsonl:2"):
        events = read_events(str(path))
    assert [e["event"] for e in events] == ["run"]
