"""`mmf_pe serve --precision`: an explicit bf16 where the CPU emulates it (capability and probe mocked) stops the
command with a non-zero exit and a message naming the slowdown, unless `--precision-force`; `auto` serves in what the
CPU computes natively. The real `main()` runs up to the point where it would start uvicorn (replaced here)."""
import json
import os

import pytest
import uvicorn

from mmf_pe.serve import cli
from mmf_pe.utils import hardware
from mmf_pe.utils import precision as amp


@pytest.fixture
def folder(tmp_path):
    os.makedirs(tmp_path / "base")
    (tmp_path / "base" / "base_config.json").write_text("{}")  # main() only checks it is there before serving
    return str(tmp_path)


@pytest.fixture
def started(monkeypatch):
    """The options uvicorn would have been started with (the JSON the workers read), one entry per start."""
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(
        json.loads(os.environ[cli.ENV_SETTINGS])))
    monkeypatch.delenv(cli.ENV_SETTINGS, raising=False)
    return calls


def cpu(monkeypatch, native):
    monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda: ("avx512_bf16",) if native else ())
    monkeypatch.setattr(amp, "probe_bf16_ratio", lambda kind="cpu", **_: 0.45 if native else 47.0)


def test_bf16_without_native_support_is_refused_unless_forced(folder, started, monkeypatch, capsys):
    cpu(monkeypatch, native=False)
    assert cli.main([folder, "--precision", "bf16"]) == 2
    error = capsys.readouterr().err
    assert "--precision bf16 refused" in error and "47.0x slower in bf16 than in fp32" in error
    assert "--precision-force" in error and not started

    assert cli.main([folder, "--precision", "bf16", "--precision-force"]) == 0
    assert [options["precision"] for options in started] == ["bf16"]


def test_auto_and_native_bf16_serve(folder, started, monkeypatch, capsys):
    cpu(monkeypatch, native=False)
    assert cli.main([folder, "--precision", "auto"]) == 0
    assert "Precision: fp32 (requested auto)" in capsys.readouterr().err
    cpu(monkeypatch, native=True)
    assert cli.main([folder, "--precision", "bf16"]) == 0  # native: no refusal, no force needed
    assert cli.main([folder, "--precision", "fp16"]) == 2  # the CPU engine refuses fp16 before starting
    assert "fp16 is refused on cpu" in capsys.readouterr().err
    assert len(started) == 2
