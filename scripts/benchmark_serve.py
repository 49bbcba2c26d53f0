#!/usr/bin/env python
"""`mmf_pe serve` under load on 127.0.0.1 (a script, not a test): a bounded number of requests per row.

    .venv/bin/python scripts/benchmark_serve.py [--size small|base] [--requests 64] [--out logs/serve/bench]
        [--image-requests 16] [--only-images] [--device cpu|cuda] [--precision fp32|bf16|auto]

Builds a served folder (random base of --size, PE "paper" adapters), starts the real `mmf_pe serve` command and
measures, all in one run: throughput and p50/p99 latency at concurrency 1 / 8 / 32 (precomputed features, 100
regions x 2048 as HMD's); the same at concurrency 32 with --max-batch 1 (the micro-batching speed-up); the cost of an
adapter switch (in-process `put_on`, and over HTTP: alternating adapters vs one adapter); resident memory of the
server with 1 and with 10 adapters loaded; features vs model time per meme (images through the detector:
torchvision Faster R-CNN R50-FPN at its 800-pixel default, random weights); and latency per meme, image in, score
out: a ViT-B/32-sized CLIP `frozen_vl` (real architecture sizes, random weights, served from `bases/clip/` beside the
VisualBERT base) against VisualBERT + region detector, p50 / p99 at concurrency 1 and 8, for uncached (every meme
new) and cached (re-posted) memes. Prints a markdown table under a header
naming the machine (CPU model, torch's CPU capability, bf16 native or emulated by the probe, GPU) and the precision the
server scored in (`--precision`; bf16 is forced where emulated, so the table can show what that costs).
"""
import argparse
import concurrent.futures
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import requests
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SIZES = {
    "small": ["hidden_size=256", "num_hidden_layers=4", "num_attention_heads=4", "intermediate_size=1024"],
    "base": [],  # bert-base: 768 x 12 layers
}
TOKEN = "benchmark-token"


def build_folder(root, size, adapters=10):
    from mmf_pe.serve.layout import save_base
    from mmf_pe.testing.tiny_hmd import write_tokenizer
    from mmf_pe.tools.table1 import build_model
    from mmf_pe.tuners.export import save_adapter

    overrides = SIZES[size] + ["max_position_embeddings=512"]
    torch.manual_seed(0)
    base = build_model("fc", overrides)
    folder = os.path.join(root, "served")
    save_base(base, folder, write_tokenizer(os.path.join(root, "tokenizer")), max_seq_length=64,
              default_adapter="a0")
    spare = os.path.join(root, "spare")
    for i in range(adapters):
        model = build_model("pe", overrides + ["pe.method=paper"])
        model.load_state_dict({model.format_state_key(k): v for k, v in base.state_dict().items()}, strict=False)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.1)
        out = os.path.join(folder if i == 0 else spare, f"a{i}")
        os.makedirs(out, exist_ok=True)
        save_adapter(model, out, feature_provenance=None)
    return folder, spare


def add_provenance(folder, root):
    """Give adapter a0 the provenance of a real `mmf_pe extract` run with the server's detector defaults."""
    from PIL import Image

    from mmf_pe.extraction import extract_features
    from mmf_pe.tuners.provenance import read_feature_provenance

    images = os.path.join(root, "memes")
    os.makedirs(images, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (500, 600, 3), dtype=np.uint8)).save(os.path.join(images, f"{i}.png"))
    lmdb = os.path.join(root, "features.lmdb")
    extract_features(os.path.join(images, "0.png"), lmdb, detector="torchvision_frcnn", allow_random_weights=True,
                     progress=False, num_workers=0, log=lambda m: None)
    path = os.path.join(folder, "a0", "adapter_config.json")
    config = json.load(open(path))
    config["feature_provenance"] = read_feature_provenance(lmdb)
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return [os.path.join(images, f"{i}.png") for i in range(4)]


