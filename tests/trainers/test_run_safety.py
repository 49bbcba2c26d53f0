"""Hostile and broken files, the training-run side (issue 19: items 2, 3, 6, 7, 8, 11, 12, 13).

Real MMF runs (in process, tiny data) where a run is needed; the kill -9 is a real SIGKILL of a real `mmf_run`-style
process. Each test pins the clear outcome: nothing silently dropped, no NaN checkpoint, every bad record named.
"""
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
import torch

from mmf_pe_testing import write_run_config

RUN = ["model=visual_bert_pe", "dataset=hateful_memes", "run_type=train", "training.log_interval=100",
       "training.evaluation_interval=4", "model_config.visual_bert_pe.hidden_dropout_prob=0.1"]


def run_opts(tmp_path, *extra):
    return [f"config={write_run_config(tmp_path, 'hmd_pe.yaml')}"] + RUN + list(extra)


def model_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_finite_checkpoints(save_dir):
    paths = [os.path.join(root, name) for root, _, names in os.walk(save_dir) for name in names
             if name.endswith((".ckpt", ".pth"))]
    for path in paths:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state)
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        assert not bad, (path, bad)
    return paths


# ---- item 12 (F25) + item 8 resume fallback (F27): exact resume after a real kill -9 --------------------------------
KILL_AT = textwrap.dedent("""
    import os, signal, sys
    from mmf_pe.compat import install
    install()
    from mmf_pe.trainers.mmf_pe_trainer import MMFPETrainer
    original = MMFPETrainer._extract_loss
    def extract(self, report):
        if self.num_updates + 1 == {kill_at}:  # after the checkpoint of update {saved}: SIGKILL, as a user's kill -9
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, report)
    MMFPETrainer._extract_loss = extract
    from mmf_cli.run import run
    run({opts!r})
""")


@pytest.fixture(scope="module")
def whole_run(tiny_hmd, tmp_path_factory):
    """One uninterrupted tiny run (10 updates, checkpoints every 3, dropout on), shared by the tests below."""
    from mmf_cli.run import run

    directory = tmp_path_factory.mktemp("whole_run")
    opts = run_opts(directory, "training.max_updates=10", "training.checkpoint_interval=3",
                    "training.evaluation_interval=100")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMF_DATA_DIR", tiny_hmd["data_dir"])
        run(opts + [f"env.save_dir={directory / 'save'}"])
    return {"opts": opts, "save": directory / "save"}


def test_f25_resume_after_kill_9_is_exact_and_f27_falls_back(whole_run, mmf_inprocess, mmf_data_env, tmp_path):
    """Item 12 + item 8's resume: killed (SIGKILL) after update 7 of 10, with current.ckpt and models/model_6.ckpt then
    cut short (as by a full disk), `checkpoint.resume=True` falls back to models/model_3.ckpt, the newest loadable
    one, with a warning, and reaches the uninterrupted run's weights at update 9 (dropout on, an epoch boundary at
    8)."""
    opts, whole = whole_run["opts"], whole_run["save"]

    killed = tmp_path / "killed"
    code = KILL_AT.format(kill_at=8, saved=6, opts=opts + [f"env.save_dir={killed}"])
    result = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, MMF_DATA_DIR=mmf_data_env["data_dir"]),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stdout[-3000:]
    assert torch.load(killed / "current.ckpt", weights_only=True)["num_updates"] == 6
    for name in ("current.ckpt", os.path.join("models", "model_6.ckpt")):
        with open(killed / name, "r+b") as f:
            f.truncate(os.path.getsize(killed / name) // 2)

    with pytest.warns(UserWarning, match=r"current.ckpt cannot be read .*resuming from .*model_3.ckpt, the newest"):
        log = mmf_inprocess(opts + ["checkpoint.resume=True"], killed)
    assert "Resuming inside epoch 1: its first 3 batches" in log
    expected = model_state(whole / "models" / "model_9.ckpt")
    resumed = model_state(killed / "models" / "model_9.ckpt")
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=1e-6, msg=name)


