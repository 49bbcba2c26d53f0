"""`mmf_pe.utils.download`: a server's odd headers and a Python without tarfile's `data` filter."""
import hashlib
import io
import os
import re
import tarfile

import pytest
from packaging.specifiers import SpecifierSet

from mmf_pe import REPO_ROOT
from mmf_pe.utils import download
from tests.zoo_server import ZooServer


@pytest.mark.parametrize("header", ["abc", "12, 12", "1e3", ""])
def test_non_numeric_content_length_downloads_and_verifies(header, tmp_path):
    data = os.urandom(50_000)
    server = ZooServer({"/file.bin": data}).start()
    server.content_length["/file.bin"] = header
    try:
        dest = download.fetch(server.url + "/file.bin", str(tmp_path / "file.bin"), hashlib.sha256(data).hexdigest())
    finally:
        server.stop()
    assert open(dest, "rb").read() == data
    assert not os.path.exists(dest + ".part")


def _tarball(path):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("model.pth")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    return path


def test_extraction_without_tarfiles_data_filter_is_refused_clearly(tmp_path, monkeypatch):
    archive = _tarball(str(tmp_path / "a.tar.gz"))
    monkeypatch.delattr(tarfile, "data_filter")  # as on Python < 3.10.12 / 3.11.4
    with pytest.raises(download.DownloadError, match=r"lacks tarfile's 'data' extraction filter.*>= 3\.11\.4"):
        download.extract(archive, str(tmp_path / "out"))
    assert not os.path.exists(str(tmp_path / "out" / "model.pth"))


def test_setup_requires_a_python_whose_tarfile_has_the_data_filter():
    with open(os.path.join(REPO_ROOT, "setup.py")) as f:
        line = next(line for line in f if "python_requires" in line)
    allowed = SpecifierSet(re.search(r"python_requires=\"([^\"]+)\"", line).group(1))
    for without_filter in ("3.10.0", "3.10.11", "3.11.0", "3.11.3"):
        assert without_filter not in allowed, without_filter
    for with_filter in ("3.10.12", "3.11.4", "3.11.7", "3.12.0"):
        assert with_filter in allowed, with_filter