class Server:
    def __init__(self, folder, *extra):

        import socket  # a free port of 127.0.0.1

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "mmf_pe.cli", "serve", folder, "--port", str(self.port), "--poll-s", "0.5",
                   "--allow-random-weights", "--max-wait-ms", "10", *extra]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                        env=dict(os.environ, MMF_PE_ADMIN_TOKEN=TOKEN))
        deadline = time.time() + 300
        while True:
            try:
                if requests.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.time() > deadline:
                self.log.seek(0)
                raise RuntimeError("server did not start:\n" + self.log.read().decode()[-3000:])
            time.sleep(0.5)

    def rss_mib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def load(url, count, concurrency, adapters=("a0",), payloads=None):
    """(requests/s, p50 ms, p99 ms, mean batch size, [bodies]) for `count` requests at `concurrency`."""
    rng = np.random.default_rng(1)
    payloads = payloads or [npy(rng.normal(size=(100, 2048)).astype(np.float32)) for _ in range(8)]

    def one(i):
        started = time.perf_counter()
        answer = requests.post(f"{url}/v1/score", data={"text": "when you look like this", "adapter":
                                                        adapters[i % len(adapters)]},
                               files={"features": ("f.npy", payloads[i % len(payloads)])}, timeout=600)
        assert answer.status_code == 200, answer.text
        return time.perf_counter() - started, answer.json()

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(count)))
    wall = time.perf_counter() - started
    latencies = sorted(1000 * r[0] for r in results)
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
    return (count / wall, statistics.median(latencies), p99,
            statistics.mean(r[1]["batch_size"] for r in results), [r[1] for r in results])


def switch_cost_in_process(folder, spare):
    from mmf_pe.serve.engine import Engine

    engine = Engine(folder)
    versions = [engine.read_folder_version("a0")]
    with open(os.path.join(spare, "a1", "adapter_config.json"), "rb") as c, \
            open(os.path.join(spare, "a1", "adapter_model.safetensors"), "rb") as w:
        versions.append(engine.read_version("a1", c.read(), w.read(), "a1"))
    kind = versions[0].kind
    started = time.perf_counter()
    for i in range(50):
        with kind.lock:
            kind.put_on(versions[i % 2])
    size = sum(t.numel() * t.element_size() for t in versions[0].tensors.values())
    return 1000 * (time.perf_counter() - started) / 50, size / 2**20


def add_clip_base(folder, root):
    """`<folder>/bases/clip/` + adapter `clip_fc`: a ViT-B/32-sized CLIPModel (random weights; CLIPConfig's defaults
    are ViT-B/32: 224 px, patch 32, 12 + 12 layers, 512-d projection) with CLIP's 224-px preprocessing, a concat
    head, written through the model contract as `export-base` / `export-adapter` write a run's."""
    from transformers import CLIPConfig, CLIPModel

    from mmf_pe.models.contract import get_family
    from mmf_pe.testing.tiny_clip import BOS, EOS, write_clip_tokenizer

    encoder_dir = os.path.join(root, "clip-vit-b32-random")
    vocab = write_clip_tokenizer(encoder_dir)
    torch.manual_seed(0)
    config = CLIPConfig(text_config={"bos_token_id": vocab[BOS], "eos_token_id": vocab[EOS],
                                     "pad_token_id": vocab[EOS]})
    CLIPModel(config).save_pretrained(encoder_dir)
    normalize = {"type": "Normalize", "params": {"mean": [0.48145466, 0.4578275, 0.40821073],
                                                 "std": [0.26862954, 0.26130258, 0.27577711]}}
    run_config = {
        "model": "frozen_vl", "datasets": "hateful_memes",
        "model_config": {"frozen_vl": {"encoder": "clip", "encoder_dir": encoder_dir, "embedding": "pooled",
                                       "training_mode": "fc", "fusion": "concat", "map_dim": 1024,
                                       "num_mapping_layers": 1, "num_pre_output_layers": 1,
                                       "dropout": [0.1, 0.4, 0.2], "num_labels": 2, "encoder_dtype": "fp32"}},
        "dataset_config": {"hateful_memes": {"processors": {
            "text_processor": {"type": "clip_tokenizer", "params": {"max_seq_length": 77,
                                                                    "tokenizer_config": {"type": encoder_dir}}},
            "image_processor": {"type": "torchvision_transforms", "params": {"transforms": [
                {"type": "Resize", "params": {"size": 224, "interpolation": 3}},
                {"type": "CenterCrop", "params": {"size": 224}}, "ToTensor", normalize]}}}}},
    }
    family = get_family("frozen_vl")
    model = family.build(run_config)
    family.export_base(model, run_config, os.path.join(folder, "bases", "clip"))
    os.makedirs(os.path.join(folder, "clip_fc"), exist_ok=True)
    family.export_adapter(model, os.path.join(folder, "clip_fc"), run_config)
    return sum(p.numel() for p in model.parameters())


