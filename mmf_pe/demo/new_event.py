"""The demo's second period: memes of a "new event" that the first period never shows.

A detector trained once meets, some time later, memes about something new: new caption templates, new hateful and
kind words, new nouns, and figures in colours and shapes absent from the first period (`memes.NEW_EVENT`). The label
rule is the first period's (`label = tone(caption) XOR warmth(figure)`, the new mean words and the new warm colours
counting like the old ones), and the memes come in the same confounder quads, so the new period is as hard for a
single modality as the first one; what a first-period model lacks is the new vocabulary and the new colours.

Generated with its own seed into its own folder (`<out>/drift/data`): the first period's memes, features and runs
are untouched. Ids start at FIRST_ID, so they never meet a first-period id (replay mixes both).
"""
import json
import os
from dataclasses import asdict

import numpy as np

from mmf_pe.demo import memes
from mmf_pe.utils.io import atomic_write_text

SPLITS = {"new_train": 256, "new_test": 256}  # new_train: the labels an adapted adapter may use (<= 500)
SEED = 1                                       # not the first period's generator seed (0)
FIRST_ID = 100001


def make_new_event(folder, splits=None, image_size=128, seed=SEED, progress=True):
    """Write `<folder>/{images/img/*.png, annotations/<split>.jsonl, factors.jsonl}` (the HMD layout of
    `memes.make_memes`; lines also carry `"period": "new_event"`). Idempotent like make_memes: a complete folder made
    with the same settings is reused, one made with others is an error. Returns a dict of paths."""
    spec = memes.MemeSpec(dict(splits or SPLITS), image_size, seed)
    paths = {"root": folder, "images": os.path.join(folder, "images"),
             "annotations": os.path.join(folder, "annotations"), "factors": os.path.join(folder, "factors.jsonl")}
    done = os.path.join(folder, ".new_event_complete")
    key = json.dumps({"spec": spec.key(), "vocabulary": memes.NEW_EVENT, "first_id": FIRST_ID}, sort_keys=True)
    if os.path.exists(done):
        with open(done) as f:
            made_with = f.read().strip()
        if made_with != key:
            raise ValueError(f"{folder} holds new-event memes made with {made_with}, not {key}: use another folder")
        return paths
    bad = {s: n for s, n in spec.splits.items() if n % 4 or n <= 0}
    if bad:
        raise ValueError(f"split sizes must be positive multiples of 4 (whole confounder quads), got {bad}")
    rng = np.random.default_rng(seed)
    records, factors, meme_id = {}, [], FIRST_ID
    for split, size in spec.splits.items():
        records[split] = []
        for quad_index in range(size // 4):
            for caption, word, scene in memes._quad(rng, memes.NEW_EVENT):
                label = memes.label_rule(memes.tone(word), memes.warmth(scene.colour))
                records[split].append({"id": meme_id, "img": f"img/{meme_id:06d}.png", "label": label,
                                       "text": caption, "period": "new_event"})
                factors.append({"id": meme_id, "split": split, "quad": f"{split}-{quad_index}", "text": caption,
                                "tone_word": word, "tone": memes.tone(word), "colour": scene.colour,
                                "warmth": memes.warmth(scene.colour), "shape": scene.shape,
                                "pattern": scene.pattern, "label": label, "scene": asdict(scene),
                                "img": f"img/{meme_id:06d}.png"})
                meme_id += 1
    _draw(factors, paths["images"], image_size, progress)
    for split, lines in records.items():
        lines = [lines[i] for i in rng.permutation(len(lines))]
        atomic_write_text(os.path.join(paths["annotations"], f"{split}.jsonl"),
                          "".join(json.dumps(r) + "\n" for r in lines))
    atomic_write_text(paths["factors"], "".join(json.dumps(f) + "\n" for f in factors))
    atomic_write_text(done, key + "\n")
    return paths


def _draw(factors, images_dir, image_size, progress):
    import io

    from tqdm import tqdm

    from mmf_pe.utils.io import atomic_write_bytes

    os.makedirs(os.path.join(images_dir, "img"), exist_ok=True)
    for factor in tqdm(factors, desc="draw new-event memes", disable=not progress, unit="img"):
        path = os.path.join(images_dir, factor["img"])
        if os.path.exists(path):
            continue
        buffer = io.BytesIO()
        memes.draw_meme(memes.Scene(**factor["scene"]), factor["text"], image_size).save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())
