"""Helpers for the extraction tests: generated and real images, tiny detector settings."""
import io
import os

import numpy as np
from PIL import Image


def random_rgb(height, width, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]  # blocky: compresses, has edges


def write_images(directory, count, size=(64, 80), prefix="img", seed=0):
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(count):
        path = os.path.join(directory, f"{prefix}{i:03d}.png")
        Image.fromarray(random_rgb(*size, seed=seed + i)).save(path)
        paths.append(path)
    return paths


def real_photos(directory, short_side=96):
    """scikit-learn's two sample photographs (and scikit-image's astronaut/coffee when available), downscaled."""
    from sklearn.datasets import load_sample_images

    os.makedirs(directory, exist_ok=True)
    photos = dict(zip(["china", "flower"], load_sample_images().images))
    try:
        from skimage import data

        photos.update(astronaut=data.astronaut(), coffee=data.coffee())
    except Exception:  # noqa: BLE001 - optional extra photographs
        pass
    paths = []
    for name, array in photos.items():
        image = Image.fromarray(array)
        scale = short_side / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)))
        path = os.path.join(directory, f"{name}.jpg")
        image.save(path, quality=90)
        paths.append(path)
    return paths


def good_images(directory):
    """One file per awkward-but-valid kind: {name: (path, expected (h, w))}."""
    os.makedirs(directory, exist_ok=True)
    rgb = random_rgb(24, 40)
    out = {}

    def save(name, image, **kw):
        path = os.path.join(directory, name)
        image.save(path, **kw)
        out[os.path.splitext(name)[0]] = path

    save("rgba.png", Image.fromarray(np.dstack([rgb, np.full((24, 40), 128, np.uint8)]), "RGBA"))
    save("palette.png", Image.fromarray(rgb).convert("P"))
    save("palette_transparent.gif", Image.fromarray(rgb).convert("P"), transparency=0)
    save("gray.png", Image.fromarray(rgb[..., 0], "L"))
    save("gray_alpha.png", Image.fromarray(rgb[..., 0], "L").convert("LA"))
    save("bilevel.png", Image.fromarray(rgb[..., 0] > 100))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    save("sixteen_bit.png", Image.fromarray((rgb[..., 0].astype(np.uint16) * 257), "I;16"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    save("exif_rotated.jpg", Image.fromarray(rgb), exif=exif.tobytes())
    return out


def bad_images(directory):
    """{path: expected reason fragment} for every kind of unusable file."""
    os.makedirs(directory, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(random_rgb(64, 64)).save(buffer, format="PNG")
    png = buffer.getvalue()
    buffer = io.BytesIO()
    Image.fromarray(random_rgb(64, 64)).save(buffer, format="JPEG")
    jpeg = buffer.getvalue()
    files = {
        "empty.jpg": (b"", "empty file"),
        "html.jpg": (b"<html><body>404 not found</body></html>", "not an image"),
        "truncated.png": (png[: len(png) // 2], "truncated"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "corrupt.png": (png[:33] + bytes(range(256)) * 8, "corrupt"),
        "bad_header.png": (png[:20] + bytes(64), "not an image"),
    }
    out = {}
    for name, (data, reason) in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
        out[os.path.join(directory, name)] = reason
    bomb = os.path.join(directory, "bomb.png")
    Image.new("1", (9000, 9000)).save(bomb)  # 81 M pixels in a tiny file
    out[bomb] = "too large"
    return out


TINY = dict(allow_random_weights=True, min_size=64, max_size=112, num_boxes=6,
            detector_options={"rpn_pre_nms_top_n": 60, "rpn_post_nms_top_n": 30}, progress=False, num_workers=0)
