"""Tiny random encoders of each class the family loads, saved like real checkpoints (model + tokenizer + image
processor in one directory), for tests, smoke runs and benchmarks; nothing is downloaded.

One character-level WordPiece vocabulary serves every tiny model (the ids only have to fit its embedding table).
"""
import os

from mmf_pe.testing.tiny_clip import WORDS, make_image_memes, make_tiny_clip
from mmf_pe.utils.io import atomic_write_text

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
TINY_ENCODERS = ("clip", "blip", "blip_itm", "blip2", "blip2_t5")


def write_wordpiece_tokenizer(out_dir, max_length=64):
    """A BERT tokenizer with the memes' words, single characters and ## continuations (vocab ~90)."""
    from transformers import BertTokenizerFast

    vocab = SPECIAL + list(LETTERS) + [f"##{c}" for c in LETTERS] + sorted(set(WORDS) | {"gross", "nice"})
    os.makedirs(out_dir, exist_ok=True)
    vocab_file = os.path.join(out_dir, "vocab.txt")
    atomic_write_text(vocab_file, "\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=vocab_file, do_lower_case=True, model_max_length=max_length).save_pretrained(out_dir)
    return {token: i for i, token in enumerate(vocab)}


def _image_processor(image_size):
    from transformers import BlipImageProcessor

    return BlipImageProcessor(size={"height": image_size, "width": image_size})


def _small(hidden, layers, **extra):
    return dict(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=2,
                **extra)


def make_tiny_blip(out_dir, itm=False, image_size=32, hidden=32, layers=2, projection_dim=16, seed=0):
    """A random BlipModel (or BlipForImageTextRetrieval with itm=True) with its tokenizer and image processor."""
    import torch
    from transformers import BlipConfig, BlipForImageTextRetrieval, BlipModel

    if os.path.isfile(os.path.join(out_dir, "config.json")):
        return out_dir
    vocab = write_wordpiece_tokenizer(out_dir)
    text = _small(hidden, layers, vocab_size=len(vocab), max_position_embeddings=64, encoder_hidden_size=hidden,
                  pad_token_id=vocab["[PAD]"], bos_token_id=vocab["[CLS]"], eos_token_id=vocab["[SEP]"],
                  sep_token_id=vocab["[SEP]"])
    vision = _small(hidden, layers, image_size=image_size, patch_size=image_size // 4)
    torch.manual_seed(seed)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=projection_dim,
                        image_text_hidden_size=projection_dim)
    (BlipForImageTextRetrieval if itm else BlipModel)(config).save_pretrained(out_dir)
    _image_processor(image_size).save_pretrained(out_dir)
    return out_dir


def make_tiny_blip2(out_dir, language_model="opt", image_size=32, hidden=32, layers=2, seed=0):
    """A random Blip2Model with a tiny OPT (decoder-only) or T5 (encoder-decoder) language model."""
    import torch
    from transformers import Blip2Config, Blip2Model, OPTConfig, T5Config

    if os.path.isfile(os.path.join(out_dir, "config.json")):
        return out_dir
    vocab = write_wordpiece_tokenizer(out_dir)
    if language_model == "opt":
        text = OPTConfig(vocab_size=len(vocab), hidden_size=hidden, ffn_dim=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=2, word_embed_proj_dim=hidden, max_position_embeddings=64,
                         pad_token_id=vocab["[PAD]"], bos_token_id=vocab["[CLS]"], eos_token_id=vocab["[SEP]"])
    elif language_model == "t5":
        text = T5Config(vocab_size=len(vocab), d_model=hidden, d_kv=hidden // 2, d_ff=2 * hidden, num_layers=layers,
                        num_heads=2, pad_token_id=vocab["[PAD]"], eos_token_id=vocab["[SEP]"],
                        decoder_start_token_id=vocab["[PAD]"])
    else:
        raise ValueError(f"language_model must be opt or t5, got {language_model!r}")
    vision = _small(hidden, layers, image_size=image_size, patch_size=image_size // 4)
    qformer = _small(hidden, layers, encoder_hidden_size=hidden, vocab_size=len(vocab))
    torch.manual_seed(seed)
    config = Blip2Config(vision_config=vision, qformer_config=qformer, text_config=text.to_dict(),
                         num_query_tokens=4)
    Blip2Model(config).save_pretrained(out_dir)
    _image_processor(image_size).save_pretrained(out_dir)
    return out_dir


def make_tiny_encoder(name, out_dir, **kwargs):
    """`name` in TINY_ENCODERS (blip2_t5: BLIP-2 with a T5 language model)."""
    if name == "clip":
        return make_tiny_clip(out_dir, **kwargs)
    if name in ("blip", "blip_itm"):
        return make_tiny_blip(out_dir, itm=name == "blip_itm", **kwargs)
    if name in ("blip2", "blip2_t5"):
        return make_tiny_blip2(out_dir, language_model="t5" if name == "blip2_t5" else "opt", **kwargs)
    raise ValueError(f"tiny encoder must be one of {TINY_ENCODERS}, got {name!r}")


def make_tiny_vl_hmd(data_dir, encoders=TINY_ENCODERS, **kwargs):
    """The generated memes under data_dir and tiny encoders at `<data_dir>/<name>_tiny` (projects/frozen_vl/tiny.yaml
    expects `${env.data_dir}/${model_config.frozen_vl.encoder}_tiny`)."""
    root = make_image_memes(data_dir, **{k: v for k, v in kwargs.items() if k in ("image_size", "seed", "splits")})
    dirs = {name: make_tiny_encoder(name, os.path.join(data_dir, f"{name}_tiny")) for name in encoders}
    return {"data_dir": data_dir, "root": root, **{f"{name}_dir": path for name, path in dirs.items()}}
