#!/usr/bin/env python
"""Training cost of FC, Full and each PE method of visual_bert_pe, side by side (a script, not a test).

    .venv/bin/python scripts/benchmark_pe.py [--batch 8] [--steps 3] [--rows fc full paper ...] [--json out.json]

bert-base size, random weights, the paper's input (128 tokens + 100 regions x 2048), AdamW, dropout on. Every row runs
in its own fresh process (so peak memory is that row's own) and reports: trainable parameters, seconds per training
step (forward + backward + optimizer, median of --steps after --warmup; wall and process CPU time, the latter
steadier on a shared machine), peak memory (peak RSS growth over the process
after imports: weights + optimizer state + activations), the adapter-only export size, FLOPs per step (matmul FLOPs
counted by torch.utils.flop_counter) and each row's ratio to Full. It also times a plain fp32 matmul, so the table says
what fraction of this machine's matmul throughput the Full step achieves.

    .venv/bin/python scripts/benchmark_pe.py --rows full paper --precisions fp32 bf16

adds precision rows: each row once per precision (`torch.autocast`, fp32 weights, as `training.precision` trains),
step time, peak memory and achieved FLOP/s with their bf16 / fp32 ratios, and MFU: achieved FLOP/s over the measured
matmul rate of this machine, the faster of fp32 and bf16 (1024x768 @ 768x3072, bert-base's feed-forward shape). The
header names the machine: CPU model, torch's capability, bf16 native or emulated (the probe of docs/precision.md).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

# row name -> (training mode, model config overrides)
ROWS = {
    "fc": ("fc", []),
    "full": ("full", []),
    "paper": ("pe", ["pe.method=paper", "pe.paper.reduction_factor=10"]),
    "pfeiffer": ("pe", ["pe.method=pfeiffer", "pe.pfeiffer.reduction_factor=16"]),
    "houlsby": ("pe", ["pe.method=houlsby", "pe.houlsby.reduction_factor=16"]),
    "lora": ("pe", ["pe.method=lora", "pe.lora.rank=8"]),
    "ia3": ("pe", ["pe.method=ia3"]),
    "paper-top6": ("pe", ["pe.method=paper", "pe.paper.reduction_factor=10", "pe.paper.top_k_layers=6"]),
}
TINY = ["vocab_size=1000", "hidden_size=64", "num_hidden_layers=2", "num_attention_heads=2", "intermediate_size=128",
        "visual_embedding_dim=64"]
TINY_BOTTLENECK = "reduction_factor=4"  # tiny rows of the bottleneck methods only (pe.<method>.reduction_factor)


def current_rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_row(spec):
    """One row, in this (fresh) process. Returns a dict of measurements."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mmf_pe.tools.table1 import build_model
    from mmf_pe.tuners.export import save_adapter
    from mmf_pe.utils.precision import autocast

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    mode, overrides = ROWS[spec["row"]]
    if spec["tiny"]:
        bottleneck = [o.split(".")[1] for o in overrides if o.endswith("reduction_factor", 0, o.find("="))]
        overrides = overrides + TINY + [f"pe.{method}.{TINY_BOTTLENECK}" for method in bottleneck[:1]]
    _import_everything()  # so that the memory baseline holds the libraries, not the model
    device = torch.device(spec.get("device", "cpu"))
    cuda = device.type == "cuda"  # peak memory: CUDA's allocator peak instead of RSS; timings synchronised
    baseline = torch.cuda.memory_allocated(device) if cuda else current_rss()
    torch.manual_seed(0)
    model = build_model(mode, overrides).to(device)
    model.train()
    config = model.config
    batch, tokens, regions = spec["batch"], spec["tokens"], spec["regions"]
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1, config.vocab_size, (batch, tokens), generator=generator).to(device)
    attention = torch.ones(batch, tokens + regions, dtype=torch.long).to(device)
    segments = torch.zeros(batch, tokens, dtype=torch.long).to(device)
    visual = torch.randn(batch, regions, config.visual_embedding_dim, generator=generator).to(device)
    labels = torch.randint(0, 2, (batch,), generator=generator).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-5, eps=1e-8, weight_decay=0.01)

    precision = spec.get("precision", "fp32")

    def step():
        with autocast(precision, device.type):
            scores = model.model(input_ids, attention, segments, visual)["scores"]
        loss = torch.nn.functional.cross_entropy(scores.float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    times, cpu_times = [], []
    for index in range(spec["warmup"] + spec["steps"]):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        if index >= spec["warmup"]:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    peak = (torch.cuda.max_memory_allocated(device) if cuda else peak_rss()) - baseline
    with FlopCounterMode(display=False) as counter:
        with autocast(precision, device.type):
            scores = model.model(input_ids, attention, segments, visual)["scores"]
        torch.nn.functional.cross_entropy(scores.float(), labels).backward()
    optimizer.zero_grad(set_to_none=True)
    with tempfile.TemporaryDirectory() as directory:
        export_bytes = os.path.getsize(save_adapter(model, directory))
    return {
        "row": spec["row"], "precision": precision, "mode": mode, "trainable": sum(p.numel() for p in trainable),
        "total": sum(p.numel() for p in model.parameters()), "step_s": statistics.median(times), "times": times,
        "cpu_s": statistics.median(cpu_times),
        "peak_bytes": peak, "export_bytes": export_bytes, "flops": counter.get_total_flops(),
        "threads": torch.get_num_threads(),
    }


def _import_everything():
    from mmf_pe.compat import install

    install()
    import mmf.models.visual_bert  # noqa: F401
    import mmf.utils.env  # noqa: F401
    import peft  # noqa: F401
    import safetensors.torch  # noqa: F401


def matmul_flops_per_second(size=2048, repeats=5, threads=None):
    import torch

    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    wall = min(_timed(lambda: torch.mm(a, b), time.perf_counter) for _ in range(repeats))
    cpu = min(_timed(lambda: torch.mm(a, b), time.process_time) for _ in range(repeats))
    return {"wall": 2 * size ** 3 / wall, "cpu": 2 * size ** 3 / cpu}


def matmul_peak(dtype_name, shape=(1024, 768, 3072), repeats=5, threads=None):
    """FLOP/s of one (m x k) @ (k x n) matmul in `dtype_name` (fp32 | bf16): the machine's practical peak."""
    import torch

    from mmf_pe.utils.precision import DTYPES

    if threads:
        torch.set_num_threads(threads)
    m, k, n = shape
    a, b = torch.randn(m, k).to(DTYPES[dtype_name]), torch.randn(k, n).to(DTYPES[dtype_name])
    torch.mm(a, b)
    wall = min(_timed(lambda: torch.mm(a, b), time.perf_counter) for _ in range(repeats))
    cpu = min(_timed(lambda: torch.mm(a, b), time.process_time) for _ in range(repeats))
    return {"wall": 2 * m * k * n / wall, "cpu": 2 * m * k * n / cpu}


def format_precision_table(results, peaks):
    """One line per row and precision: time, memory, achieved FLOP/s, each against the same row in fp32, and MFU
    against the faster matmul of the two (bf16 where native; fp32 where bf16 is emulated and ~50x slower)."""
    fp32 = {r["row"]: r for r in results if r["precision"] == "fp32"}
    best = max(peak["cpu"] for peak in peaks.values())
    lines = ["| row | precision | step (s) | x fp32 | CPU (s) | x fp32 | peak mem (MiB) | x fp32 | GFLOP/s (CPU) "
             "| x fp32 | MFU vs best matmul |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        base = fp32.get(r["row"])
        achieved = r["flops"] / r["cpu_s"]

        def ratio(value, reference):
            return f"{value / reference:.2f}" if reference else "-"

        lines.append(
            f"| {r['row']} | {r['precision']} | {r['step_s']:.2f} | {ratio(r['step_s'], base and base['step_s'])} | "
            f"{r['cpu_s']:.2f} | {ratio(r['cpu_s'], base and base['cpu_s'])} | {r['peak_bytes'] / 2**20:,.0f} | "
            f"{ratio(r['peak_bytes'], base and base['peak_bytes'])} | {achieved / 1e9:,.1f} | "
            f"{ratio(achieved, base and base['flops'] / base['cpu_s'])} | "
            f"{100 * achieved / best:.0f} % |")
    lines += ["", "Matmul peaks (1024x768 @ 768x3072, per CPU second): "
              + ", ".join(f"{name} {peak['cpu'] / 1e9:,.1f} GFLOP/s" for name, peak in peaks.items())
              + (f" (bf16 / fp32 = {peaks['bf16']['cpu'] / peaks['fp32']['cpu']:.2f})" if "fp32" in peaks else "")]
    return "\n".join(lines)


def _timed(function, clock):
    start = clock()
    function()
    return clock() - start


def format_table(results, matmul, args):
    full = next((r for r in results if r["row"] == "full"), None)

    def ratio(row, key):
        return f"{row[key] / full[key]:.2f}" if full and full[key] else "-"

    from mmf_pe.utils.precision import hardware_header

    lines = [
        hardware_header("cpu"),
        f"batch {args.batch}, {args.tokens} tokens + {args.regions} regions, "
        f"{'tiny model' if args.tiny else 'bert-base'}, CPU threads {results[0]['threads']}, "
        f"median of {args.steps} steps after {args.warmup} warm-up",
        "",
        "| row | trainable | % of total | step (s) | x Full | CPU (s) | x Full | peak mem (MiB) | x Full "
        "| export (MiB) | x Full | GFLOP/step | x Full |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['row']} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.2f} | {r['step_s']:.2f} | "
            f"{ratio(r, 'step_s')} | {r['cpu_s']:.2f} | {ratio(r, 'cpu_s')} | {r['peak_bytes'] / 2**20:,.0f} | "
            f"{ratio(r, 'peak_bytes')} | "
            f"{r['export_bytes'] / 2**20:,.2f} | {ratio(r, 'export_bytes')} | {r['flops'] / 1e9:,.1f} | "
            f"{ratio(r, 'flops')} |"
        )
    if full:
        wall, cpu = full["flops"] / full["step_s"], full["flops"] / full["cpu_s"]
        lines += ["", f"Full step: {wall / 1e9:,.1f} GFLOP/s per wall second, {cpu / 1e9:,.1f} per CPU second "
                      f"(forward+backward matmul FLOPs / step time) vs a plain {2048}x{2048} fp32 matmul "
                      f"{matmul['wall'] / 1e9:,.1f} / {matmul['cpu'] / 1e9:,.1f} GFLOP/s on this machine = "
                      f"{100 * wall / matmul['wall']:.0f} % / {100 * cpu / matmul['cpu']:.0f} % of the matmul limit."]
        paper = next((r for r in results if r["row"] == "paper"), None)
        if paper:
            lines.append(
                f"Targets (paper PE vs Full): step time {paper['step_s'] / full['step_s']:.2f} x wall, "
                f"{paper['cpu_s'] / full['cpu_s']:.2f} x CPU (target <= 0.6; the paper saw 0.52), "
                f"peak memory {paper['peak_bytes'] / full['peak_bytes']:.2f} x (target <= 0.6; "
                "the paper saw 0.59 on GPU)."
            )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--regions", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model (smoke test of this script)")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                        help="autocast precisions to run each row in (more than one adds the precision table)")
    parser.add_argument("--json", help="also write the raw measurements here")
    parser.add_argument("--device", default="cpu", help="cpu | cuda[:N] (on CUDA: peak allocated memory, not RSS)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(run_row(json.loads(args.worker))))
        return 0
    results = []
    for row, precision in [(row, precision) for row in args.rows for precision in args.precisions]:
        spec = {"row": row, "batch": args.batch, "tokens": args.tokens, "regions": args.regions,
                "precision": precision,
                "steps": args.steps, "warmup": args.warmup, "threads": args.threads, "tiny": args.tiny,
                "device": args.device}
        print(f"[benchmark] {row} {precision} ...", file=sys.stderr, flush=True)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                             text=True, stdout=subprocess.PIPE)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            raise SystemExit(f"benchmark row {row!r} failed (exit {out.returncode})")
        results.append(json.loads(lines[-1][len("RESULT "):]))
        print(f"[benchmark] {row}: " + json.dumps(results[-1]), file=sys.stderr, flush=True)
    matmul = matmul_flops_per_second(threads=args.threads or None)
    print(format_table([r for r in results if r["precision"] == args.precisions[0]], matmul, args))
    peaks = {name: matmul_peak(name, threads=args.threads or None) for name in ("fp32", "bf16")}
    if len(args.precisions) > 1:
        print("\n" + format_precision_table(results, peaks))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": results, "matmul_flops_per_s": matmul, "matmul_peaks": peaks, "args": vars(args)}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
