"""A served folder built in seconds: a tiny random VisualBERT base, FC / PE (paper, LoRA) adapters, offline scores.

Offline scores come from a separately built model per adapter (base state dict + `load_adapter`) called directly,
not through the server's engine, so they check the server's base sharing, adapter swapping and batching.
"""
import json
import os
import socket
import threading
import time

import numpy as np
import torch

from mmf_pe.serve.layout import save_base
from mmf_pe.testing.tiny_hmd import write_tokenizer
from mmf_pe.tuners.export import load_adapter, save_adapter

ADMIN_TOKEN = "test-admin-token"

FEATURE_DIM = 2048
MAX_SEQ = 16
TINY = [
    "hidden_size=32", "num_hidden_layers=2", "num_attention_heads=2", "intermediate_size=64", "vocab_size=30522",
    "max_position_embeddings=64", f"visual_embedding_dim={FEATURE_DIM}", "hidden_dropout_prob=0.0",
    "attention_probs_dropout_prob=0.0",
]
KINDS = {"fc": ("fc",), "pe": ("pe", "pe.method=paper", "pe.paper.reduction_factor=4"),
         "lora": ("pe", "pe.method=lora")}


def build(mode, *overrides, seed=0):
    from mmf_pe.tools.table1 import build_model

    torch.manual_seed(seed)
    return build_model(mode, TINY + list(overrides)).eval()


def on_base(base, mode, *overrides):
    """A model of `mode` carrying `base`'s weights (loaded by name through the model's own key mapping)."""
    model = build(mode, *overrides, seed=11)
    model.load_state_dict({model.format_state_key(k): v for k, v in base.state_dict().items()}, strict=False)
    return model


def trained_like(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator) * 0.5)
    return model


def export_adapter(base, out_dir, kind="pe", seed=5, provenance=None, threshold=None, text_normalization=None):
    model = trained_like(on_base(base, *KINDS[kind]), seed)
    os.makedirs(out_dir, exist_ok=True)
    save_adapter(model, out_dir, feature_provenance=provenance, threshold=threshold,
                 text_normalization=text_normalization)
    return out_dir


def read_files(adapter_dir):
    with open(os.path.join(adapter_dir, "adapter_config.json"), "rb") as f:
        config = f.read()
    with open(os.path.join(adapter_dir, "adapter_model.safetensors"), "rb") as f:
        weights = f.read()
    return config, weights


def make_folder(root):
    """<root>/served (base + adapters fc, pe, lora), <root>/spare/pe_v2 (another PE version); returns paths."""
    base = build("fc", seed=0)
    served = os.path.join(root, "served")
    tokenizer = write_tokenizer(os.path.join(root, "tokenizer"))
    save_base(base, served, tokenizer, max_seq_length=MAX_SEQ, default_adapter="pe")
    for kind, seed in (("fc", 1), ("pe", 2), ("lora", 3)):
        export_adapter(base, os.path.join(served, kind), kind, seed)
    export_adapter(base, os.path.join(root, "spare", "pe_v2"), "pe", seed=4, threshold=0.3)
    other = build("fc", seed=99)  # another base: its adapters must be refused
    export_adapter(other, os.path.join(root, "spare", "foreign"), "pe", seed=4)
    return {"root": root, "served": served, "tokenizer": tokenizer, "base": base, "spare": os.path.join(root, "spare")}


def feature_set(count=12, seed=0):
    """(text, (regions, FEATURE_DIM) float32 array) pairs with 3..8 regions (batches need padding)."""
    rng = np.random.default_rng(seed)
    words = ["cat", "dog", "happy", "people", "hate", "love", "when", "you", "look", "like", "this", "day"]
    return [(" ".join(rng.choice(words, size=int(rng.integers(2, 9)))),
             rng.normal(size=(int(rng.integers(3, 9)), FEATURE_DIM)).astype(np.float32)) for _ in range(count)]


class OfflineScorer:
    """Hate probability of one exported adapter on the base, computed with the model called directly."""

    def __init__(self, base, adapter_dir, tokenizer_dir):
        from transformers import BertTokenizer

        config = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
        from mmf_pe.tuners import method_settings

        method, settings = method_settings(config["pe"] if config["training_mode"] == "pe" else None, None)
        overrides = [f"pe.method={method}"] if method else []  # the export's own method settings
        overrides += [f"pe.{method}.{key}={json.dumps(value)}" for key, value in settings.items()
                      if not isinstance(value, dict)]
        self.model = on_base(base, config["training_mode"], *overrides)
        load_adapter(self.model, adapter_dir)
        self.model.eval()
        self.tokenizer = BertTokenizer.from_pretrained(tokenizer_dir)

    @torch.no_grad()
    def __call__(self, text, features):
        tokens = ["[CLS]"] + self.tokenizer.tokenize(text)[: MAX_SEQ - 2] + ["[SEP]"]
        ids = self.tokenizer.convert_tokens_to_ids(tokens)
        input_ids = torch.tensor([ids + [0] * (MAX_SEQ - len(ids))])
        mask = torch.tensor([[1] * len(ids) + [0] * (MAX_SEQ - len(ids)) + [1] * len(features)])
        visual = torch.from_numpy(features)[None]
        scores = self.model.model(input_ids, mask, torch.zeros_like(input_ids), visual)["scores"]
        return torch.softmax(scores, dim=-1)[0, 1].item()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedServer:
    """The app under a real uvicorn server on 127.0.0.1 in a thread of this process."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def npy_bytes(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def counted_image_opens(monkeypatch):
    """A list that grows by one per `PIL.Image.open` (every decode of an upload starts there) in this process, where
    the test server runs."""
    from PIL import Image

    opened, real_open = [], Image.open

    def counting(*args, **kwargs):
        opened.append(args[0] if args else kwargs.get("fp"))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting)
    return opened