# ---- item 3 (+ F26): a non-finite loss stops the run, names the record, keeps the last good checkpoint -------------
def test_nonfinite_loss_stops_naming_the_batch_and_keeps_the_last_good_checkpoint(mmf_inprocess, tiny_hmd, tmp_path,
                                                                                  monkeypatch):
    from mmf_pe.data.lmdb_features import LMDBFeatureWriter, read_record
    from mmf_pe.utils.finite import NonFiniteError

    data_dir = tmp_path / "data"
    shutil.copytree(tiny_hmd["data_dir"], data_dir)
    lmdb_path = str(data_dir / os.path.relpath(tiny_hmd["features"], tiny_hmd["data_dir"]))
    record = read_record(lmdb_path, "10022")  # trained in update 3 (the order depends on the seed only)
    record["features"] = np.array(record["features"], dtype=np.float32)
    record["features"][0] = 3e38  # finite (passes any NaN scan), overflows in the visual projection
    with LMDBFeatureWriter(lmdb_path) as writer:
        writer.put("10022", record)
    monkeypatch.setenv("MMF_DATA_DIR", str(data_dir))
    save = tmp_path / "save"
    with pytest.raises(NonFiniteError, match=r"stopped at update 3 .*loss is nan .*sample ids \[[^]]*10022"):
        mmf_inprocess(run_opts(tmp_path, "training.max_updates=6", "training.checkpoint_interval=2"), save)
    assert torch.load(save / "current.ckpt", weights_only=True)["num_updates"] == 2  # the last good one, kept
    assert sorted(os.listdir(save / "models")) == ["model_2.ckpt"]
    assert_finite_checkpoints(save)


# ---- item 8: a full disk while saving ----------------------------------------------------------------------------
class _FullDisk:
    """A file that takes `room` bytes and then fails as a full disk does (ENOSPC)."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_disk_full_names_the_path_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A real full tmpfs where this machine lets us mount one (root); otherwise an injected ENOSPC on the file's
    writes (said in the test's output)."""
    from mmf_pe.utils.io import atomic_torch_save

    small = tmp_path / "small"
    small.mkdir()
    mounted = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], capture_output=True).returncode == 0
    try:
        path = str(small / "current.ckpt")
        atomic_torch_save({"w": torch.ones(8)}, path)  # as the mmf_pe trainer's checkpoint class writes each file
        if not mounted:
            print("no tmpfs mount here: ENOSPC injected into the checkpoint file's writes")
            real_fdopen = os.fdopen
            monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k), 64 * 1024))
        else:
            print(f"a 256 KiB tmpfs at {small}")
        with pytest.raises(OSError, match=r"cannot save .*small/current.ckpt: no space left on the device") as error:
            atomic_torch_save({"w": torch.zeros(400_000)}, path)  # 1.6 MB
        assert error.value.errno == errno.ENOSPC
        monkeypatch.undo()
        assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(8))
        assert os.listdir(small) == ["current.ckpt"]  # no temporary file left behind
    finally:
        if mounted:
            subprocess.run(["umount", str(small)], check=True)


# ---- item 2: repeated ids in an evaluated split, 1 vs 2 processes ---------------------------------------------------
SPLIT_IDS = [11, 12, 13, 12, 14, 15, 16]  # id 12 twice; 7 rows: a 2-process sampler pads one row


def _rank_rows(rank, world_size):
    """This rank's rows as rc10 evaluates them: a DistributedSampler without shuffling, padded by repetition."""
    sampler = torch.utils.data.DistributedSampler(range(len(SPLIT_IDS)), world_size, rank, shuffle=False)
    rows = list(sampler)
    scores = torch.tensor([[0.0, float(i)] for i in rows])
    return scores, torch.tensor([i % 2 for i in rows]), torch.tensor([SPLIT_IDS[i] for i in rows])


def test_gather_keeps_repeated_ids_and_names_them(monkeypatch):
    """The 2-process gather with its one collective (`all_gather_object`) played in this process: each rank's rows are
    what a real DistributedSampler gives it (the real 2-process gloo gather: tests/tracking/test_metrics.py)."""
    import torch.distributed as dist

    from mmf_pe.metrics import gather

    with pytest.warns(UserWarning, match=r"repeats ids: 12 \(2 rows\)"):
        one = gather.gather_predictions(*_rank_rows(0, 1), num_samples=len(SPLIT_IDS))
    assert one[2].tolist() == SPLIT_IDS
    for rank in range(2):
        parts = []
        for other in range(2):
            scores, targets, ids = _rank_rows(other, 2)
            parts.append({"scores": scores.numpy(), "targets": targets.numpy(), "ids": ids.numpy()})
        monkeypatch.setattr(gather, "get_world_size", lambda: 2)
        monkeypatch.setattr(gather, "get_rank", lambda rank=rank: rank)
        monkeypatch.setattr(dist, "all_gather_object", lambda out, local: out.__setitem__(slice(None), parts))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            two = gather.gather_predictions(*_rank_rows(rank, 2), num_samples=len(SPLIT_IDS))
        assert two[2].tolist() == SPLIT_IDS  # 7 rows in the split's order: the padding dropped, both 12s kept
        np.testing.assert_array_equal(two[0], one[0])
        np.testing.assert_array_equal(two[1], one[1])
        assert any("repeats ids: 12 (2 rows)" in str(w.message) for w in caught) == (rank == 0)
        legacy = gather.gather_predictions(*_rank_rows(rank, 2))  # without the split length: by id, as before
        assert legacy[2].tolist() == [11, 13, 14, 16, 12, 15]


