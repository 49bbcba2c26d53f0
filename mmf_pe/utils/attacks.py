"""The evasion attacks `mmf_pe robustness` measures and `training.augment` trains against: what people do to a meme
so a detector misses it.

Text: look-alike letters (Unicode's confusables list, the data `confusable-homoglyphs` ships), zero-width and bidi
controls, typos (swap / drop / insert), leetspeak, case changes. Image (PIL): Gaussian noise (variance 0.005 on
[0, 1] pixels, as the CLIP/BLIP source system), grayscale, JPEG quality 20, blur, a sticker pasted at a seeded
position and size, crop + resize. White-box PGD (L-infinity) is mmf_pe.utils.pgd (it needs the model). Every
attack draws from a `random.Random` seeded per sample, so results are reproducible.
"""
import functools
import io
import random

import numpy as np

# name -> {parameter: (default, low, high)}; the command prints the chosen values as YAML
TEXT_ATTACKS = {
    "homoglyphs": {"rate": (0.5, 0.0, 1.0)},
    "zero_width": {"rate": (0.5, 0.0, 1.0)},
    "typos": {"rate": (0.3, 0.0, 1.0)},
    "leetspeak": {"rate": (0.7, 0.0, 1.0)},
    "case": {"rate": (0.5, 0.0, 1.0)},
}
IMAGE_ATTACKS = {
    "gaussian_noise": {"variance": (0.005, 0.0, 1.0)},
    "grayscale": {},
    "jpeg": {"quality": (20, 1, 100)},
    "blur": {"radius": (2.0, 0.0, 50.0)},
    "sticker": {"min_size": (0.2, 0.01, 1.0), "max_size": (0.4, 0.01, 1.0)},
    "crop_resize": {"keep": (0.8, 0.1, 1.0)},
}
# any `a+b[+c]` of single attacks is accepted; these are the ones the docs' tables use
COMBINED_ATTACKS = {"homoglyphs+zero_width": {}, "homoglyphs+zero_width+sticker": {}, "pgd+homoglyphs": {},
                    "pgd+typos": {}}
PGD_ATTACKS = {"pgd": {"epsilon": (0.2, 0.0, 100.0), "steps": (5, 1, 1000), "step_size": (None, 0.0, 100.0)}}
SINGLE_ATTACKS = {**TEXT_ATTACKS, **IMAGE_ATTACKS, **PGD_ATTACKS}
ATTACKS = {**SINGLE_ATTACKS, **COMBINED_ATTACKS}
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"]
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "l": "1", "g": "9", "b": "8"}


class AttackError(ValueError):
    pass


def parts(name):
    """The single attacks a (possibly combined, `a+b`) attack applies."""
    return name.split("+")


def resolve(names, overrides=None):
    """{attack: {parameter: value}} for the requested attacks, defaults filled in; clear errors for unknown names
    and out-of-range values. `overrides`: {attack: {parameter: value}} (e.g. from a YAML file)."""
    overrides = overrides or {}
    unknown = [n for n in names if not all(p in SINGLE_ATTACKS for p in parts(n))]
    unknown += [n for n in overrides if n not in SINGLE_ATTACKS]
    if unknown:
        raise AttackError(f"unknown attack {unknown[0]!r}; known: {', '.join(ATTACKS)}")
    chosen = {}
    for name in names:
        for part in parts(name):
            spec = ATTACKS[part]
            given = dict(overrides.get(part) or {})
            extra = sorted(set(given) - set(spec))
            if extra:
                raise AttackError(f"{part}: unknown parameter {extra[0]!r}; it takes {', '.join(spec) or 'none'}")
            values = {}
            for key, (default, low, high) in spec.items():
                value = given.get(key, default)
                if value is not None and not (isinstance(value, (int, float)) and low <= value <= high):
                    raise AttackError(f"{part}.{key} = {value!r} is out of range [{low}, {high}]")
                values[key] = value
            if part == "sticker" and values["min_size"] > values["max_size"]:
                raise AttackError(f"sticker.min_size {values['min_size']} > max_size {values['max_size']}")
            chosen[part] = values
    return chosen


def rng_for(seed, index, name):
    return random.Random(f"{seed}:{index}:{name}")


# ---- text -------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _lookalikes():
    """{ASCII letter: [non-ASCII characters that look like it]}, the inverse of the normaliser's map, without the
    styled forms NFKC already reads as another letter (script / fullwidth `I` look like `l` but NFKC makes them `I`)."""
    import unicodedata

    from mmf_pe.utils.text_normalization import confusables_map

    table = {}
    for code, target in sorted(confusables_map().items()):
        if target.isalpha() and unicodedata.normalize("NFKC", chr(code)) == chr(code):
            table.setdefault(target, []).append(chr(code))
    return table


