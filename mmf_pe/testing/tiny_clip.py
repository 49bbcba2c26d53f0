"""Generated stand-ins for tests, smoke runs and benchmarks (no download possible): a random CLIP directory with a
character-level CLIP tokenizer, and a Hateful-Memes-layout dataset of small PNG memes.

The memes' label is text marker XOR image marker (a red or blue square), so neither modality alone predicts it.
"""
import json
import os

import numpy as np

from mmf_pe.utils.io import atomic_write_text

SPLITS = {"train": 32, "dev_seen": 16, "dev_unseen": 8, "test_seen": 8, "test_unseen": 8}
WORDS = ["cat", "dog", "happy", "people", "when", "you", "they", "look", "like", "this", "day", "love"]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def write_clip_tokenizer(out_dir):
    """CLIP's byte-level BPE with no merges: every character is a token (vocab 514: 256 bytes x {char, char</w>})."""
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    characters = list(bytes_to_unicode().values())
    vocab = {token: i for i, token in enumerate(characters + [c + "</w>" for c in characters] + [BOS, EOS])}
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, "vocab.json"), json.dumps(vocab, ensure_ascii=False))
    atomic_write_text(os.path.join(out_dir, "merges.txt"), "#version: 0.2\n")
    atomic_write_text(os.path.join(out_dir, "tokenizer_config.json"), json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": BOS, "eos_token": EOS,
        "pad_token": EOS, "unk_token": EOS, "do_lower_case": True,
    }))
    return vocab


def make_tiny_clip(out_dir, image_size=32, hidden=32, layers=2, projection_dim=16, seed=0):
    """A random CLIPModel (hidden <= 64, 2 layers) saved with its tokenizer and image-processor config."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    if os.path.isfile(os.path.join(out_dir, "config.json")):
        return out_dir
    vocab = write_clip_tokenizer(out_dir)
    common = dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=2)
    text = dict(common, vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=vocab[BOS],
                eos_token_id=vocab[EOS], pad_token_id=vocab[EOS])
    vision = dict(common, image_size=image_size, patch_size=image_size // 4)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim))
    model.save_pretrained(out_dir)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
                       ).save_pretrained(out_dir)
    return out_dir


def make_image_memes(data_dir, image_size=64, seed=0, splits=None):
    """`<data_dir>/datasets/hateful_memes/defaults/{annotations/*.jsonl, images/img/<id>.png}`; idempotent."""
    from PIL import Image

    root = os.path.join(data_dir, "datasets", "hateful_memes", "defaults")
    done = os.path.join(root, ".complete_images")
    if os.path.exists(done):
        return root
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images", "img"), exist_ok=True)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    next_id = 20000
    for split, size in (splits or SPLITS).items():
        lines = []
        for _ in range(size):
            word_flag, image_flag = int(rng.integers(2)), int(rng.integers(2))
            words = list(rng.choice(WORDS, size=4))
            words.insert(int(rng.integers(len(words) + 1)), "gross" if word_flag else "nice")
            pixels = rng.integers(0, 256, size=(image_size, image_size, 3), dtype=np.uint8) // 2
            square = slice(image_size // 4, 3 * image_size // 4)
            pixels[square, square] = (230, 20, 20) if image_flag else (20, 20, 230)
            image_id = f"{next_id:05d}"
            next_id += 1
            Image.fromarray(pixels).save(os.path.join(root, "images", "img", f"{image_id}.png"))
            record = {"id": int(image_id), "img": f"img/{image_id}.png", "text": " ".join(words),
                      "label": word_flag ^ image_flag}
            lines.append(json.dumps(record))
        atomic_write_text(os.path.join(root, "annotations", f"{split}.jsonl"), "\n".join(lines) + "\n")
    atomic_write_text(done, "ok\n")
    return root


def make_tiny_clip_hmd(data_dir, **kwargs):
    """Both: the memes under data_dir and a tiny CLIP at `<data_dir>/clip_tiny` (what projects/clip_pe/tiny.yaml
    expects)."""
    root = make_image_memes(data_dir, **{k: v for k, v in kwargs.items() if k in ("image_size", "seed", "splits")})
    clip_dir = make_tiny_clip(os.path.join(data_dir, "clip_tiny"))
    return {"data_dir": data_dir, "root": root, "clip_dir": clip_dir}
