"""`mmf_pe ocr`: OCR'd text beside the given text, resumed after an interruption, and a missing engine named."""
import json
import os
import shutil

import pytest

from mmf_pe.ocr import OcrEngine, OcrError
from mmf_pe.ocr.batch import main, ocr_annotations

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None,
                                reason="needs the Debian packages tesseract-ocr tesseract-ocr-eng")
CAPTIONS = ["look at this lovely family", "my vile boss today", "what a gorgeous team", "such a filthy kid lol"]


@pytest.fixture
def memes(tmp_path):
    """MMF layout: annotations/test.jsonl beside images/img/*.png, demo memes at 192 px (plus one broken file)."""
    from mmf_pe.demo.memes import Scene, draw_meme

    (tmp_path / "images" / "img").mkdir(parents=True)
    (tmp_path / "annotations").mkdir()
    records = []
    for index, caption in enumerate(CAPTIONS):
        scene = Scene(background=(236, 233, 222), horizon=0.7, shape="circle", colour="red", cx=0.5, cy=0.5,
                      radius=0.2, prop_colour=(30, 30, 30), prop_xy=(0.88, 0.6), caption_top=bool(index % 2))
        draw_meme(scene, caption, size=192).save(tmp_path / "images" / "img" / f"{index:05d}.png")
        records.append({"id": index, "img": f"img/{index:05d}.png", "label": index % 2, "text": caption})
    (tmp_path / "images" / "img" / "00009.png").write_text("not an image")
    records.append({"id": 9, "img": "img/00009.png", "label": 0, "text": "broken"})
    path = tmp_path / "annotations" / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


class Counting(OcrEngine):
    """The real engine, counting reads; raises after `fail_after` reads (an interrupted run)."""

    def __init__(self, fail_after=None):
        super().__init__()
        self.reads, self.fail_after = 0, fail_after

    def read(self, image):
        if self.fail_after is not None and self.reads >= self.fail_after:
            raise OcrError("interrupted")
        self.reads += 1
        return super().read(image)


def test_ocr_text_is_written_beside_the_given_text_and_a_run_resumes(memes, tmp_path):
    out = str(tmp_path / "test.ocr.jsonl")
    with pytest.raises(OcrError):
        ocr_annotations(str(memes), out, engine=Counting(fail_after=2), progress=False)
    assert not os.path.exists(out) and len(open(out + ".partial").readlines()) == 2  # two finished, kept
    with open(out + ".partial", "a") as f:
        f.write('{"id": 2, "img": "img/000')  # a line cut by a crash: dropped, then redone
    engine = Counting()
    summary = ocr_annotations(str(memes), out, engine=engine, progress=False)
    assert engine.reads == 2 and summary == {"records": 5, "read": 2, "resumed": 2, "failed": 1}
    assert not os.path.exists(out + ".partial")
    rows = [json.loads(line) for line in open(out)]
    assert [r["id"] for r in rows] == [0, 1, 2, 3, 9]  # input order
    assert [r["text"] for r in rows[:4]] == CAPTIONS  # the given text untouched
    assert sum(r["ocr_text"].split()[:2] == r["text"].split()[:2] for r in rows[:4]) >= 2  # captions are read
    assert rows[4]["ocr_text"] == "" and "not an image" in rows[4]["ocr_error"]
    again = Counting()
    assert ocr_annotations(str(memes), out, engine=again, progress=False)["resumed"] == 5 and again.reads == 0


def test_the_command_reads_a_folder_and_names_a_missing_engine(memes, tmp_path, capsys):
    out = tmp_path / "folder.jsonl"
    assert main(["--images", str(memes.parent.parent / "images" / "img"), "--out", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in open(out)]
    assert [r["id"] for r in rows] == ["00000", "00001", "00002", "00003", "00009"] and "text" not in rows[0]
    assert main(["--images", str(memes), "--out", str(tmp_path / "x.jsonl"), "--ocr-command", "/nonexistent/tess"]) == 2
    assert "OCR engine tesseract not found" in capsys.readouterr().err
