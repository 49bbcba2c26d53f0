"""Images without text over real HTTP: the caption is read by OCR (Tesseract) and scored; `--ocr off` requires the
client's text; a missing engine is a clear 503 naming it while the server stays up."""
import io
import shutil

import editdistance
import pytest
import requests

from mmf_pe.serve.reading import EMPTY_OCR
from tests.serve.helpers import ThreadedServer, counted_image_opens

CAPTION = "look at this lovely family"
TOKEN = "score-token"

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None,
                                reason="needs the Debian packages tesseract-ocr tesseract-ocr-eng")


def png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def meme():
    """A demo meme (the demo's drawing code) with its caption in the image, at 192 px."""
    from mmf_pe.demo.memes import Scene, draw_meme

    scene = Scene(background=(236, 233, 222), horizon=0.7, shape="square", colour="blue", cx=0.5, cy=0.45,
                  radius=0.2, prop_colour=(120, 84, 50), prop_xy=(0.12, 0.6), caption_top=True)
    return png(draw_meme(scene, CAPTION, size=192))


def post(url, data, image, path="/v1/score", token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return requests.post(url + path, data=data, files={"image": ("meme.png", image)}, headers=headers, timeout=120)


def test_an_image_alone_is_scored_on_its_ocr_caption(server, meme):
    alone = post(server.url, {"adapter": "pe_img"}, meme)
    assert alone.status_code == 200, alone.text
    body = alone.json()
    assert body["text_source"] == "ocr" and body["timings_ms"]["ocr"] > 0 and "note" not in body
    words = body["text"].split()
    assert editdistance.eval(words, CAPTION.split()) / len(CAPTION.split()) <= 0.5, body["text"]  # the caption read
    # the same image with that text sent by the client scores the same: the OCR'd text is what was scored
    given = post(server.url, {"adapter": "pe_img", "text": body["text"]}, meme).json()
    assert given["text_source"] == "client" and given["timings_ms"]["ocr"] == 0
    assert given["probability"] == pytest.approx(body["probability"], abs=1e-6)
    other = post(server.url, {"adapter": "pe_img", "text": "a completely different caption here"}, meme).json()
    assert other["probability"] != pytest.approx(body["probability"], abs=1e-6)  # the text matters to the score
    page_ocr = post(server.url, {}, meme, "/v1/ocr").json()
    assert page_ocr["text"] == body["text"] and page_ocr["engine"] == "tesseract"


def test_ocr_and_the_detector_share_one_decode(server, featurizer, meme, monkeypatch):
    """An image alone: OCR reads the copy the detector then reads (before: each decoded the upload). The test's
    detector works at a small size; here it reports the default one, at which OCR's copy is the detector's (the
    192 px meme is not shrunk at either size, so its features are unchanged)."""
    from mmf_pe.serve.images import DEFAULT_WORKING_SIZE

    monkeypatch.setattr(featurizer, "working_size", lambda: DEFAULT_WORKING_SIZE)
    opened = counted_image_opens(monkeypatch)
    response = post(server.url, {"adapter": "pe_img"}, meme)
    assert response.status_code == 200 and response.json()["text_source"] == "ocr", response.text
    assert len(opened) == 1, opened


def test_an_image_without_text_is_scored_on_empty_text_and_says_so(server):
    from PIL import Image

    blank = png(Image.new("RGB", (96, 96), (90, 140, 200)))
    body = post(server.url, {"adapter": "pe_img"}, blank).json()
    assert body["text"] == "" and body["text_source"] == "ocr" and body["note"] == EMPTY_OCR
    assert post(server.url, {}, blank, "/v1/ocr").json()["note"] == EMPTY_OCR


@pytest.fixture(scope="module")
def other_servers(served, featurizer):
    """Two more servers on the folder: OCR off, and OCR pointed at a missing engine binary (with a scoring token)."""
    from mmf_pe.ocr import OcrEngine
    from mmf_pe.serve.app import Settings, create_app

    settings = Settings(served["served"], timeout_s=60, poll_s=0.5, admin_token="", score_token="")
    guarded = Settings(served["served"], timeout_s=60, poll_s=0.5, admin_token="", score_token=TOKEN)
    with ThreadedServer(create_app(settings, featurizer=featurizer, reader=None)) as off, \
            ThreadedServer(create_app(guarded, featurizer=featurizer,
                                      reader=OcrEngine("/nonexistent/bin/tesseract"))) as missing:
        yield off, missing


def test_ocr_off_requires_the_client_text(other_servers, meme):
    off, _ = other_servers
    refused = post(off.url, {"adapter": "pe_img"}, meme)
    assert refused.status_code == 422
    assert refused.json()["field"] == "text" and "--ocr off" in refused.json()["error"]
    assert post(off.url, {}, meme, "/v1/ocr").status_code == 422
    scored = post(off.url, {"adapter": "pe_img", "text": CAPTION}, meme)
    assert scored.status_code == 200 and scored.json()["text_source"] == "client"


def test_a_missing_engine_is_named_and_the_server_stays_up(other_servers, meme):
    _, missing = other_servers
    assert post(missing.url, {}, meme, "/v1/ocr").status_code == 401  # OCR needs the scoring token too
    for path in ("/v1/score", "/v1/ocr"):
        answer = post(missing.url, {"adapter": "pe_img"}, meme, path, TOKEN)
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert "OCR engine tesseract not found" in error and "apt-get install tesseract-ocr tesseract-ocr-eng" in error
    assert requests.get(missing.url + "/healthz", timeout=10).status_code == 200
    scored = post(missing.url, {"adapter": "pe_img", "text": CAPTION}, meme, token=TOKEN)  # client text: no engine
    assert scored.status_code == 200 and scored.json()["text_source"] == "client"


def test_the_command_line_switches_ocr(served):
    from mmf_pe.ocr import OcrEngine
    from mmf_pe.serve.cli import build_app, parser

    assert parser().parse_args(["f"]).ocr == "on"
    options = {"folder": served["served"], "default_adapter": None, "max_batch": 4, "max_wait_ms": 1.0,
               "max_queue": 8, "timeout_s": 10.0, "max_upload_mb": 1.0, "max_pixels": 10**6, "poll_s": 1.0,
               "no_detector": True, "detector_args": {}}
    assert build_app(dict(options, ocr="off")).state.reader is None
    reader = build_app(dict(options, ocr="on", ocr_command="/opt/tess")).state.reader
    assert isinstance(reader, OcrEngine) and reader.command == "/opt/tess"
