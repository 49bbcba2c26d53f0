"""Epoch time of clip_pe with and without the embedding cache, measured side by side in one run (prints a table).

    .venv/bin/python scripts/benchmark_clip_cache.py                       # generated memes + random CLIP (CPU-sized)
    .venv/bin/python scripts/benchmark_clip_cache.py --clip-dir $MMF_PE_WEIGHTS_DIR/clip-vit-large-patch14 \
        --data-dir $MMF_DATA_DIR --image-size 224 --limit 1024 --device cuda

Each epoch is what `mmf_run` does per epoch: read PNGs, CLIP preprocessing (MMF's torchvision_transforms), CLIP
tokenizer, forward, backward and an AdamW step of the head. Modes: `uncached` (encoders every epoch), `cache cold`
(first epoch: encoders + writing the cache), `cache warm` (later epochs: lookups, head only). Validation logits of
the cached and uncached models are compared at the end.
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

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class Memes(torch.utils.data.Dataset):
    """Annotations jsonl + images, through the same processors a clip_pe run uses."""

    def __init__(self, root, split, image_size, clip_dir, limit=None):
        from PIL import Image  # noqa: F401  (fail early without Pillow)

        from mmf.datasets.processors.image_processors import TorchvisionTransforms
        from mmf_pe.models.clip_pe.processors import CLIPTokenizerProcessor

        with open(os.path.join(root, "annotations", f"{split}.jsonl")) as f:
            self.records = [json.loads(line) for line in f if line.strip()][:limit]
        self.images = os.path.join(root, "images")
        self.image_processor = TorchvisionTransforms(OmegaConf.create({"transforms": [
            {"type": "Resize", "params": {"size": image_size, "interpolation": 3}},
            {"type": "CenterCrop", "params": {"size": image_size}}, "ToTensor",
            {"type": "Normalize", "params": {"mean": CLIP_MEAN, "std": CLIP_STD}}]}))
        self.text_processor = CLIPTokenizerProcessor(OmegaConf.create(
            {"tokenizer_config": {"type": clip_dir}, "max_seq_length": 77}))

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


def build(clip_dir, args, cache_dir=None):
    from mmf_pe.models.clip_pe import CLIPPE

    defaults = OmegaConf.load(os.path.join(os.path.dirname(__file__), "..", "mmf_pe", "configs", "models",
                                           "clip_pe.yaml")).model_config.clip_pe
    config = OmegaConf.merge(defaults, {
        "clip_dir": clip_dir, "training_mode": "fc", "fusion": args.fusion, "map_dim": args.map_dim,
        "num_pre_output_layers": args.pre_output_layers,
        "embedding_cache": {"enabled": cache_dir is not None, "dir": cache_dir or "unused"},
    })
    torch.manual_seed(0)
    model = CLIPPE(config)
    model.build()
    return model.to(args.device)


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clip-dir", help="local CLIP directory (default: a generated random CLIP)")
    parser.add_argument("--data-dir", help="MMF data dir with datasets/hateful_memes/defaults (default: generated)")
    parser.add_argument("--image-size", type=int, default=96, help="CLIP input size (generated CLIP: also its size)")
    parser.add_argument("--hidden", type=int, default=128, help="generated CLIP: width")
    parser.add_argument("--layers", type=int, default=4, help="generated CLIP: layers per encoder")
    parser.add_argument("--memes", type=int, default=128, help="generated data: train memes")
    parser.add_argument("--limit", type=int, default=None, help="use the first N train memes")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per mode (>= 2: cold + warm)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fusion", default="cross", choices=["cross", "concat"])
    parser.add_argument("--map-dim", type=int, default=64)
    parser.add_argument("--pre-output-layers", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (a cold and a warm cache epoch)")

    from mmf_pe.compat import install

    install()
    from mmf_pe.models.clip_pe.synthetic import make_image_memes, make_tiny_clip

    work = tempfile.mkdtemp(prefix="clip_cache_bench_")
    clip_dir = args.clip_dir or make_tiny_clip(os.path.join(work, "clip"), image_size=args.image_size,
                                               hidden=args.hidden, layers=args.layers, projection_dim=args.hidden)
    data_dir = args.data_dir or work
    if not args.data_dir:
        make_image_memes(work, image_size=max(args.image_size, 64), splits={"train": args.memes})
    root = os.path.join(data_dir, "datasets", "hateful_memes", "defaults")
    data = Memes(root, "train", args.image_size, clip_dir, args.limit)
    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=False, num_workers=0)

    rows, results = [], {}
    for mode, cache_dir in (("uncached", None), ("cached", os.path.join(work, "cache"))):
        model = build(clip_dir, args, cache_dir)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        times = [epoch(model, loader, optimizer, args.device) for _ in range(args.epochs)]
        results[mode] = logits(model, loader, args.device)
        if mode == "uncached":
            rows.append(("uncached (every epoch)", sum(times) / len(times)))
        else:
            rows.append(("cache cold (epoch 1)", times[0]))
            rows.append((f"cache warm (epochs 2-{args.epochs})", sum(times[1:]) / len(times[1:])))
            entries = len(model.cache)
    base = rows[0][1]
    cuda = args.device.startswith("cuda")
    device = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"clip_pe epoch time, {len(data)} memes, batch {args.batch_size}, {args.fusion} map_dim {args.map_dim}, "
          f"CLIP {clip_dir}, images {args.image_size}px, {device}")
    print("| mode | s / epoch | vs uncached |\n|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / base:.2f}x |")
    # same seed, same data order, same embeddings: the two trained heads must agree
    same = torch.allclose(results["uncached"], results["cached"], atol=1e-4)
    print(f"cache entries: {entries}; logits after training equal between uncached and cached: {same}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
