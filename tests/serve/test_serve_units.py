"""The micro-batcher (bounded queue, one adapter version per batch, max batch), the folder publishing, `--demo`."""
import asyncio
import os
import threading

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
