"""`training.precision`: bf16 trains FC / Full / PE like fp32 on a learnable tiny task, scores like it, resumes;
fp16 on CPU is refused; `training.fp16` is MMF main's alias; checkpoints stay fp32."""
import os

import pytest
import torch

from mmf_pe.testing.tiny_hmd import make_tiny_hmd
from mmf_pe.utils import precision as amp
from mmf_pe_testing import metric_values, write_run_config

SPLITS = {"train": 96, "dev_seen": 64, "dev_unseen": 8, "test_seen": 8, "test_unseen": 8}
PROJECT_YAML = {"fc": "hmd_fc.yaml", "full": "hmd_full.yaml", "pe": "hmd_pe.yaml"}
RUN = ["model=visual_bert_pe", "dataset=hateful_memes", "run_type=train_val", "training.evaluation_interval=1000",
       "training.checkpoint_interval=1000", "training.log_interval=4", "training.batch_size=16", "training.seed=3",
       "training.lr_scheduler=False"]
# Full learns the region marker from random weights; FC and PE start from that run's encoder (as the paper's start from
# a pretrained one: a frozen random encoder carries the marker too faintly for a few dozen updates).
RECIPE = {"full": ["training.max_updates=32", "optimizer.params.lr=1e-3"],
          "fc": ["training.max_updates=12", "optimizer.params.lr=3e-3"],
          "pe": ["training.max_updates=12", "optimizer.params.lr=1e-3"]}


@pytest.fixture(scope="module")
def learnable_hmd(tmp_path_factory):
    """Tiny HMD whose label is the region marker alone (the shared tiny set's XOR label needs far more updates)."""
    return make_tiny_hmd(str(tmp_path_factory.mktemp("learnable_hmd")), splits=SPLITS, seed=5, label_rule="regions")


def mmf_train(data, mode, extra, save, predict=False):
    from mmf_cli.run import run as mmf_run

    from mmf_pe_testing import read_log

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMF_DATA_DIR", data["data_dir"])
        opts = [f"config={write_run_config(os.path.join(str(save), 'cfg'), PROJECT_YAML[mode])}"] + RUN
        opts += RECIPE[mode] + list(extra) + [f"env.save_dir={save}"]
        mmf_run(opts + (["evaluation.predict=true"] if predict else []), predict=predict)
        return read_log(save)


@pytest.fixture(scope="module")
def full_fp32(learnable_hmd, tmp_path_factory):
    save = tmp_path_factory.mktemp("full_fp32")
    return mmf_train(learnable_hmd, "full", [], save), save


def from_base(full_fp32):
    return [f"checkpoint.resume_file={full_fp32[1] / 'current.ckpt'}", "checkpoint.resume_pretrained=True"]


def last(log, name="val/hateful_memes/roc_auc"):
    values = metric_values(log, name)
    assert values, f"no {name} in the log"
    return values[-1]


def assert_parity(logs):
    assert "Mixed precision: bf16 autocast on cpu" in logs["bf16"] and "Mixed precision" not in logs["fp32"]
    for precision, log in logs.items():
        assert last(log) >= 0.75, (precision, metric_values(log))
    fp32_loss, bf16_loss = (last(logs[p], "val/total_loss") for p in ("fp32", "bf16"))
    assert abs(bf16_loss - fp32_loss) < 0.10 * fp32_loss, (fp32_loss, bf16_loss)


def assert_fp32_checkpoint(save):
    saved = torch.load(save / "current.ckpt", weights_only=True)["model"]
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float32}  # fp32 master weights


def test_full_bf16_trains_like_fp32(learnable_hmd, full_fp32, tmp_path):
    bf16 = mmf_train(learnable_hmd, "full", ["training.precision=bf16"], tmp_path)
    assert_parity({"fp32": full_fp32[0], "bf16": bf16})
    assert_fp32_checkpoint(tmp_path)
    # the run log and the run's metadata (the `run` event) say what ran and why
    assert "Precision: bf16 (requested bf16) on cpu" in bf16 and "Precision: fp32 (requested fp32)" in full_fp32[0]
    from mmf_pe.reporting import load_run
    from mmf_pe.tracking.jsonl import find_metrics_file

    decision = load_run(find_metrics_file(str(tmp_path))).info["precision"]
    assert decision["name"] == "bf16" and decision["requested"] == "bf16" and decision["probe_ratio"] > 0
    assert decision["capability"].startswith(torch.backends.cpu.get_cpu_capability())


@pytest.mark.parametrize("mode", ["fc", "pe"])
def test_fc_and_pe_bf16_train_like_fp32(mode, learnable_hmd, full_fp32, tmp_path):
    logs = {p: mmf_train(learnable_hmd, mode, from_base(full_fp32) + [f"training.precision={p}"], tmp_path / p)
            for p in ("fp32", "bf16")}
    assert_parity(logs)
    assert_fp32_checkpoint(tmp_path / "bf16")