def test_split_length_of_an_evaluation_loader():
    from mmf_pe.tracking.hooks import split_length

    loader = torch.utils.data.DataLoader(list(range(7)), batch_size=2)
    assert split_length(loader) == 7
    assert split_length(type("Multi", (), {"loaders": [loader]})()) == 7
    assert split_length(type("Multi", (), {"loaders": [loader, loader]})()) is None  # several: gathered by id


# ---- item 6: adapter exports held against their config -------------------------------------------------------------
@pytest.fixture
def exported(tmp_path):
    from mmf_pe.tuners.export import save_adapter
    from tests.tuners.helpers import build

    model = build("pe", "pe.method=paper", seed=0)
    out = tmp_path / "adapter"
    out.mkdir()
    save_adapter(model, out)
    return out


def _edit_config(directory, change):
    path = directory / "adapter_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps(change(config)))


def test_adapter_tensors_are_held_against_the_parameters_list(exported):
    from safetensors.torch import load_file, save_file

    from mmf_pe.tuners.export import AdapterMismatchError, load_adapter
    from tests.tuners.helpers import build

    weights = exported / "adapter_model.safetensors"
    state = load_file(weights)
    dropped = sorted(state)[0]
    extra = dict(state, **{"model.extra.weight": torch.zeros(2)})
    del extra[dropped]
    save_file(extra, weights)
    model = build("pe", "pe.method=paper", seed=0)
    with pytest.raises(AdapterMismatchError) as error:
        load_adapter(model, exported)
    message = str(error.value)
    assert f"{dropped}: listed in adapter_config.json, not in adapter_model.safetensors" in message
    assert "model.extra.weight: in adapter_model.safetensors, not listed in adapter_config.json" in message
    assert str(weights) in message


@pytest.mark.parametrize("breakage, expected", [
    (lambda c: [c], r"adapter_config.json: must hold a JSON object, holds a list"),
    (lambda c: {k: v for k, v in c.items() if k != "base_fingerprint"},
     r"adapter_config.json: key 'base_fingerprint' must be a dict, is missing"),
    (lambda c: dict(c, parameters=None), r"adapter_config.json: key 'parameters' must be a dict, is a NoneType"),
])
def test_malformed_adapter_config_is_a_clear_error(exported, breakage, expected):
    from mmf_pe.tuners.export import read_adapter

    _edit_config(exported, breakage)
    with pytest.raises(ValueError, match=expected):
        read_adapter(exported)