def meme_images(root, count, seed):
    """`count` distinct 500 x 400 PNG memes (random pixels: no two hash alike)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (400, 500, 3), dtype=np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def image_load(url, adapter, images, concurrency):
    """(p50 ms, p99 ms, requests/s, median server-side features ms) posting each image once at `concurrency`."""
    def one(i):
        started = time.perf_counter()
        answer = requests.post(f"{url}/v1/score", data={"text": "when you look like this", "adapter": adapter},
                               files={"image": (f"{i}.png", images[i], "image/png")}, timeout=1200)
        assert answer.status_code == 200, answer.text
        return 1000 * (time.perf_counter() - started), answer.json()["timings_ms"]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(len(images))))
    wall = time.perf_counter() - started
    latencies = sorted(r[0] for r in results)
    p99 = latencies[min(len(latencies) - 1, int(round(0.99 * (len(latencies) - 1))))]
    return statistics.median(latencies), p99, len(images) / wall, statistics.median(r[1]["model"] for r in results)


def image_rows(folder, root, count, device):
    """Latency per meme, image in, score out: CLIP frozen_vl (uncached / cached) vs VisualBERT + detector."""
    parameters = add_clip_base(folder, root)
    rows = []
    server = Server(folder, "--max-batch", "16", "--device", device, "--embedding-cache-mb", "256")
    try:
        image_load(server.url, "clip_fc", meme_images(root, 2, seed=99), 1)  # warm-up
        for concurrency in (1, 8):
            fresh = meme_images(root, count, seed=concurrency)
            cold = image_load(server.url, "clip_fc", fresh, concurrency)
            cached = image_load(server.url, "clip_fc", fresh, concurrency)  # the same memes again
            for label, (p50, p99, rps, model_ms) in (("uncached", cold), ("cached", cached)):
                rows.append((f"image -> score, CLIP ViT-B/32 frozen_vl ({parameters / 1e6:.0f} M), {label}, "
                             f"concurrency {concurrency}", f"p50 {p50:.0f} ms, p99 {p99:.0f} ms", f"{rps:.1f} req/s",
                             f"model (encoder + head, per batch) median {model_ms:.0f} ms"))
        detector_images = meme_images(root, max(2, count // 4), seed=7)
        image_load(server.url, "a0", detector_images[:1], 1)  # the detector's first call warms up
        for concurrency in (1, 8):
            p50, p99, rps, model_ms = image_load(server.url, "a0", detector_images, concurrency)
            rows.append((f"image -> score, VisualBERT + Faster R-CNN detector, concurrency {concurrency} "
                         "(no feature cache: every post runs the detector)", f"p50 {p50:.0f} ms, p99 {p99:.0f} ms",
                         f"{rps:.2f} req/s", f"model median {model_ms:.0f} ms"))
    finally:
        server.stop()
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--requests", type=int, default=64, help="requests per load row")
    parser.add_argument("--images", type=int, default=4, help="image requests for the features-vs-model row")
    parser.add_argument("--image-requests", type=int, default=16,
                        help="memes per CLIP image row (the detector rows post a quarter as many)")
    parser.add_argument("--only-images", action="store_true", help="only the image-in, score-out rows")
    parser.add_argument("--device", default="cpu", help="the server's --device (cpu, cuda)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="fp32",
                        help="the server's --precision (bf16 with --precision-force)")
    parser.add_argument("--out", default=os.path.join(ROOT, "logs", "serve", "bench"))
    args = parser.parse_args(argv)
    served_precision = ["--precision", args.precision] + (["--precision-force"] if args.precision == "bf16" else [])
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    with tempfile.TemporaryDirectory() as root:
        print(f"[bench] building a {args.size} base + 10 adapters ...", file=sys.stderr)
        folder, spare = build_folder(root, args.size)
        images = add_provenance(folder, root)
        if args.only_images:
            return print_table(image_rows(folder, root, args.image_requests, args.device), args)
        switch_ms, adapter_mib = switch_cost_in_process(folder, spare)
        base_mib = os.path.getsize(os.path.join(folder, "base", "base_model.safetensors")) / 2**20

        server = Server(folder, "--max-batch", "1", "--device", args.device, *served_precision)
        try:
            load(server.url, 4, 1)  # warm-up
            batch1 = load(server.url, args.requests, 32)
        finally:
            server.stop()
        server = Server(folder, "--max-batch", "16", "--device", args.device, *served_precision)
        try:
            load(server.url, 8, 8)  # warm-up
            results = {c: load(server.url, args.requests if c > 1 else max(8, args.requests // 4), c)
                       for c in (1, 8, 32)}
            same = load(server.url, 16, 1)
            rss_1 = server.rss_mib()  # after the load rows: the allocator has seen the largest batches already
            # 9 more adapters through the admin API, each scored once (so it is really loaded)
            for i in range(1, 10):
                files = {"config": open(os.path.join(spare, f"a{i}", "adapter_config.json"), "rb").read(),
                         "weights": open(os.path.join(spare, f"a{i}", "adapter_model.safetensors"), "rb").read()}
                answer = requests.post(f"{server.url}/v1/adapters/a{i}", files=files, timeout=600,
                                       headers={"Authorization": f"Bearer {TOKEN}"})
                assert answer.status_code == 201, answer.text
            alternating = load(server.url, 16, 1, adapters=("a0", "a1"))
            load(server.url, 10, 1, adapters=tuple(f"a{i}" for i in range(10)))
            rss_10 = server.rss_mib()
            timings = []
            for path in images[: args.images]:
                with open(path, "rb") as f:
                    answer = requests.post(f"{server.url}/v1/score", data={"text": "look", "adapter": "a0"},
                                           files={"image": (os.path.basename(path), f.read())}, timeout=600)
                assert answer.status_code == 200, answer.text
                timings.append(answer.json()["timings_ms"])
            timings = timings[1:] if len(timings) > 1 else timings  # the first detector call warms up
        finally:
            server.stop()
        image = image_rows(folder, root, args.image_requests, args.device)
    for c, (rps, p50, p99, batch, _) in results.items():
        rows.append((f"precomputed features, concurrency {c}", f"{rps:.1f} req/s", f"p50 {p50:.0f} ms, p99 {p99:.0f} "
                     f"ms", f"mean batch {batch:.1f}"))
    rps, p50, p99, batch, _ = batch1
    rows.append(("concurrency 32, --max-batch 1", f"{rps:.1f} req/s", f"p50 {p50:.0f} ms, p99 {p99:.0f} ms",
                 f"micro-batching speed-up x{results[32][0] / rps:.2f}"))
    rows.append(("adapter switch (put_on, in process)", f"{switch_ms:.2f} ms", f"adapter {adapter_mib:.2f} MiB",
                 "copies the adapter's tensors only"))
    rows.append(("concurrency 1: one adapter vs alternating two", f"p50 {same[1]:.0f} ms vs {alternating[1]:.0f} ms",
                 "", ""))
    rows.append(("server RSS, 1 vs 10 adapters", f"{rss_1:.0f} MiB vs {rss_10:.0f} MiB",
                 f"{rss_10 - rss_1:+.0f} MiB for 9 adapters", f"9 x adapter = {9 * adapter_mib:.1f} MiB; "
                 f"one base = {base_mib:.0f} MiB"))
    features = statistics.median(t["features"] for t in timings)
    model = statistics.median(t["model"] for t in timings)
    rows.append(("image: features (decode + detector) vs model, per meme", f"{features:.0f} ms vs {model:.0f} ms",
                 f"features = {100 * features / (features + model):.0f} % of the two", ""))
    return print_table(rows + image, args)


def print_table(rows, args):
    table = ["| row | result | latency / detail | note |", "|---|---|---|---|"]
    table += [f"| {' | '.join(row)} |" for row in rows]
    text = "\n".join(table)
    from mmf_pe.utils.precision import hardware_header, resolve_precision

    print(hardware_header(args.device))
    print(f"size {args.size}, {args.requests} requests per load row, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, device {args.device}, served in "
          f"{resolve_precision(args.precision, args.device).name} (--precision {args.precision})")
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