def test_bf16_scores_within_0_02_of_fp32(learnable_hmd, full_fp32, tmp_path):
    checkpoint = [f"checkpoint.resume_file={full_fp32[1] / 'current.ckpt'}", "run_type=val"]
    scores = {}
    for precision in ("fp32", "bf16"):
        save = tmp_path / precision
        log = mmf_train(learnable_hmd, "full", checkpoint + [f"training.precision={precision}"], save, predict=True)
        assert ("Mixed precision: bf16" in log) == (precision == "bf16")
        (csv,) = [os.path.join(d, f) for d, _, files in os.walk(save) for f in files if f.endswith(".csv")]
        with open(csv) as f:
            rows = [line.strip().split(",") for line in f.readlines()[1:] if line.strip()]
        scores[precision] = {r[0]: float(r[1]) for r in rows}
    assert scores["fp32"].keys() == scores["bf16"].keys() and len(scores["fp32"]) == SPLITS["dev_seen"]
    assert len(set(scores["fp32"].values())) > 2  # real, varied scores
    worst = max(abs(scores["fp32"][k] - scores["bf16"][k]) for k in scores["fp32"])
    assert 0 < worst <= 0.02, worst  # > 0: the bf16 scores did come from bf16 matmuls


def test_bf16_resume_continues_the_run(learnable_hmd, full_fp32, tmp_path):
    bf16 = from_base(full_fp32) + ["training.precision=bf16", "training.checkpoint_interval=6"]
    mmf_train(learnable_hmd, "pe", bf16 + ["training.max_updates=6"], tmp_path)
    log = mmf_train(learnable_hmd, "pe", bf16 + ["checkpoint.resume=True"], tmp_path)
    assert "progress: 12/12" in log and "progress: 4/12" not in log.split("Loading checkpoint")[-1]
    assert last(log) >= 0.75
    assert_fp32_checkpoint(tmp_path)


def test_fp16_is_refused_on_cpu_with_a_clear_message(learnable_hmd, tmp_path):
    for extra in (["training.precision=fp16"], ["training.fp16=True"]):
        with pytest.raises(amp.PrecisionError, match="fp16 is refused on cpu.*Use precision bf16"):
            mmf_train(learnable_hmd, "fc", extra, tmp_path / extra[0].split("=")[0])


def test_precision_resolution():
    assert amp.requested_precision({"precision": "BF16"}) == "bf16"
    assert amp.requested_precision({"precision": "auto"}) == "auto"
    assert amp.requested_precision({"fp16": True}) == "fp16"
    assert amp.requested_precision({"fp16": "False"}) == "fp32"  # rc10 leaves `training.fp16=false` a string
    assert amp.requested_precision({}) == "fp32"
    with pytest.raises(amp.PrecisionError, match="contradicts"):
        amp.requested_precision({"precision": "bf16", "fp16": True})
    with pytest.raises(amp.PrecisionError, match="not one of"):
        amp.requested_precision({"precision": "fp8"})
    assert amp.make_grad_scaler("bf16", "cpu") is None
    out = amp.outputs_to_fp32({"scores": torch.ones(2, dtype=torch.bfloat16), "ids": torch.arange(2)})
    assert out["scores"].dtype == torch.float32 and out["ids"].dtype == torch.int64


def test_fp16_scaler_skips_an_overflowing_step_without_failing():
    """`_backward` with an enabled GradScaler (torch's CPU one, standing in for CUDA's): an overflowing step leaves the
    weights as they were and lowers the scale; run safety counts it as the scaler's, up to max_skipped_steps."""
    import mmf.common.registry  # noqa: F401  (first: importing MMF imports our trainer module)
    from omegaconf import OmegaConf

    from mmf_pe.trainers.precision import PrecisionMixin
    from mmf_pe.trainers.run_safety import RunSafetyMixin

    class Holder(PrecisionMixin, RunSafetyMixin):
        should_clip_gradients = False
        num_updates = 0

        def _run_scheduler(self):
            pass

        def profile(self, text):
            pass

    holder = Holder()
    holder.config = OmegaConf.create({"training": {"max_skipped_steps": 2}})
    layer = torch.nn.Linear(4, 1)
    before = layer.weight.detach().clone()
    holder.optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    holder.grad_scaler = torch.amp.GradScaler("cpu", init_scale=3e38)  # scaled gradients overflow to inf
    holder._backward(layer(torch.ones(2, 4)).sum())
    assert torch.equal(layer.weight, before) and holder.grad_scaler.get_scale() < 3e38 and holder.num_updates == 1
    holder.grad_scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    holder._backward(layer(torch.ones(2, 4)).sum())
    assert not torch.equal(layer.weight, before)  # a normal step updates
    loss = torch.tensor(float("inf"))
    assert holder.skipped_by_grad_scaler(loss) and holder.skipped_by_grad_scaler(loss)
    assert not holder.skipped_by_grad_scaler(loss)  # the third in a row is a failure


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast and its gradient scaler need CUDA")
def test_fp16_trains_on_cuda(learnable_hmd, tmp_path):
    log = mmf_train(learnable_hmd, "full", ["training.precision=fp16", "training.device=cuda"], tmp_path)
    assert "Mixed precision: fp16 autocast on cuda, fp32 weights, gradient scaler" in log
    assert last(log) >= 0.75
    assert_fp32_checkpoint(tmp_path)
    state = torch.load(tmp_path / "current.ckpt", weights_only=True)
    assert "grad_scaler" in str(state.get("mmf_pe_resume", {}).keys())


