"""`resolve_precision`: what `auto` picks and what an explicit bf16 warns about, with the CPU's bf16 capability and
the probe mocked both ways (native: AVX512-BF16 and a probe faster in bf16; emulated: no bf16 instructions and a
probe 47x slower, as measured on an AVX2-only EPYC), plus the real probe once, and the frozen encoders' `auto`."""
import logging

import pytest
import torch

from mmf_pe.utils import hardware
from mmf_pe.utils import precision as amp


@pytest.fixture
def native_cpu(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    monkeypatch.setattr(amp, "probe_bf16_ratio", lambda kind="cpu", **_: 0.45)


@pytest.fixture
def emulating_cpu(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda: ())
    monkeypatch.setattr(amp, "probe_bf16_ratio", lambda kind="cpu", **_: 47.0)


def test_auto_picks_bf16_with_native_support(native_cpu, caplog):
    with caplog.at_level(logging.WARNING, logger="mmf_pe.precision"):
        decision = amp.resolve_precision("auto", "cpu")
    assert (decision.name, decision.dtype, decision.native_bf16, decision.probe_ratio) == (
        "bf16", torch.bfloat16, True, 0.45)
    assert decision.warning is None and not caplog.records
    assert "native bf16" in decision.reason and "avx512_bf16" in decision.capability
    assert amp.resolve_precision("bf16", "cpu").warning is None  # an explicit bf16 where native: no warning
    assert decision.as_dict()["name"] == "bf16" and "requested auto" in decision.describe()


def test_auto_picks_fp32_without_native_support(emulating_cpu, caplog):
    with caplog.at_level(logging.WARNING, logger="mmf_pe.precision"):
        decision = amp.resolve_precision("auto", "cpu")
    assert (decision.name, decision.native_bf16, decision.probe_ratio, decision.warning) == ("fp32", False, 47.0, None)
    assert "no native bf16" in decision.reason and "47.00x" in decision.reason and not caplog.records
    assert amp.make_grad_scaler(decision.name, "cpu") is None


def test_advertised_bf16_with_a_slow_probe_is_not_native(monkeypatch):
    """Flags are not enough: a CPU whose bf16 kernels are limited (e.g. ONEDNN_MAX_CPU_ISA=AVX2) emulates it."""
    monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    monkeypatch.setattr(amp, "probe_bf16_ratio", lambda kind="cpu", **_: 30.0)
    assert amp.resolve_precision("auto", "cpu").name == "fp32"


def test_explicit_bf16_without_native_support_warns_with_the_factor(emulating_cpu, caplog):
    with caplog.at_level(logging.WARNING, logger="mmf_pe.precision"):
        decision = amp.resolve_precision("bf16", "cpu")
    assert decision.name == "bf16" and decision.native_bf16 is False  # kept: the caller asked for it
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "47.0x slower in bf16 than in fp32" in record.getMessage()
    assert "Use precision auto" in record.getMessage() and decision.warning == record.getMessage()
    assert "WARNING: " in decision.describe()


def test_fp32_and_fp16_requests(emulating_cpu):
    fp32 = amp.resolve_precision("fp32", "cpu")
    assert (fp32.name, fp32.probe_ratio, fp32.reason) == ("fp32", None, "as requested")
    with pytest.raises(amp.PrecisionError, match="fp16 is refused on cpu"):
        amp.resolve_precision("fp16", "cpu")
    with pytest.raises(amp.PrecisionError, match="not one of auto, fp32, bf16, fp16"):
        amp.resolve_precision("int8", "cpu")


def test_auto_on_a_cuda_gpu_without_bf16_is_fp16_with_a_scaler(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(hardware, "gpu_description", lambda device=None: "Tesla T4 (sm_75)")
    monkeypatch.setattr(amp, "probe_bf16_ratio", lambda kind="cpu", **_: 3.0)
    decision = amp.resolve_precision("auto", "cuda")
    assert (decision.name, decision.needs_grad_scaler, decision.capability) == ("fp16", True, "Tesla T4 (sm_75)")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert amp.resolve_precision("auto", "cuda").name == "bf16"


def test_the_real_probe_is_measured_once_and_the_header_names_the_machine():
    amp.probe_bf16_ratio.cache_clear()
    ratio = amp.probe_bf16_ratio("cpu")
    assert ratio > 0 and amp.probe_bf16_ratio("cpu") == ratio  # cached: the same measurement
    assert amp.probe_bf16_ratio.cache_info().hits >= 1
    header = amp.hardware_header("cpu")
    assert hardware.cpu_model() in header and torch.backends.cpu.get_cpu_capability() in header
    assert "bf16 on cpu: " in header and "probe matmul bf16/fp32 time" in header


def test_frozen_encoder_dtype_auto_follows_the_resolver(emulating_cpu, monkeypatch):
    from mmf_pe.models.frozen_vl.model import FrozenVL

    model = FrozenVL.__new__(FrozenVL)  # only the dtype choice: no encoder is loaded
    logged = []
    monkeypatch.setattr(FrozenVL, "_log", lambda self, message: logged.append(message))
    model.training_mode = "fc"
    assert model._encoder_dtype_name("auto") == "fp32" and "encoder_dtype auto -> Precision: fp32" in logged[-1]
    assert model._encoder_dtype_name("fp16") == "fp16"  # explicit values unchanged
    monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda: ("amx_bf16",))
    monkeypatch.setattr(amp, "probe_bf16_ratio", lambda kind="cpu", **_: 0.3)
    assert model._encoder_dtype_name("auto") == "bf16"
    model.training_mode = "full"
    assert model._encoder_dtype_name("auto") == "fp32"  # the encoder trains: its weights stay fp32


def test_extraction_auto_is_bf16_only_where_native(monkeypatch):
    from mmf_pe.extraction.runner import extraction_precision

    logged = []
    monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda: ())
    monkeypatch.setattr(amp, "probe_bf16_ratio", lambda kind="cpu", **_: 47.0)
    assert extraction_precision("auto", "cpu", logged.append) == "fp32"
    assert extraction_precision("bf16", "cpu", logged.append) == "bf16" and "47.0x slower" in logged[-1]
    monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda: ("avx512_bf16",))
    monkeypatch.setattr(amp, "probe_bf16_ratio", lambda kind="cpu", **_: 0.45)
    assert extraction_precision("auto", "cpu", logged.append) == "bf16"
    with pytest.raises(ValueError, match="fp32, bf16 or auto"):
        extraction_precision("fp16", "cpu", logged.append)


def test_demo_report_precision_line():
    from types import SimpleNamespace

    from mmf_pe.demo.report import precision_line

    decision = {"name": "fp32", "reason": "auto: no native bf16 on cpu (probe: bf16 47.00x fp32's time)",
                "capability": "AVX2 (bf16 flags: none)", "probe_ratio": 47.0}
    runs = [SimpleNamespace(mode=mode, info={"precision": dict(decision, probe_ratio=ratio)})
            for mode, ratio in (("fc", 47.0), ("pe/paper", 45.5))]  # each run probes for itself
    line = precision_line(runs)
    assert line == ("Precision: `training.precision=auto` ran **fp32** in every run (auto: no native bf16 on cpu; "
                    "probe bf16/fp32 time 45.50x–47.00x; capability AVX2 (bf16 flags: none)).")
    runs[1].info = {"precision": {**decision, "name": "bf16", "reason": "auto: native bf16"}}
    assert "**fp32** in fc" in precision_line(runs) and "**bf16** in pe/paper" in precision_line(runs)
