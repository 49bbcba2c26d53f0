#!/usr/bin/env python
"""Peak memory of `mmf_pe serve` under concurrent worst-case images (a script, not a test; prints a markdown table).

    .venv/bin/python scripts/benchmark_serve_images.py [--concurrency 6] [--out logs/serve/bench_images]

Each row starts the real `mmf_pe serve` command on 127.0.0.1 (random detector at its 800 / 1333 defaults, a small
random base), scores one small meme to warm everything up, resets the process's peak-RSS mark
(/proc/<pid>/clear_refs), sends `--concurrency` copies of a worst-case PNG at once (a few hundred KB that decode to
36 or 16.8 megapixels) and reads the peak (VmHWM). Base = resident memory after the warm-up; the bound per in-flight
image = (peak - base) / min(concurrency, --decode-concurrency). `--compare-with DIR` adds a row for another checkout
(e.g. the main branch's, before images were reduced and decoding bounded) at concurrency 2.
"""
import argparse
import concurrent.futures
import io
import os
import sys
import tempfile
import time

import numpy as np
import requests
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import benchmark_serve  # noqa: E402
from benchmark_serve import Server, add_provenance, build_folder  # noqa: E402


def worst_case_png(side, seed=0):
    """A `side` x `side` RGB PNG that compresses well (shapes on a flat background, a few noisy rows)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (side, side), (236, 233, 222))
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rng.integers(0, side, 2)
        size = int(rng.integers(side // 40, side // 6))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.rectangle([int(x), int(y), int(x) + size, int(y) + size], fill=colour)
    array = np.asarray(image).copy()
    array[:: side // 12] = rng.integers(0, 255, array[:: side // 12].shape, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def measure(server, image, concurrency, warm_up):
    """(base MiB, peak MiB, statuses, seconds) for `concurrency` simultaneous uploads of `image`."""
    answer = requests.post(f"{server.url}/v1/score", data={"adapter": "a0", "text": "warm"},
                           files={"image": ("meme.png", warm_up)}, timeout=600)
    assert answer.status_code == 200, answer.text
    time.sleep(1.0)
    base = status_kib(server.process.pid, "VmRSS") / 1024
    with open(f"/proc/{server.process.pid}/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS

    def one(_):
        return requests.post(f"{server.url}/v1/score", data={"adapter": "a0", "text": "worst"},
                             files={"image": ("worst.png", image)}, timeout=1800).status_code

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(one, range(concurrency)))
    seconds = time.perf_counter() - started
    peak = status_kib(server.process.pid, "VmHWM") / 1024
    return base, peak, statuses, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--compare-with", default=None, help="another checkout's root (its mmf_pe is served)")
    parser.add_argument("--out", default=os.path.join(ROOT, "logs", "serve", "bench_images"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        print("[bench] building a small base + adapter with provenance ...", file=sys.stderr)
        folder, _ = build_folder(root, "small", adapters=1)
        memes = add_provenance(folder, root)
        warm_up = open(memes[1], "rb").read()
        png_36 = worst_case_png(6000)
        png_16 = worst_case_png(4096, seed=1)
        plan = [  # (label, image, megapixels, concurrency, server options, PYTHONPATH)
            ("36 MP PNG, --max-pixels 40M, --decode-concurrency 2", png_36, 36.0, args.concurrency,
             ["--max-pixels", "40000000", "--decode-concurrency", "2"], ROOT),
            (f"36 MP PNG, --max-pixels 40M, --decode-concurrency {args.concurrency}", png_36, 36.0, args.concurrency,
             ["--max-pixels", "40000000", "--decode-concurrency", str(args.concurrency)], ROOT),
            ("16.8 MP PNG (4096 x 4096, the default cap), --decode-concurrency 2", png_16, 16.8, args.concurrency,
             [], ROOT),
        ]
        if args.compare_with:
            plan.append((f"36 MP PNG, {os.path.basename(os.path.abspath(args.compare_with))} (full-size decode, no "
                         "bound)", png_36, 36.0, 2, ["--max-pixels", "40000000"], os.path.abspath(args.compare_with)))
        for label, image, megapixels, concurrency, options, pythonpath in plan:
            print(f"[bench] {label} x {concurrency} ...", file=sys.stderr)
            os.environ["PYTHONPATH"] = benchmark_serve.ROOT = pythonpath  # the server runs that checkout's code
            server = Server(folder, "--timeout-s", "1800", *options)  # memory, not latency: no 504 on a busy CPU
            try:
                base, peak, statuses, seconds = measure(server, image, concurrency, warm_up)
            finally:
                server.stop()
            limit = next((int(v) for k, v in zip(options, options[1:]) if k == "--decode-concurrency"),
                         2 if pythonpath == ROOT else concurrency)
            per_image = (peak - base) / min(concurrency, limit)
            rows.append((label, f"{len(image) / 1024:.0f} KB", str(concurrency), f"{base:.0f}", f"{peak:.0f}",
                         f"{peak - base:+.0f}", f"{per_image:.0f}", " ".join(sorted(set(map(str, statuses)))),
                         f"{seconds:.0f}"))
        os.environ["PYTHONPATH"] = benchmark_serve.ROOT = ROOT
        server = Server(folder)
        try:
            refused = requests.post(f"{server.url}/v1/score", data={"adapter": "a0"},
                                    files={"image": ("worst.png", png_36)}, timeout=600)
        finally:
            server.stop()
        rows.append(("36 MP PNG at the default cap", f"{len(png_36) / 1024:.0f} KB", "1", "", "", "", "",
                     f"{refused.status_code} ({refused.json()['error'][:60]})", ""))
    header = ["row", "file", "concurrent", "base MiB", "peak MiB", "peak - base", "MiB per in-flight image",
              "status", "s"]
    table = [f"| {' | '.join(header)} |", "|" + "---|" * len(header)] + [f"| {' | '.join(r)} |" for r in rows]
    text = "\n".join(table)
    from mmf_pe.utils.precision import hardware_header

    print(hardware_header("cpu"))
    print(f"{os.cpu_count()} CPUs, load average {open('/proc/loadavg').read().split()[0]}")
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
