"""The micro-batcher (bounded queue, one adapter version per batch, max batch), the folder publishing, `--demo`."""
import asyncio
import os
import threading

import numpy as np
import pytest

from mmf_pe.serve.batcher import Batcher, QueueFull


def test_batches_hold_one_adapter_version_and_a_full_queue_refuses_at_once():
    release = threading.Event()
    calls = []

    def run_batch(version, texts, features):
        calls.append((version, list(texts)))
        release.wait(10)
        return [len(t) / 10 for t in texts], False

    async def scenario():
        batcher = Batcher(run_batch, max_batch=3, max_wait_ms=50, max_queue=4)
        batcher.start()
        first = batcher.submit("v1", "a", None)
        await asyncio.sleep(0.1)  # the first batch (v1: "a") is now running and blocks
        waiting = [batcher.submit(v, t, None) for v, t in
                   (("v1", "bb"), ("v2", "ccc"), ("v1", "dddd"), ("v1", "eeeee"))]
        with pytest.raises(QueueFull, match="4 requests already queued"):
            batcher.submit("v1", "refused", None)
        release.set()
        results = await asyncio.gather(first, *waiting)
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [(v, t) for v, t in calls] == [("v1", ["a"]), ("v1", ["bb", "dddd", "eeeee"]), ("v2", ["ccc"])]
    assert [round(p, 3) for p, _ in results] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert [timing["batch_size"] for _, timing in results] == [1, 3, 1, 3, 3]


def test_publish_switches_atomically_and_keeps_old_versions_for_readers(tmp_path):
    from mmf_pe.serve import layout

    folder = tmp_path / "served"
    folder.mkdir()
    first = layout.publish(str(folder), "pe", b'{"v": 1}', b"weights-1")
    target_1 = os.path.realpath(folder / "pe")
    second = layout.publish(str(folder), "pe", b'{"v": 2}', b"weights-2")
    assert first != second and os.path.realpath(folder / "pe") != target_1
    assert (folder / "pe" / "adapter_config.json").read_bytes() == b'{"v": 2}'
    assert os.path.isdir(target_1)  # a replica still reading the old version finds it (removed after a grace time)
    assert layout.adapter_names(str(folder)) == ["pe"]
    layout.unpublish(str(folder), "pe")
    assert layout.adapter_names(str(folder)) == []
    with pytest.raises(ValueError, match="adapter name"):
        layout.publish(str(folder), "../escape", b"{}", b"")
    with pytest.raises(ValueError, match="adapter name"):
        layout.publish(str(folder), "base", b"{}", b"")


def test_demo_without_make_demo_says_what_to_run(tmp_path, monkeypatch, capsys):
    from mmf_pe.serve import cli

    monkeypatch.setattr(cli, "DEMO_FOLDER", str(tmp_path / "logs" / "demo" / "adapters"))
    assert cli.main(["--demo"]) == 2
    assert "run `make demo` first" in capsys.readouterr().err


def test_export_base_and_adapter_from_one_run_serve_together(tmp_path):
    """The demo's path: `export-base` + `export-adapter` of one MMF checkpoint; the engine accepts the adapter."""
    import torch
    from omegaconf import OmegaConf

    from mmf_pe.experiments.export import main as export_adapter_main
    from mmf_pe.models.visual_bert_family import model_config
    from mmf_pe.serve.base_export import main as export_base_main
    from mmf_pe.serve.engine import Engine
    from mmf_pe.testing.tiny_hmd import write_tokenizer
    from tests.serve.helpers import TINY, build, trained_like

    model = trained_like(build("pe", "pe.method=houlsby", seed=0), seed=3)
    tokenizer = write_tokenizer(str(tmp_path / "tokenizer"))
    architecture = OmegaConf.to_container(model_config("pe", TINY + ["pe.method=houlsby"]))
    config = {"model": "visual_bert_pe", "model_config": {"visual_bert_pe": architecture},
              "dataset_config": {"hateful_memes": {"processors": {"text_processor": {"params": {
                  "max_seq_length": 12, "tokenizer_config": {"type": tokenizer}}}}}}}
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "config": config}, run / "best.ckpt")
    served = tmp_path / "served"
    assert export_base_main([str(run), str(served), "--default-adapter", "pe"]) == 0
    assert export_adapter_main([str(run), str(served / "pe")]) == 0
    engine = Engine(str(served))
    assert engine.max_seq_length == 12 and engine.config["default_adapter"] == "pe"
    version = engine.read_folder_version("pe")
    assert version.provenance is None and version.threshold == 0.5
    probabilities, switched = engine.score(version, ["a cat"], [torch.randn(3, engine.feature_dim)])
    assert switched and 0.0 < probabilities[0] < 1.0


def test_export_finds_the_training_features_in_the_run_config(tmp_path, monkeypatch):
    """MMF's layout: dataset_config.<name>.features.train relative to <data_dir>/datasets."""
    from mmf_pe.tuners.provenance import features_from_run_config, read_feature_provenance

    lmdb = tmp_path / "data" / "datasets" / "hateful_memes" / "defaults" / "features" / "detectron.lmdb"
    lmdb.mkdir(parents=True)
    config = {"datasets": "hateful_memes", "env": {"data_dir": str(tmp_path / "data")}, "dataset_config": {
        "hateful_memes": {"features": {"train": ["hateful_memes/defaults/features/detectron.lmdb"]}}}}
    monkeypatch.delenv("MMF_DATA_DIR", raising=False)
    assert features_from_run_config(config) == str(lmdb)
    assert read_feature_provenance(lmdb) is None  # not written by `mmf_pe extract`: no provenance
    (lmdb / "extraction.json").write_text('{"state": "running", "settings": {}}')
    with pytest.raises(ValueError, match="'running', not 'complete'"):
        read_feature_provenance(lmdb)


def test_bf16_scores_within_0_02_of_fp32(tmp_path):
    """`mmf_pe serve --precision bf16`: the engine's scores stay within 0.02 of fp32 for every adapter kind, and
    its weights stay fp32 (autocast casts per op)."""
    import torch

    from mmf_pe.serve.engine import Engine
    from tests.serve.helpers import make_folder

    paths = make_folder(str(tmp_path))
    generator = torch.Generator().manual_seed(0)
    texts = ["look at this lovely family", "what a vile crowd", "my gorgeous kid today", "such a filthy boss lol"]
    features = [torch.randn(5, 2048, generator=generator) for _ in texts]
    scores = {}
    for precision in ("fp32", "bf16"):
        engine = Engine(paths["served"], precision=precision)
        for name in ("fc", "pe", "lora"):
            version = engine.read_folder_version(name)
            scores[precision, name], _ = engine.score(version, texts, features)
            assert all(p.dtype == torch.float32 for p in version.kind.model.parameters())
    for name in ("fc", "pe", "lora"):
        fp32, bf16 = np.array(scores["fp32", name]), np.array(scores["bf16", name])
        assert np.abs(fp32 - bf16).max() < 0.02, name
        assert not np.array_equal(fp32, bf16), name  # bf16 really ran: the scores move a little
