"""Epoch time of frozen_vl with and without the embedding cache, one row per encoder (prints a table).

    .venv/bin/python scripts/benchmark_encoder_cache.py                  # generated memes + tiny random encoders (CPU)
    .venv/bin/python scripts/benchmark_encoder_cache.py --encoders blip2 \
        --encoder-dir $MMF_PE_WEIGHTS_DIR/blip2-opt-2.7b --data-dir $MMF_DATA_DIR \
        --image-size 224 --limit 1024 --device cuda --encoder-dtype bf16

Each epoch is what `mmf_run` does per epoch: read PNGs, preprocessing (MMF's torchvision_transforms), the encoder's
tokenizer, forward, backward and an AdamW step of the head. Modes: `uncached` (encoder every epoch), `cache cold`
(first epoch: encoder + writing the cache), `cache warm` (later epochs: lookups, head only). The logits of the cached
and uncached models after training are compared at the end (same seed, same order: they must agree).
Encoders: clip, blip, blip_itm, blip2 (tiny OPT LM), blip2_t5 (tiny T5 LM; a real one: --encoders blip2).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import torch
from omegaconf import OmegaConf

MEAN = [0.48145466, 0.4578275, 0.40821073]  # CLIP's, also BLIP's and BLIP-2's
STD = [0.26862954, 0.26130258, 0.27577711]
TWO_STREAMS = ("clip", "blip")


def model_encoder(name):
    return "blip2" if name == "blip2_t5" else name


class Memes(torch.utils.data.Dataset):
    """Annotations jsonl + images, through the processors a frozen_vl run of that encoder uses."""

    def __init__(self, root, split, image_size, encoder, encoder_dir, limit=None, max_length=64):
        from mmf.datasets.processors.image_processors import TorchvisionTransforms

        from mmf_pe.models.frozen_vl.processors import CLIPTokenizerProcessor, HFTokenizerProcessor

        with open(os.path.join(root, "annotations", f"{split}.jsonl")) as f:
            self.records = [json.loads(line) for line in f if line.strip()][:limit]
        self.images = os.path.join(root, "images")
        self.image_processor = TorchvisionTransforms(OmegaConf.create({"transforms": [
            {"type": "Resize", "params": {"size": [image_size, image_size], "interpolation": 3}}, "ToTensor",
            {"type": "Normalize", "params": {"mean": MEAN, "std": STD}}]}))
        tokenizer = CLIPTokenizerProcessor if encoder == "clip" else HFTokenizerProcessor
        self.text_processor = tokenizer(OmegaConf.create(
            {"tokenizer_config": {"type": encoder_dir}, "max_seq_length": max_length}))

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        from PIL import Image

        record = self.records[index]
        with Image.open(os.path.join(self.images, record["img"])) as image:
            pixels = self.image_processor(image.convert("RGB"))
        text = self.text_processor({"text": record["text"]})
        return pixels, text["input_ids"], text["input_mask"], torch.tensor(record["label"])


def to_samples(batch, device):
    from mmf.common.sample import SampleList

    samples = SampleList()
    samples.image, samples.input_ids, samples.input_mask, samples.targets = (t.to(device) for t in batch)
    return samples


def build(encoder, encoder_dir, args, cache_dir=None):
    from mmf_pe.models.frozen_vl import FrozenVL

    defaults = OmegaConf.load(os.path.join(os.path.dirname(__file__), "..", "mmf_pe", "configs", "models",
                                           "frozen_vl.yaml")).model_config.frozen_vl
    fusion = args.fusion if args.fusion != "auto" else ("cross" if encoder in TWO_STREAMS else "concat")
    config = OmegaConf.merge(defaults, {
        "encoder": model_encoder(encoder), "encoder_dir": encoder_dir, "encoder_dtype": args.encoder_dtype,
        "training_mode": "fc", "fusion": fusion, "map_dim": args.map_dim,
        "num_pre_output_layers": args.pre_output_layers,
        "embedding_cache": {"enabled": cache_dir is not None, "dir": cache_dir or "unused"},
    })
    torch.manual_seed(0)
    model = FrozenVL(config)
    model.build()
    return model.to(args.device), fusion


def epoch(model, loader, optimizer, device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.train()
    for batch in loader:
        samples = to_samples(batch, device)
        loss = torch.nn.functional.cross_entropy(model.forward(samples)["scores"], samples.targets)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.head.parameters(), 0.1)
        optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


@torch.no_grad()
def logits(model, loader, device):
    model.eval()
    return torch.cat([model.forward(to_samples(batch, device))["scores"].cpu() for batch in loader])


def measure(encoder, encoder_dir, loader, args, work):
    """{mode: seconds per epoch}, cache entries, whether cached and uncached logits agree."""
    times, results = {}, {}
    for mode, cache_dir in (("uncached", None), ("cached", os.path.join(work, f"cache_{encoder}"))):
        model, fusion = build(encoder, encoder_dir, args, cache_dir)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        seconds = [epoch(model, loader, optimizer, args.device) for _ in range(args.epochs)]
        results[mode] = logits(model, loader, args.device)
        if mode == "uncached":
            times["uncached"] = sum(seconds) / len(seconds)
        else:
            times["cold"], times["warm"] = seconds[0], sum(seconds[1:]) / len(seconds[1:])
            entries = len(model.cache)
    same = torch.allclose(results["uncached"], results["cached"], atol=1e-4)
    return times, entries, same, fusion


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", default="clip,blip,blip_itm,blip2,blip2_t5", help="comma-separated")
    parser.add_argument("--encoder-dir", help="local encoder directory (one encoder only; default: generated)")
    parser.add_argument("--encoder-dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--data-dir", help="MMF data dir with datasets/hateful_memes/defaults (default: generated)")
    parser.add_argument("--image-size", type=int, default=96, help="encoder input size (generated: also its size)")
    parser.add_argument("--hidden", type=int, default=128, help="generated encoders: width")
    parser.add_argument("--layers", type=int, default=4, help="generated encoders: layers per tower")
    parser.add_argument("--memes", type=int, default=128, help="generated data: train memes")
    parser.add_argument("--limit", type=int, default=None, help="use the first N train memes")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per mode (>= 2: cold + warm)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=32, help="text tokens")
    parser.add_argument("--fusion", default="auto", choices=["auto", "cross", "concat"],
                        help="auto: cross for two-stream encoders (clip, blip), concat otherwise")
    parser.add_argument("--map-dim", type=int, default=64)
    parser.add_argument("--pre-output-layers", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    args.encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (a cold and a warm cache epoch)")
    if args.encoder_dir and len(args.encoders) != 1:
        parser.error("--encoder-dir needs exactly one --encoders entry")
    return args


def main(argv=None):
    args = parse(argv)
    from mmf_pe.compat import install

    install()
    from mmf_pe.testing.tiny_clip import make_image_memes
    from mmf_pe.testing.tiny_vl import make_tiny_encoder

    work = tempfile.mkdtemp(prefix="encoder_cache_bench_")
    data_dir = args.data_dir or work
    if not args.data_dir:
        make_image_memes(work, image_size=max(args.image_size, 64), splits={"train": args.memes})
    root = os.path.join(data_dir, "datasets", "hateful_memes", "defaults")
    rows, all_same = [], True
    for encoder in args.encoders:
        encoder_dir = args.encoder_dir or make_tiny_encoder(
            encoder, os.path.join(work, encoder), image_size=args.image_size, hidden=args.hidden, layers=args.layers)
        data = Memes(root, "train", args.image_size, model_encoder(encoder), encoder_dir, args.limit, args.max_length)
        loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=False, num_workers=0)
        times, entries, same, fusion = measure(encoder, encoder_dir, loader, args, work)
        all_same &= same
        rows.append((encoder, fusion, times, entries, same))
    cuda = args.device.startswith("cuda")
    device = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    source = args.encoder_dir or f"generated (hidden {args.hidden}, {args.layers} layers)"
    print(f"frozen_vl epoch time, {len(data)} memes, batch {args.batch_size}, map_dim {args.map_dim}, encoders "
          f"{source}, {args.encoder_dtype}, images {args.image_size}px, {device}")
    print("| encoder | fusion | uncached s/epoch | cache cold (epoch 1) | cache warm (epochs 2+) | warm vs uncached "
          "| entries | logits equal |\n|---|---|---|---|---|---|---|---|")
    for encoder, fusion, t, entries, same in rows:
        print(f"| {encoder} | {fusion} | {t['uncached']:.2f} | {t['cold']:.2f} | {t['warm']:.2f} | "
              f"{t['warm'] / t['uncached']:.2f}x | {entries} | {same} |")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all_same else 1


if __name__ == "__main__":
    sys.exit(main())
