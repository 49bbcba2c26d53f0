#!/usr/bin/env python
"""Many adapters on one base (issue 25), against the real `mmf_pe serve` on 127.0.0.1 (a script, not a test).

    .venv/bin/python scripts/benchmark_adapters.py [--requests 128] [--concurrency 16] [--registered 1000]
        [--resident 8,64] [--clip-memes 16] [--only load,fanout,memory,clip,cold] [--out logs/serve/bench_adapters]

Builds a served folder (the `small` random VisualBERT base of scripts/benchmark_serve.py, 64 distinct PE "paper"
adapters, and up to --registered names in all: the others hard links to those 64 files, so they cost the disk
nothing) and measures, in one run:
  - throughput and p50 / p99 with 1, 8 and 64 distinct adapters in uniform traffic (mixed-adapter batches), and
    with 64 distinct adapters of 4 kinds (paper in all layers / the top half / the top layer, LoRA: mixed methods);
  - fan-out: one meme scored with 16 adapters in one request vs one adapter (p50 of sequential requests), for
    adapters in every layer, in the top half of the layers, in the top layer;
  - fan-out of 16 CLIP FC heads vs 1 on new memes, with the server's own stage timings (features, model);
  - resident memory (VmRSS) of the server with --registered adapters and N resident (--max-adapters-in-memory N),
    after traffic touched 64 of them, against the server with one adapter;
  - cold-load time per adapter (in process: `LazyAdapters.get` of a registered, not yet resident adapter).
Prints a markdown table.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import requests
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from benchmark_serve import SIZES, Server, add_clip_base, load, meme_images, npy  # noqa: E402  (its server, loads)

DISTINCT = 64
# 16 adapters each of other kinds on the same base: (name prefix, pe settings, count); the small base has 4 layers
OTHER_KINDS = (("top2_", ["pe.method=paper", "pe.paper.layers=[-2,-1]"], 16),
               ("top1_", ["pe.method=paper", "pe.paper.layers=[-1]"], 16), ("lora_", ["pe.method=lora"], 16))
GROUPS = ("load", "fanout", "memory", "clip", "cold")


def build_folder(root, registered):
    from mmf_pe.serve.layout import save_base
    from mmf_pe.testing.tiny_hmd import write_tokenizer
    from mmf_pe.tools.table1 import build_model
    from mmf_pe.tuners.export import save_adapter

    overrides = SIZES["small"] + ["max_position_embeddings=512"]
    torch.manual_seed(0)
    base = build_model("fc", overrides)
    folder = os.path.join(root, "served")
    save_base(base, folder, write_tokenizer(os.path.join(root, "tokenizer")), max_seq_length=64,
              default_adapter="a0000")
    for prefix, settings, count in (("a", ["pe.method=paper"], DISTINCT),) + OTHER_KINDS:
        model = build_model("pe", overrides + settings)
        model.load_state_dict({model.format_state_key(k): v for k, v in base.state_dict().items()}, strict=False)
        trained = [p for p in model.parameters() if p.requires_grad]
        for i in range(count):
            with torch.no_grad():
                for p in trained:
                    p.add_(torch.randn_like(p) * 0.05)
            save_adapter(model, os.path.join(folder, f"{prefix}{i:04d}"), feature_provenance=None)
    for i in range(DISTINCT, registered):  # more names, same bytes (hard links)
        source, target = os.path.join(folder, f"a{i % DISTINCT:04d}"), os.path.join(folder, f"a{i:04d}")
        os.makedirs(target)
        for name in os.listdir(source):
            os.link(os.path.join(source, name), os.path.join(target, name))
    size = sum(os.path.getsize(os.path.join(folder, "a0000", n)) for n in os.listdir(os.path.join(folder, "a0000")))
    return folder, size / 2**20


def fan_out(url, names, payload, repeats):
    """p50 ms of one request scoring `payload` with each of `names` (fan-out), and with names[0] alone."""
    def timed(data):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            answer = requests.post(f"{url}/v1/score", data=data, files={"features": ("f.npy", payload)}, timeout=600)
            assert answer.status_code == 200, answer.text
            times.append(1000 * (time.perf_counter() - started))
        return statistics.median(times)

    text = "when you look like this"
    return timed({"text": text, "adapters": ",".join(names)}), timed({"text": text, "adapter": names[0]})


def clip_heads(folder, root, count):
    """A ViT-B/32-sized CLIP base (scripts/benchmark_serve.py) and `count` FC heads on it: clip_fc, clip_fc_1, .."""
    from safetensors.torch import load_file, save_file

    parameters = add_clip_base(folder, root)
    source = os.path.join(folder, "clip_fc")
    tensors = load_file(os.path.join(source, "adapter_model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    names = ["clip_fc"]
    for i in range(1, count):
        target = os.path.join(folder, f"clip_fc_{i}")
        os.makedirs(target)
        os.link(os.path.join(source, "adapter_config.json"), os.path.join(target, "adapter_config.json"))
        save_file({k: v + 0.01 * torch.randn(v.shape, generator=generator) for k, v in tensors.items()},
                  os.path.join(target, "adapter_model.safetensors"), metadata={"format": "mmf_pe.adapter/1"})
        names.append(f"clip_fc_{i}")
    return names, parameters


def image_fan_out(url, names, images):
    """Medians over new (uncached) memes of fan-out over `names` and of names[0] alone: {"total", "features",
    "model", "rest"} ms (features: decode + preprocessing, once per request; model: the batch's forward pass; rest:
    HTTP, parsing, queueing, answering)."""
    def timed(field, value, batch):
        parts = {"total": [], "features": [], "model": []}
        for i, image in enumerate(batch):
            started = time.perf_counter()
            answer = requests.post(f"{url}/v1/score", data={"text": f"meme {i}", field: value},
                                   files={"image": (f"{i}.png", image, "image/png")}, timeout=1200)
            assert answer.status_code == 200, answer.text
            parts["total"].append(1000 * (time.perf_counter() - started))
            body = answer.json()
            result = body["results"][0] if "results" in body else body
            parts["features"].append(body["timings_ms"]["features"])
            parts["model"].append(result["timings_ms"]["model"])
        medians = {k: statistics.median(v) for k, v in parts.items()}
        medians["rest"] = medians["total"] - medians["features"] - medians["model"]
        return medians

    half = len(images) // 2
    many, one = [], []
    for start in range(0, half, 2):  # alternated in pairs, so both see the same load of the shared machine
        many.append(timed("adapters", ",".join(names), images[start:start + 2]))
        one.append(timed("adapter", names[0], images[half + start:half + start + 2]))
    merge = lambda runs: {k: statistics.median(r[k] for r in runs) for k in runs[0]}  # noqa: E731
    return merge(many), merge(one)


def cold_loads(folder, count):
    """p50 / max ms of a lazy load (`LazyAdapters.get`: memory-mapped), and p50 of reading the same adapter's bytes
    into memory instead (`Engine.read_version` from bytes, as an upload), interleaved."""
    from mmf_pe.models.contract import read_adapter_files
    from mmf_pe.serve.engine import Engine
    from mmf_pe.serve.residency import LazyAdapters

    engine = Engine(folder)
    adapters = LazyAdapters(engine, 4)
    adapters.refresh()
    adapters.get("a0000")  # the kind's skeleton is built once, on the first adapter of its layout
    mapped, copied = [], []
    for i in range(1, count + 1):
        started = time.perf_counter()
        assert adapters.get(f"a{i:04d}") is not None
        mapped.append(1000 * (time.perf_counter() - started))
        path = os.path.join(folder, f"a{i:04d}")
        started = time.perf_counter()
        engine.read_version(f"a{i:04d}", *read_adapter_files(path), path)
        copied.append(1000 * (time.perf_counter() - started))
    return statistics.median(mapped), max(mapped), statistics.median(copied)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--registered", type=int, default=1000)
    parser.add_argument("--resident", default="8,64")
    parser.add_argument("--clip-memes", type=int, default=16, help="new memes per CLIP fan-out row (half each)")
    parser.add_argument("--only", default=",".join(GROUPS), help=f"rows to measure, of {','.join(GROUPS)}")
    parser.add_argument("--out", default=os.path.join(ROOT, "logs", "serve", "bench_adapters"))
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    rows = []
    with tempfile.TemporaryDirectory() as root:
        folder, adapter_mib = build_folder(root, args.registered)
        payload = npy(np.random.default_rng(1).normal(size=(100, 2048)).astype(np.float32))
        names = [f"a{i:04d}" for i in range(DISTINCT)]
        mixed_kinds = [f"{prefix}{i:04d}" for prefix, _, count in OTHER_KINDS for i in range(count)] + names[:16]
        server = Server(folder, "--no-detector", "--max-batch", "16")
        try:
            load(server.url, 16, 4, adapters=names + mixed_kinds)  # warm-up: every distinct adapter loaded once
            if "load" in only:
                for label, adapters in (("1 distinct adapter", names[:1]), ("8 distinct adapters", names[:8]),
                                        ("64 distinct adapters", names),
                                        ("64 distinct adapters of 4 kinds (methods / layers)", mixed_kinds)):
                    rate, p50, p99, batch, _ = load(server.url, args.requests, args.concurrency, adapters=adapters)
                    rows.append((f"{label}, c={args.concurrency}", f"{rate:.1f} req/s",
                                 f"p50 {p50:.0f} ms / p99 {p99:.0f} ms", f"mean batch {batch:.1f}"))
            if "fanout" in only:
                for label, fanned in (("in every layer", names[:16]),
                                      ("in the top half (2 of 4 layers)", [f"top2_{i:04d}" for i in range(16)]),
                                      ("in the top layer (1 of 4)", [f"top1_{i:04d}" for i in range(16)])):
                    many, one = fan_out(server.url, fanned, payload, 8)
                    rows.append((f"fan-out 16 VisualBERT adapters {label} vs 1 (p50, sequential)",
                                 f"{many:.0f} ms vs {one:.0f} ms", f"{many / one:.2f}x", "one request each"))
        finally:
            server.stop()
        if "memory" in only:
            memory_rows(rows, folder, root, names, adapter_mib, args)
        if "clip" in only:
            heads, parameters = clip_heads(folder, root, 16)
            server = Server(folder, "--no-detector", "--max-batch", "16", "--max-adapters-in-memory", "64")
            try:
                image_fan_out(server.url, heads[:2], meme_images(root, 4, seed=98))  # warm-up
                many, one = image_fan_out(server.url, heads, meme_images(root, 2 * (args.clip_memes // 2), seed=99))
            finally:
                server.stop()
            split = lambda t: f"features {t['features']:.0f} / model {t['model']:.0f} / rest {t['rest']:.0f} ms"  # noqa
            rows.append((f"fan-out 16 FC heads vs 1, CLIP ViT-B/32 frozen_vl ({parameters / 1e6:.0f} M), image in",
                         f"{many['total']:.0f} ms vs {one['total']:.0f} ms", f"{many['total'] / one['total']:.2f}x",
                         f"p50 over {args.clip_memes // 2} new memes each; 16: {split(many)}; 1: {split(one)}"))
        if "cold" in only:
            p50, worst, copied = cold_loads(folder, 32)
            rows.append(("cold load of one adapter (in process, 32 loads, memory-mapped)", f"p50 {p50:.1f} ms",
                         f"max {worst:.1f} ms", f"{adapter_mib:.2f} MiB file; read into memory instead: p50 "
                                                f"{copied:.1f} ms"))
    print_table(rows, args)


def memory(server):
    """(VmRSS, RssAnon, RssFile) MiB of the server process: mapped adapter files count as file pages, not anon."""
    values = {}
    with open(f"/proc/{server.process.pid}/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                values[key] = int(line.split()[1]) / 1024
    return values["VmRSS"], values["RssAnon"], values["RssFile"]


def memory_rows(rows, folder, root, names, adapter_mib, args):
    """RSS of the server with one adapter vs every adapter of the folder registered and N resident: idle (after
    start-up: the registry) and after traffic that touched 64 adapters (2 requests each)."""
    single = os.path.join(root, "single")  # the same base and one adapter
    os.makedirs(single)
    for name in os.listdir(folder):
        if not name.startswith(("a", "top", "lora")) or name == "a0000":
            os.symlink(os.path.join(folder, name), os.path.join(single, name))
    show = lambda m: f"{m[0]:.0f} MiB (anon {m[1]:.0f}, file {m[2]:.0f})"  # noqa: E731
    server = Server(single, "--no-detector")
    try:
        idle = memory(server)
        load(server.url, 2 * DISTINCT, 4, adapters=["a0000"])
        baseline = memory(server)
    finally:
        server.stop()
    rows.append(("RSS, 1 adapter registered and resident", show(baseline), f"idle {show(idle)}",
                 f"adapter file {adapter_mib:.2f} MiB"))
    registered = len([n for n in os.listdir(folder) if n.startswith(("a", "top", "lora"))])
    for resident in [int(n) for n in args.resident.split(",")]:
        server = Server(folder, "--no-detector", "--max-adapters-in-memory", str(resident))
        try:
            idle = memory(server)
            load(server.url, 2 * DISTINCT, 4, adapters=names)  # every distinct one loaded (LRU evicts)
            rss = memory(server)
        finally:
            server.stop()
        rows.append((f"RSS, {registered} registered, N={resident} resident", show(rss), f"idle {show(idle)}",
                     f"+{rss[0] - baseline[0]:.0f} MiB (anon {rss[1] - baseline[1]:+.0f}) over 1 adapter"))


def print_table(rows, args):
    lines = ["| row | value | detail | note |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    table = "\n".join(lines)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