def test_serve_and_evaluate_take_the_switch():
    from mmf_pe.serve.cli import parser

    assert parser().parse_args(["folder", "--precision", "bf16"]).precision == "bf16"
    assert parser().parse_args(["folder"]).precision == "fp32"
    assert parser().parse_args(["folder", "--precision", "auto"]).precision == "auto"
    with pytest.raises(amp.PrecisionError, match="refused on cpu"):
        amp.resolve_precision("fp16", "cpu")  # what the serving engine (CPU) calls with --precision fp16


def test_benchmark_precision_rows_tiny():
    """scripts/benchmark_pe.py --precisions fp32 bf16: a row per precision and the table (numbers not asserted)."""
    import importlib.util

    from mmf_pe import REPO_ROOT

    spec = importlib.util.spec_from_file_location("benchmark_pe", os.path.join(REPO_ROOT, "scripts", "benchmark_pe.py"))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    settings = {"batch": 2, "tokens": 8, "regions": 4, "steps": 1, "warmup": 0, "threads": 0, "tiny": True}
    rows = [benchmark.run_row(dict(settings, row="paper", precision=p)) for p in ("fp32", "bf16")]
    assert [r["precision"] for r in rows] == ["fp32", "bf16"] and rows[0]["flops"] == rows[1]["flops"] > 0
    peaks = {name: benchmark.matmul_peak(name, shape=(64, 64, 64), repeats=1) for name in ("fp32", "bf16")}
    table = benchmark.format_precision_table(rows, peaks)
    assert "| paper | bf16 |" in table and "MFU vs best matmul" in table and "bf16 / fp32 =" in table


def test_benchmark_loader_reads_through_the_real_pipeline(tmp_path, monkeypatch):
    """scripts/benchmark_loader.py's measurement: rc10's train loader over fp16-stored features (rate not asserted)."""
    import importlib.util

    from mmf_pe import REPO_ROOT

    spec = importlib.util.spec_from_file_location("benchmark_loader",
                                                  os.path.join(REPO_ROOT, "scripts", "benchmark_loader.py"))
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    data_dir = benchmark.make_hmd(str(tmp_path), 48, 6, 16, "float16")
    monkeypatch.setenv("MMF_DATA_DIR", data_dir)
    result = benchmark.run_setting({"dataset": "hmd", "dtype": "float16", "workers": 0, "batch": 16, "regions": 6,
                                    "dim": 16, "data_dir": data_dir})
    assert result["samples"] == 32 and result["samples_per_s"] > 0  # 3 batches, the first one not timed
    assert result["batch_dtype"] == "float16" and result["cpu_ms_per_sample"] > 0  # fp16 kept (F28)



def test_run_log_warns_with_the_factor_where_bf16_is_emulated(monkeypatch):
    """The trainer's precision step with the CPU's bf16 mocked as emulated (no bf16 instructions, a probe 47x
    slower): an explicit bf16 is kept, and the run log gets the decision as a warning naming the factor; `auto`
    logs fp32 with its reason. (Real runs: the bf16 / fp32 runs above log the same line; their metadata below.)"""
    from omegaconf import OmegaConf

    from mmf_pe.trainers.precision import PrecisionMixin
    from mmf_pe.utils import hardware

    monkeypatch.setattr(hardware, "cpu_bf16_flags", lambda: ())
    monkeypatch.setattr(amp, "probe_bf16_ratio", lambda kind="cpu", **_: 47.0)

    class Base:
        def load_model_and_optimizer(self):
            self.model = torch.nn.Linear(2, 2)

    class Trainer(PrecisionMixin, Base):
        device = torch.device("cpu")

    written = []
    for requested in ("bf16", "auto"):
        trainer = Trainer()
        trainer.writer = type("Writer", (), {"write": lambda self, text, level="info": written.append((level, text))})()
        trainer.config = OmegaConf.create({"training": {"precision": requested, "fp16": False}})
        trainer.load_model_and_optimizer()
        assert trainer.precision == {"bf16": "bf16", "auto": "fp32"}[requested]
    level, text = written[0]
    assert level == "warning" and text.startswith("Precision: bf16 (requested bf16) on cpu: as requested, emulated")
    assert "47.0x slower in bf16 than in fp32" in text
    assert any(level == "info" and text.startswith("Precision: fp32 (requested auto) on cpu: auto: no native bf16")
               for level, text in written)