def test_garbage_safetensors_is_a_clear_error(exported):
    from mmf_pe.tuners.export import read_adapter

    (exported / "adapter_model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ValueError, match=r"adapter_model.safetensors: not a readable safetensors file"):
        read_adapter(exported)


def test_fingerprint_refusal_names_the_tensors_that_differ(exported):
    from mmf_pe.tuners.export import AdapterMismatchError, load_adapter
    from tests.tuners.helpers import build

    model = build("pe", "pe.method=paper", seed=0)
    with torch.no_grad():
        model.model.bert.encoder.layer[1].attention.self.query.weight.add_(1.0)
    with pytest.raises(AdapterMismatchError, match=r"base weights differ.*\n  model.bert.encoder.layer.1.attention"
                                                   r".self.query.weight: differs$"):
        load_adapter(model, exported)
    _edit_config(exported, lambda c: dict(c, base_fingerprint={k: v for k, v in c["base_fingerprint"].items()
                                                               if k != "tensors"}))  # an export from before
    with pytest.raises(AdapterMismatchError, match=r"predates per-tensor digests, so the tensors that differ cannot"):
        load_adapter(model, exported)
    load_adapter(build("pe", "pe.method=paper", seed=0), exported)  # the right base still loads the old export


# ---- item 13: every documented pe.* key from the command line --------------------------------------------------
def _command_line_config(tmp_path, *opts):
    import argparse

    from mmf.utils.configuration import Configuration

    args = argparse.Namespace(opts=[f"config={write_run_config(tmp_path, 'hmd_pe.yaml')}", "model=visual_bert_pe",
                                    "dataset=hateful_memes"] + list(opts), config_override=None)
    return Configuration(args).get_config()


def test_every_pe_key_is_overridable_on_the_command_line(tmp_path):
    from mmf_pe.tuners import PE_METHODS

    config = _command_line_config(tmp_path, "model_config.visual_bert_pe.pe.pfeiffer.layers=[1]",
                                  "model_config.visual_bert_pe.pe.method=pfeiffer",
                                  "model_config.visual_bert_pe.pe.pfeiffer.non_linearity=gelu")
    import mmf.utils.env  # noqa: F401  (registers MMF's and this plugin's components, in their import order)

    from mmf_pe.models.visual_bert_pe import VisualBERTPE

    pe = config.model_config.visual_bert_pe.pe
    for name, method in PE_METHODS.items():  # one node per method, every key of its own
        assert set(pe[name]) == set(method.config_cls.keys()) - {"method"}, name
    model = VisualBERTPE(config.model_config.visual_bert_pe)
    model.build()
    layers = {name.split(".")[2] for name in model.pe_parameter_names}
    assert layers == {"1"}, model.pe_parameter_names
    assert model.pe_config.get("non_linearity") == "gelu"
    config = _command_line_config(tmp_path, "model_config.visual_bert_pe.pe.paper.layers=[99]")
    with pytest.raises(ValueError, match=r"pe.paper.layers: 99 is out of range for a model with 2 layers"):
        VisualBERTPE(config.model_config.visual_bert_pe).build()


# ---- item 7: legacy (non-zip) checkpoints, read safely by evaluate and export-adapter -----------------------------
def test_legacy_checkpoints_are_read_safely(whole_run, mmf_data_env, tmp_path):
    import zipfile

    from safetensors.torch import load_file

    from mmf_pe.experiments.evaluate import evaluate_run
    from mmf_pe.experiments.export import main as export_main

    run = tmp_path / "run"
    shutil.copytree(whole_run["save"], run, ignore=shutil.ignore_patterns("models"))
    checkpoint = torch.load(run / "best.ckpt", map_location="cpu", weights_only=True)
    torch.save(checkpoint, run / "legacy.ckpt", _use_new_zipfile_serialization=False)  # torch < 1.6's format
    assert not zipfile.is_zipfile(run / "legacy.ckpt")
    assert export_main([str(run / "legacy.ckpt"), str(tmp_path / "from_legacy")]) == 0
    assert export_main([str(run / "best.ckpt"), str(tmp_path / "from_zip")]) == 0
    legacy, current = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("from_legacy", "from_zip"))
    assert legacy.keys() == current.keys() and all(torch.equal(legacy[k], current[k]) for k in legacy)
    results = evaluate_run(str(run), splits=["test_seen"], checkpoint="legacy.ckpt")
    assert results["test_seen"]["roc_auc"] is not None


# ---- item 11: W&B with WANDB_MODE unset makes no network attempt ---------------------------------------------------
WANDB_RUN = textwrap.dedent("""
    from mmf_pe.tracking.wandb_tracker import WandbTracker
    tracker = WandbTracker({{"project": "p"}}, {log_dir!r})
    tracker.start({{"experiment": "x"}}, {{"a": 1}})
    for step in range(3):
        tracker.log_metrics({{"m": 1.0}}, step)  # each log feeds wandb's usage telemetry, posted at exit if online
    tracker.finish()
""")


def test_wandb_offline_by_default_makes_no_connection(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    connections = []

    def accept():
        while True:
            try:
                connection, address = server.accept()
            except OSError:
                return
            connections.append(address)
            connection.close()

    threading.Thread(target=accept, daemon=True).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_BASE_URL=f"http://127.0.0.1:{server.getsockname()[1]}", HOME=str(tmp_path))
    try:
        result = subprocess.run([sys.executable, "-c", WANDB_RUN.format(log_dir=str(tmp_path / "logs"))], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:]
        assert list((tmp_path / "logs").glob("wandb/offline-run-*")), "no offline run written"
        server.setblocking(False)  # connections the thread has not taken yet are still in the backlog
        while True:
            try:
                connections.append(server.accept()[1])
            except (BlockingIOError, OSError):
                break
    finally:
        server.close()
    assert connections == [], f"{len(connections)} TCP connections to WANDB_BASE_URL"
