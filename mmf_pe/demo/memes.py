"""Synthetic memes in Hateful Memes layout: drawn scenes with a caption, labelled by a rule that needs both.

The label rule is fixed here, in advance of any training, and is never changed to suit results:

    label = tone(caption) XOR warmth(figure)

* tone(caption) = 1 when the caption's one tone word is from MEAN_WORDS, 0 when it is from KIND_WORDS.
* warmth(figure) = 1 when the scene's main figure is painted in a WARM colour (red, orange), 0 for COOL (blue, teal).
* Everything else is a nuisance independent of the label: caption template and noun, background, horizon, figure
  shape, size and position, a small grey/brown prop, where the caption sits.

Memes are made in quads, Hateful Memes' "benign confounders" made exact: two captions that differ only in the tone
word x two scenes that differ only in the figure's colour family. Every caption therefore occurs with both labels,
and so does every scene: a text-only or image-only model sees no signal and is at chance (0.5 AUROC).
The caption is also rendered onto the image, as in real memes (region features from a random-weight detector
cannot read it). Unseen splits (dev_unseen, test_unseen) use nouns and a figure shape that train never shows.
"""
import hashlib
import json
import os
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmf_pe.utils.io import atomic_write_bytes, atomic_write_text

KIND_WORDS = ("lovely", "wonderful", "adorable", "brilliant", "charming", "gorgeous")
MEAN_WORDS = ("disgusting", "pathetic", "hideous", "filthy", "worthless", "vile")
TEMPLATES = ("look at this {adj} {noun}", "what a {adj} {noun}", "such a {adj} {noun} lol",
             "my {adj} {noun} today", "this {noun} is so {adj}")
NOUNS = {"seen": ("neighbour", "crowd", "family", "guy", "team", "kid", "couple", "boss"),
         "unseen": ("stranger", "coworker", "tourist")}
WARM = {"red": (214, 48, 40), "orange": (240, 140, 30)}
COOL = {"blue": (44, 86, 214), "teal": (24, 156, 160)}
SHAPES = {"seen": ("circle", "square", "triangle", "diamond"), "unseen": ("hexagon",)}
BACKGROUNDS = ((236, 233, 222), (205, 205, 205), (178, 190, 170), (64, 64, 72), (226, 214, 190))
PROPS = ((120, 120, 120), (120, 84, 50), (30, 30, 30))
SPLITS = {"train": 512, "dev_seen": 128, "dev_unseen": 64, "test_seen": 256, "test_unseen": 128}
# A later period's "new event" (mmf_pe.demo.new_event): templates, tone words, nouns, figure colours and shapes that
# the first period never shows. The label rule is the same: a new mean word has tone 1, a new warm colour warmth 1.
NEW_EVENT = {
    "templates": ("{noun} spotted again, {adj}", "nothing but a {adj} {noun}", "{adj} {noun} alert",
                  "who invited this {adj} {noun}"),
    "kind_words": ("delightful", "stunning", "precious", "splendid"),
    "mean_words": ("repulsive", "revolting", "despicable", "putrid"),
    "nouns": ("referee", "supporter", "striker", "fan"),
    "warm": {"yellow": (232, 204, 26), "pink": (240, 120, 190)},
    "cool": {"green": (46, 150, 62), "mint": (110, 214, 170)},
    "shapes": ("pentagon", "star"),
}


def tone(word):
    if word in KIND_WORDS + NEW_EVENT["kind_words"]:
        return 0
    if word in MEAN_WORDS + NEW_EVENT["mean_words"]:
        return 1
    raise ValueError(f"{word!r} is not a tone word")


def warmth(colour_name):
    if colour_name in WARM or colour_name in NEW_EVENT["warm"]:
        return 1
    if colour_name in COOL or colour_name in NEW_EVENT["cool"]:
        return 0
    raise ValueError(f"{colour_name!r} is not a figure colour")


def label_rule(tone_value, warmth_value):
    """The one label rule (see module docstring)."""
    return int(tone_value) ^ int(warmth_value)


@dataclass
class Scene:
    """Everything drawn except the caption. `scene_id` names it without the figure's colour family."""
    background: tuple
    horizon: float          # fraction of the height where the ground starts
    shape: str
    colour: str
    cx: float
    cy: float
    radius: float           # fraction of the image size
    prop_colour: tuple
    prop_xy: tuple
    caption_top: bool

    @property
    def pattern(self):
        """The scene without the figure's colour: the 'image pattern' shared by both members of a pair."""
        d = asdict(self)
        d.pop("colour")
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def _sample_scene(rng, shapes):
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    radius = float(rng.uniform(0.16, 0.26))
    return Scene(
        background=tuple(int(c) for c in background),
        horizon=float(rng.uniform(0.55, 0.8)),
        shape=str(shapes[rng.integers(len(shapes))]),
        colour="",
        cx=float(rng.uniform(0.3, 0.7)),
        cy=float(rng.uniform(0.38, 0.55)),
        radius=radius,
        prop_colour=tuple(int(c) for c in PROPS[rng.integers(len(PROPS))]),
        prop_xy=(float(rng.choice([0.12, 0.88])), float(rng.uniform(0.55, 0.75))),
        caption_top=bool(rng.integers(2)),
    )


