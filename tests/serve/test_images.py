"""Images with bounded memory: shrunk to the detector's working size before they become arrays, decoded a bounded
number at a time, refused above a pixel cap the model can use, and inside the request's timeout."""
import concurrent.futures
import io
import threading
import time

import numpy as np
import pytest
import requests
import torch
from PIL import Image


def encoded(image, fmt="PNG", **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_large_images_are_reduced_before_decoding_to_arrays_small_ones_decode_as_the_extractor_does(tmp_path):
    from mmf_pe.extraction.images import load_rgb
    from mmf_pe.serve.images import decode_for_detector

    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 255, (80, 120, 3), dtype=np.uint8))
    rgb, size = decode_for_detector(encoded(small), "small.png", 10**8, (800, 1333))
    (tmp_path / "small.png").write_bytes(encoded(small))
    assert size == (80, 120) and np.array_equal(rgb, load_rgb(str(tmp_path / "small.png")))
    big = Image.new("RGB", (1500, 1000), (200, 10, 10))  # working size 300 x 200 (short side 200): k = 5
    for data in (encoded(big), encoded(big, "JPEG", quality=50), encoded(big.convert("P")), encoded(big.convert("1"))):
        rgb, size = decode_for_detector(data, "big", 10**8, (200, 333))
        assert size == (1000, 1500) and rgb.dtype == np.uint8 and rgb.shape[2] == 3
        assert 200 <= rgb.shape[0] < 400 and rgb.shape[1] * 1000 == rgb.shape[0] * 1500, rgb.shape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the array and the reported size are upright
    rgb, size = decode_for_detector(encoded(big, "JPEG", exif=exif.tobytes()), "rotated.jpg", 10**8, (200, 333))
    assert size == (1500, 1000) and rgb.shape[0] > rgb.shape[1]


class SlowFeaturizer:
    """The detector's interface with a sleep instead of a network; counts how many calls overlap."""

    def __init__(self, seconds):
        self.seconds, self.active, self.most, self.lock = seconds, 0, 0, threading.Lock()

    def provenance(self):
        return {}

    def differences(self, provenance):
        return {}

    def working_size(self):
        return 800, 1333

    def __call__(self, rgb, normalisation=None, original_size=None, deadline=None):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(self.seconds)
        with self.lock:
            self.active -= 1
        return torch.zeros(3, 2048), [[0.0, 0.0, 1.0, 1.0]] * 3


@pytest.fixture
def app_with(server):
    """An app over the test folder and the already loaded engine, with a stub detector and its own settings."""
    from mmf_pe.serve.app import Settings, create_app

    def make(featurizer, **settings):
        settings = Settings(server.served["served"], admin_token="", score_token="", **settings)
        return create_app(settings, engine=server.server.config.app.state.engine, featurizer=featurizer)

    return make


def test_decoding_is_bounded_and_the_default_pixel_cap_refuses_what_the_model_cannot_use(app_with):
    from tests.serve.helpers import ThreadedServer

    featurizer = SlowFeaturizer(0.5)
    meme = encoded(Image.new("RGB", (120, 80), (30, 30, 200)))
    with ThreadedServer(app_with(featurizer, decode_concurrency=2)) as running:
        def one(_):
            return requests.post(f"{running.url}/v1/score", data={"adapter": "pe_img"},
                                 files={"image": ("m.png", meme)}, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(one, range(6)))
        assert [a.status_code for a in answers] == [200] * 6, answers[0].text
        assert featurizer.most == 2  # six at once, two decoded / in the detector at a time
        assert "mmf_pe_images_in_flight 0.0" in requests.get(f"{running.url}/metrics", timeout=30).text
        bomb = encoded(Image.new("1", (6000, 6000)))  # 36 megapixels in a few KB: under the old 40 MP cap
        answer = requests.post(f"{running.url}/v1/score", data={"adapter": "pe_img"},
                               files={"image": ("big.png", bomb)}, timeout=60)
        assert answer.status_code == 413 and answer.json()["field"] == "image", answer.text
        assert "too large" in answer.json()["error"]


def test_feature_extraction_counts_inside_the_request_timeout(app_with):
    from fastapi.testclient import TestClient

    meme = encoded(Image.new("RGB", (120, 80), (30, 30, 200)))
    with TestClient(app_with(SlowFeaturizer(2.0), timeout_s=0.5)) as client:
        started = time.perf_counter()
        answer = client.post("/v1/score", data={"adapter": "pe_img"}, files={"image": ("m.png", meme)})
        elapsed = time.perf_counter() - started
    assert answer.status_code == 504 and "request timeout" in answer.json()["error"], answer.text
    assert elapsed < 1.8  # answered at the deadline, not after the detector's 2 s