def _each_char(text, rng, rate, change):
    return "".join(change(c) if rng.random() < rate else c for c in text)


def homoglyphs(text, rng, rate):
    table = _lookalikes()
    return _each_char(text, rng, rate, lambda c: rng.choice(table[c]) if c in table else c)


def zero_width(text, rng, rate):
    out = []
    for c in text:
        out.append(c)
        if rng.random() < rate:
            out.append(rng.choice(ZERO_WIDTH + BIDI))
    return "".join(out)


def typos(text, rng, rate):
    chars, out, i = list(text), [], 0
    while i < len(chars):
        c = chars[i]
        if c.isalpha() and rng.random() < rate:
            kind = rng.choice(("swap", "drop", "insert"))
            if kind == "swap" and i + 1 < len(chars) and chars[i + 1].isalpha():
                out += [chars[i + 1], c]
                i += 2
                continue
            if kind == "drop":
                i += 1
                continue
            out += [c, rng.choice("abcdefghijklmnopqrstuvwxyz")]
        else:
            out.append(c)
        i += 1
    return "".join(out)


def leetspeak(text, rng, rate):
    return _each_char(text, rng, rate, lambda c: LEET.get(c.lower(), c))


def case(text, rng, rate):
    return _each_char(text, rng, rate, lambda c: c.swapcase())


TEXT_FUNCTIONS = {"homoglyphs": homoglyphs, "zero_width": zero_width, "typos": typos, "leetspeak": leetspeak,
                  "case": case}


def attack_text(text, name, params, rng):
    for part in parts(name):
        if part in TEXT_FUNCTIONS:
            text = TEXT_FUNCTIONS[part](text, rng, **params[part])
    return text


# ---- image (PIL RGB in, PIL RGB out) ---------------------------------------------------------------------------

def gaussian_noise(image, rng, variance):
    from PIL import Image

    pixels = np.asarray(image, dtype=np.float32) / 255.0
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, variance ** 0.5, size=pixels.shape)
    return Image.fromarray((np.clip(pixels + noise, 0, 1) * 255).round().astype(np.uint8))


def grayscale(image, rng):
    return image.convert("L").convert("RGB")


def jpeg(image, rng, quality):
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def blur(image, rng, radius):
    from PIL import ImageFilter

    return image.filter(ImageFilter.GaussianBlur(radius))


def sticker(image, rng, min_size, max_size):
    """A smiley sticker (yellow disc, dark eyes and mouth) at a seeded position, its side a seeded fraction of the
    image's shorter side: what people paste over the hateful part of a meme."""
    from PIL import ImageDraw

    image = image.copy()
    side = max(4, int(min(image.size) * rng.uniform(min_size, max_size)))
    x, y = rng.randint(0, max(0, image.width - side)), rng.randint(0, max(0, image.height - side))
    draw = ImageDraw.Draw(image)
    draw.ellipse((x, y, x + side, y + side), fill=(255, 204, 0), outline=(120, 80, 0))
    eye = max(1, side // 8)
    for ex in (x + side // 3, x + 2 * side // 3):
        draw.ellipse((ex - eye, y + side // 3 - eye, ex + eye, y + side // 3 + eye), fill=(40, 30, 20))
    draw.arc((x + side // 4, y + side // 3, x + 3 * side // 4, y + 3 * side // 4), 20, 160, fill=(40, 30, 20),
             width=max(1, side // 16))
    return image


def crop_resize(image, rng, keep):
    width, height = image.size
    w, h = max(1, int(width * keep)), max(1, int(height * keep))
    x, y = rng.randint(0, width - w), rng.randint(0, height - h)
    return image.crop((x, y, x + w, y + h)).resize((width, height))


IMAGE_FUNCTIONS = {"gaussian_noise": gaussian_noise, "grayscale": grayscale, "jpeg": jpeg, "blur": blur,
                   "sticker": sticker, "crop_resize": crop_resize}


def attack_image(image, name, params, rng):
    for part in parts(name):
        if part in IMAGE_FUNCTIONS:
            image = IMAGE_FUNCTIONS[part](image, rng, **params[part])
    return image


def needs_images(name):
    return any(p in IMAGE_FUNCTIONS for p in parts(name))


def uses_pgd(name):
    return "pgd" in parts(name)
