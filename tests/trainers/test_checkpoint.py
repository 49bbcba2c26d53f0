"""The `mmf_pe` trainer's checkpoint class against rc10's `Checkpoint` on the same state: atomic saves (F11), no
NaN saved (F26), unreadable files named (F27). Exact resume and the resume fallback on a real kill -9:
test_run_safety.py; pretrained-load report (F18): tests/models/test_pretrained_weights.py; zoo resume (F19) and
the allow-listed read: tests/datasets/test_zoo.py."""
import os

import pytest
import torch
from mmf.utils.checkpoint import Checkpoint
from omegaconf import OmegaConf

from mmf_pe.trainers.checkpoint import RESUME_STATE_KEY, MMFPECheckpoint
from mmf_pe.utils.finite import NonFiniteError
from mmf_pe_testing import bare_checkpoint


def checkpointer(checkpoint_class, tmp_path, model, resume=False, **trainer_attributes):
    """Just what Checkpoint.save / _torch_load read, around a real model and optimizer."""
    trainer = type("Trainer", (), {})()
    trainer.model, trainer.optimizer = model, torch.optim.AdamW(model.parameters())
    trainer.early_stopping = type("Stopping", (), {"best_monitored_iteration": 0, "best_monitored_update": 0,
                                                   "best_monitored_value": 0.0})()
    trainer.current_epoch = 1
    trainer.__dict__.update(trainer_attributes)
    os.makedirs(tmp_path / "models", exist_ok=True)
    return bare_checkpoint(checkpoint_class, trainer=trainer, git_repo=None, ckpt_prefix="", device=torch.device("cpu"),
                           config=OmegaConf.create({"checkpoint": {"resume": resume}}),
                           ckpt_foldername=str(tmp_path), models_foldername=str(tmp_path / "models"),
                           pth_filepath=str(tmp_path / "final.pth"))


def _unpicklable_git_fields(checkpoint):
    """A save that fails half-way through writing (as a kill or a full disk would)."""
    checkpoint.git_repo = True
    checkpoint._get_vcs_fields = lambda: {"git/diff": lambda: None}


@pytest.mark.parametrize("checkpoint_class", [Checkpoint, MMFPECheckpoint])
def test_f11_a_save_failing_half_way_leaves_no_broken_file(checkpoint_class, tmp_path):
    checkpoint = checkpointer(checkpoint_class, tmp_path / checkpoint_class.__name__, torch.nn.Linear(2, 2))
    folder = tmp_path / checkpoint_class.__name__
    checkpoint.save(2)
    _unpicklable_git_fields(checkpoint)
    with pytest.raises(Exception):
        checkpoint.save(4)
    assert torch.load(folder / "current.ckpt", weights_only=True)["num_updates"] == 2
    if checkpoint_class is Checkpoint:  # rc10: torch.save straight onto the path leaves a truncated file
        with pytest.raises(RuntimeError, match="PytorchStreamReader failed"):
            torch.load(folder / "models" / "model_4.ckpt", weights_only=True)
    else:  # ours: the file is never there, nor a temporary one
        assert sorted(os.listdir(folder / "models")) == ["model_2.ckpt"]
        assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]


def test_f26_a_nonfinite_model_is_never_saved(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    ours = checkpointer(MMFPECheckpoint, tmp_path, model)
    ours.save(2)
    with torch.no_grad():
        model[1].bias[0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"update 4 .*1 tensors hold NaN or inf \(1.bias\)"):
        ours.save(4)
    assert sorted(os.listdir(tmp_path / "models")) == ["model_2.ckpt"]
    assert torch.isfinite(torch.load(tmp_path / "current.ckpt", weights_only=True)["model"]["1.bias"]).all()
    checkpointer(Checkpoint, tmp_path, model).save(4)  # rc10 writes the NaN
    assert torch.isnan(torch.load(tmp_path / "current.ckpt", weights_only=True)["model"]["1.bias"]).any()


def test_f25_the_trainers_resume_state_is_stored_and_handed_back(tmp_path):
    restored = []
    model = torch.nn.Linear(2, 2)
    ours = checkpointer(MMFPECheckpoint, tmp_path, model, resume_state=lambda: {"format": 1, "epoch_batches": 3},
                        restore_resume_state=restored.append, num_updates=0, current_iteration=0)
    ours.trainer.config = OmegaConf.create({"checkpoint": {"resume_best": False}})
    ours.save(5)
    ckpt = torch.load(tmp_path / "current.ckpt", weights_only=True)
    assert ckpt[RESUME_STATE_KEY] == {"format": 1, "epoch_batches": 3} and ckpt["num_updates"] == 5
    ours._load_counts(ckpt)
    assert restored == [{"format": 1, "epoch_batches": 3}] and ours.trainer.num_updates == 5
    checkpointer(Checkpoint, tmp_path, model).save(5)  # rc10 stores its counts only
    assert RESUME_STATE_KEY not in torch.load(tmp_path / "current.ckpt", weights_only=True)


def test_f27_an_unreadable_checkpoint_is_named(tmp_path):
    """Outside a resume (here `checkpoint.resume=False`) there is no fallback, but the error names the file."""
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 not a zip archive")
    with pytest.raises(RuntimeError, match=rf"{bad}: cannot be read as a checkpoint \(RuntimeError: "):
        checkpointer(MMFPECheckpoint, tmp_path, torch.nn.Linear(2, 2))._torch_load(str(bad))
    with pytest.raises(RuntimeError) as rc10:
        checkpointer(Checkpoint, tmp_path, torch.nn.Linear(2, 2))._torch_load(str(bad))
    assert str(bad) not in str(rc10.value)


def test_the_mmf_pe_trainer_builds_our_class_and_other_callers_keep_rc10s():
    import mmf.trainers.base_trainer as base_trainer

    from mmf_pe.trainers.checkpoint import use_checkpoint_class
    from mmf_pe.trainers.mmf_pe_trainer import MMFPETrainer

    assert MMFPETrainer.checkpoint_class is MMFPECheckpoint
    with use_checkpoint_class(MMFPECheckpoint):
        assert base_trainer.Checkpoint is MMFPECheckpoint
    assert base_trainer.Checkpoint is Checkpoint
