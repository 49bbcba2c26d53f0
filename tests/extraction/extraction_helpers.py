"""Helpers for the extraction tests: generated and real images, tiny detector settings, one torch thread.

Not a conftest.py: a second conftest module would shadow `from mmf_pe_testing import ...` in other test folders.
"""
import os

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(autouse=True)
def one_thread():
    """On the shared 2-core machine under load, 2 OpenMP threads are 5-10x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


TINY = dict(allow_random_weights=True, min_size=64, max_size=112, num_boxes=6,
            detector_options={"rpn_pre_nms_top_n": 60, "rpn_post_nms_top_n": 30}, progress=False, num_workers=0)