def _polygon(shape, cx, cy, r):
    if shape == "circle":
        return None
    if shape == "star":  # five points: outer and inner corners alternate
        angles = -np.pi / 2 + np.pi * np.arange(10) / 5
        return [(cx + r * (1 if i % 2 == 0 else 0.45) * np.cos(a), cy + r * (1 if i % 2 == 0 else 0.45) * np.sin(a))
                for i, a in enumerate(angles)]
    corners = {"square": 4, "diamond": 4, "triangle": 3, "hexagon": 6, "pentagon": 5}[shape]
    offset = {"square": np.pi / 4, "diamond": 0.0, "triangle": -np.pi / 2, "hexagon": 0.0,
              "pentagon": -np.pi / 2}[shape]
    angles = offset + 2 * np.pi * np.arange(corners) / corners
    return [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in angles]


def _font(size):
    return ImageFont.load_default(size=max(8, size))


def draw_meme(scene, caption, size=128):
    """The meme as an RGB PIL image: two-tone background, a prop, the figure with eyes, the caption in white."""
    background = tuple(scene.background)
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    ground = tuple(max(0, c - 40) for c in background)
    draw.rectangle([0, int(scene.horizon * size), size, size], fill=ground)
    px, py = scene.prop_xy[0] * size, scene.prop_xy[1] * size
    prop = [px - 0.06 * size, py - 0.1 * size, px + 0.06 * size, py + 0.1 * size]
    draw.rectangle(prop, fill=tuple(scene.prop_colour))
    colour = {**WARM, **COOL, **NEW_EVENT["warm"], **NEW_EVENT["cool"]}[scene.colour]
    cx, cy, r = scene.cx * size, scene.cy * size, scene.radius * size
    polygon = _polygon(scene.shape, cx, cy, r)
    if polygon is None:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour, outline=(0, 0, 0))
    else:
        draw.polygon(polygon, fill=colour, outline=(0, 0, 0))
    for dx in (-0.35, 0.35):  # eyes: a character, not a swatch
        ex, ey, er = cx + dx * r, cy - 0.15 * r, max(1.0, 0.14 * r)
        draw.ellipse([ex - er, ey - er, ex + er, ey + er], fill=(255, 255, 255))
        draw.ellipse([ex - er / 2, ey - er / 2, ex + er / 2, ey + er / 2], fill=(0, 0, 0))
    font = _font(size // 10)
    lines = _wrap(caption, font, size - 4, draw)
    line_height = font.getbbox("Ag")[3] + 1
    y = 2 if scene.caption_top else size - 2 - line_height * len(lines)
    for line in lines:
        width = draw.textlength(line, font=font)
        draw.text(((size - width) / 2, y), line, font=font, fill=(255, 255, 255), stroke_width=1,
                  stroke_fill=(0, 0, 0))
        y += line_height
    return image


def _wrap(text, font, width, draw):
    lines, current = [], ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and draw.textlength(candidate, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return lines + [current] if current else lines


def _quad(rng, vocabulary):
    """Two captions differing only in the tone word x two scenes differing only in the figure's colour family.
    `vocabulary`: nouns and shapes; templates, tone words and colours default to the first period's (NEW_EVENT's
    keys replace them)."""
    templates = vocabulary.get("templates", TEMPLATES)
    kind_words, mean_words = vocabulary.get("kind_words", KIND_WORDS), vocabulary.get("mean_words", MEAN_WORDS)
    warm_colours, cool_colours = vocabulary.get("warm", WARM), vocabulary.get("cool", COOL)
    template = templates[rng.integers(len(templates))]
    noun = vocabulary["nouns"][rng.integers(len(vocabulary["nouns"]))]
    kind, mean = kind_words[rng.integers(len(kind_words))], mean_words[rng.integers(len(mean_words))]
    captions = [(template.format(adj=word, noun=noun), word) for word in (kind, mean)]
    scene = _sample_scene(rng, vocabulary["shapes"])
    warm = list(warm_colours)[rng.integers(len(warm_colours))]
    cool = list(cool_colours)[rng.integers(len(cool_colours))]
    scenes = [Scene(**{**asdict(scene), "colour": name}) for name in (warm, cool)]
    return [(caption, word, s) for caption, word in captions for s in scenes]


@dataclass
class MemeSpec:
    splits: dict
    image_size: int = 128
    seed: int = 0

    def key(self):
        return json.dumps(asdict(self), sort_keys=True)


def make_memes(data_dir, splits=None, image_size=128, seed=0, progress=True):
    """Write `<data_dir>/datasets/hateful_memes/defaults/{images/img/*.png, annotations/*.jsonl, factors.jsonl}`.

    Split sizes must be multiples of 4 (whole quads). Idempotent: a complete dataset made with the same settings is
    reused; one made with other settings is an error (choose another directory). Returns a dict of paths.
    """
    spec = MemeSpec(dict(splits or SPLITS), image_size, seed)
    root = os.path.join(data_dir, "datasets", "hateful_memes", "defaults")
    paths = {"data_dir": data_dir, "root": root, "images": os.path.join(root, "images"),
             "annotations": os.path.join(root, "annotations"), "factors": os.path.join(root, "factors.jsonl")}
    done = os.path.join(root, ".memes_complete")
    if os.path.exists(done):
        with open(done) as f:
            made_with = f.read().strip()
        if made_with != spec.key():
            raise ValueError(f"{root} holds memes made with {made_with}, not {spec.key()}: use another directory")
        return paths
    bad = {s: n for s, n in spec.splits.items() if n % 4 or n <= 0}
    if bad:
        raise ValueError(f"split sizes must be positive multiples of 4 (whole confounder quads), got {bad}")
    rng = np.random.default_rng(seed)
    records, factors = {}, []
    next_id = 1
    for split, size in spec.splits.items():
        kind = "unseen" if "unseen" in split else "seen"
        vocabulary = {"nouns": NOUNS[kind], "shapes": SHAPES[kind]}
        records[split] = []
        for quad_index in range(size // 4):
            for caption, word, scene in _quad(rng, vocabulary):
                meme_id = next_id
                next_id += 1
                label = label_rule(tone(word), warmth(scene.colour))
                records[split].append({"id": meme_id, "img": f"img/{meme_id:05d}.png", "label": label,
                                       "text": caption})
                factors.append({"id": meme_id, "split": split, "quad": f"{split}-{quad_index}", "text": caption,
                                "tone_word": word, "tone": tone(word), "colour": scene.colour,
                                "warmth": warmth(scene.colour), "shape": scene.shape, "pattern": scene.pattern,
                                "label": label, "scene": asdict(scene)})
    _draw_all(factors, paths["images"], image_size, progress)
    for split, lines in records.items():
        lines = [lines[i] for i in rng.permutation(len(lines))]  # quads are not adjacent in the files
        atomic_write_text(os.path.join(paths["annotations"], f"{split}.jsonl"),
                          "".join(json.dumps(r) + "\n" for r in lines))
    atomic_write_text(paths["factors"], "".join(json.dumps(f) + "\n" for f in factors))
    atomic_write_text(done, spec.key() + "\n")
    return paths


def _draw_all(factors, images_dir, image_size, progress):
    import io

    from tqdm import tqdm

    os.makedirs(os.path.join(images_dir, "img"), exist_ok=True)
    for factor in tqdm(factors, desc="draw memes", disable=not progress, unit="img"):
        path = os.path.join(images_dir, "img", f"{factor['id']:05d}.png")
        if os.path.exists(path):
            continue
        buffer = io.BytesIO()
        draw_meme(Scene(**factor["scene"]), factor["text"], image_size).save(buffer, format="PNG")
        atomic_write_bytes(path, buffer.getvalue())


def read_factors(data_dir):
    """The per-meme factors (tone, warmth, pattern, ...) that `make_memes` wrote."""
    path = os.path.join(data_dir, "datasets", "hateful_memes", "defaults", "factors.jsonl")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def confounder_summary(factors):
    """How much a single modality can know, per split: label balance per caption, per scene pattern and per factor.

    `caption_lookup_accuracy` is the accuracy of the best text-only rule possible on that split (predict each
    caption's majority label, ties counted as half right); likewise for scene patterns. 0.5 means no signal."""
    summary = {}
    for split in sorted({f["split"] for f in factors}):
        rows = [f for f in factors if f["split"] == split]
        summary[split] = {"memes": len(rows), "positive_rate": sum(r["label"] for r in rows) / len(rows)}
        for name, key in (("caption", "text"), ("pattern", "pattern")):
            groups = {}
            for row in rows:
                groups.setdefault(row[key], []).append(row["label"])
            both = sum(1 for labels in groups.values() if 0 in labels and 1 in labels)
            right = sum(max(sum(labels), len(labels) - sum(labels)) if 2 * sum(labels) != len(labels)
                        else len(labels) / 2 for labels in groups.values())
            summary[split][f"{name}s"] = len(groups)
            summary[split][f"{name}s_with_both_labels"] = both
            summary[split][f"{name}_lookup_accuracy"] = right / len(rows)
        for factor in ("tone_word", "colour", "shape", "tone", "warmth"):
            rates = {}
            for row in rows:
                rates.setdefault(str(row[factor]), []).append(row["label"])
            summary[split][f"positive_rate_by_{factor}"] = {k: sum(v) / len(v) for k, v in sorted(rates.items())}
    return summary
