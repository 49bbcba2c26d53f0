"""convert-hm on hostile zips: members that would leave the data directory, duplicates, decompression bombs."""
import os

import pytest

from mmf_pe.datasets.hateful_memes import convert
from tests.datasets.hateful_memes.helpers import PNG_HEADER, release_zip, write_release


@pytest.fixture
def release(tmp_path):
    root = str(tmp_path / "release")
    write_release(root)
    return root


@pytest.mark.parametrize("name, reason", [
    ("data/img/" + "../" * 7 + "escaped/x.png", "'..' component"),  # lands in work/ (beside the data dir)
    ("data/img/" + "..\\" * 7 + "escaped\\x.png", "'..' component"),
    ("/tmp/escaped/x.png", "absolute path"),
    ("C:/escaped/x.png", "drive letter"),
])
def test_members_leaving_the_destination_are_refused_by_name(name, reason, release, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    zip_path = release_zip(str(work / "hm.zip"), extra=[(name, PNG_HEADER + b"evil")], release_root=release)
    data_dir = work / "mmf" / "data"
    with pytest.raises(convert.ConversionError, match="refused") as error:
        convert.convert(zip_path, str(data_dir), bypass_checksum=True)
    assert repr(name) in str(error.value) and reason in str(error.value)
    assert not os.path.exists(tmp_path / "escaped") and not os.path.exists(work / "escaped")
    assert not os.path.exists(data_dir / "datasets" / "hateful_memes" / "defaults" / "annotations")


def test_symlink_entries_are_refused(release, tmp_path):
    zip_path = release_zip(str(tmp_path / "hm.zip"), symlinks=[("data/img/99999.png", "/etc/passwd")],
                           release_root=release)
    with pytest.raises(convert.ConversionError, match=r"member 'data/img/99999.png' is refused: a symbolic link"):
        convert.convert(zip_path, str(tmp_path / "data"), bypass_checksum=True)


def test_duplicate_member_names_are_refused_by_name(release, tmp_path):
    zip_path = release_zip(str(tmp_path / "hm.zip"), extra=[("data/img/10000.png", PNG_HEADER + b"second")],
                           release_root=release)
    with pytest.raises(convert.ConversionError, match=r"member 'data/img/10000.png' is refused: a duplicate name"):
        convert.convert(zip_path, str(tmp_path / "data"), bypass_checksum=True)
    assert not os.path.exists(tmp_path / "data" / "datasets" / "hateful_memes" / "defaults" / "images")


def test_members_over_the_size_or_ratio_cap_are_refused(release, tmp_path, monkeypatch):
    bomb = PNG_HEADER + bytes(4 << 20)  # 4 MiB of zeros: deflates about 1000:1
    zip_path = release_zip(str(tmp_path / "hm.zip"), extra=[("data/img/99999.png", bomb)], release_root=release)
    with pytest.raises(convert.ConversionError, match=r"'data/img/99999.png' is refused: expands \d[\d,]* times"):
        convert.convert(zip_path, str(tmp_path / "data"), bypass_checksum=True)
    monkeypatch.setattr(convert, "MAX_RATIO", 10_000)
    monkeypatch.setattr(convert, "MAX_IMAGE_BYTES", 1 << 20)  # the same member against the per-image size cap
    with pytest.raises(convert.ConversionError, match=r"99999.png' is refused: expands to 4,194,312 bytes, over the "
                                                      r"1,048,576-byte cap"):
        convert.convert(zip_path, str(tmp_path / "data"), bypass_checksum=True)
    assert not os.path.exists(tmp_path / "data" / "datasets" / "hateful_memes" / "defaults" / "images")


def test_password_less_zip_with_an_unknown_checksum_is_a_documented_path(release, tmp_path, monkeypatch, capsys):
    """Today's download: no password, a sha256 none of the published ones match. The refusal says what to do; with
    --bypass-checksum the content is checked instead (layout, every jsonl line, the images, counts vs published)."""
    monkeypatch.delenv(convert.CHECKSUMS_ENV, raising=False)
    zip_path = release_zip(str(tmp_path / "hm.zip"), release_root=release)
    with pytest.raises(convert.ConversionError, match="may differ from the published ones \\(and come without a "
                                                      "password\\).*--bypass-checksum.*checks the content instead"):
        convert.convert(zip_path, str(tmp_path / "data"))
    summary = convert.convert(zip_path, str(tmp_path / "data"), password="unneeded", bypass_checksum=True)
    assert summary["phase"] == 2 and summary["images_written"] == 14 and summary["sha256"] is None
    checked = summary["checked_instead_of_sha256"]
    assert checked["counts_differing_from_published"]["train"] == {"lines": 6, "published": 8500}
    assert "every line a JSON object with an integer id" in checked["jsonl"]
    out = capsys.readouterr().out
    assert "not password-protected; --password is not needed" in out
    assert "note: line counts differ from the published release: train 6 (published 8500)" in out


@pytest.mark.parametrize("field, value, problem", [
    ("id", "../../x", "id '../../x' (str) is not an integer"),
    ("text", None, "text None (NoneType) is not a string"),
    ("img", "../../../etc/passwd.png", "is not a relative image path"),
    ("label", "1", "label '1' is not one of the integers 0, 1"),
])
def test_bypassed_zips_have_every_jsonl_line_checked(field, value, problem, release, tmp_path):
    import json

    path = os.path.join(release, "data", "dev_seen.jsonl")
    lines = open(path).read().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), field: value})
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    zip_path = release_zip(str(tmp_path / "hm.zip"), release_root=release)
    with pytest.raises(convert.ConversionError, match=r"data/dev_seen.jsonl:2: ") as error:
        convert.convert(zip_path, str(tmp_path / "data"), bypass_checksum=True)
    assert problem in str(error.value)


def test_phase1_image_tarball_needs_tarfiles_data_filter(tmp_path, monkeypatch):
    import shutil
    import tarfile

    from tests.datasets.hateful_memes.helpers import PHASE_1

    root = str(tmp_path / "phase1")
    write_release(root, splits=PHASE_1)
    with tarfile.open(os.path.join(root, "data", "img.tar.gz"), "w:gz") as tar:
        tar.add(os.path.join(root, "data", "img"), arcname="img")
    shutil.rmtree(os.path.join(root, "data", "img"))
    monkeypatch.delattr(tarfile, "data_filter")  # as on Python < 3.10.12 / 3.11.4
    with pytest.raises(convert.ConversionError, match="lacks tarfile's 'data' extraction filter"):
        convert.convert(root, str(tmp_path / "data"))
