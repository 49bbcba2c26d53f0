"""Session data for drift / adapt: the serve tests' tiny served folder (base + fc / pe / lora adapters, a foreign
adapter) and two labelled periods of memes; tests that change the folder work on their own copy."""
import os
import shutil

import pytest

from tests.experiments.helpers import make_period
from tests.serve.helpers import make_folder


@pytest.fixture(scope="session")
def periods(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("periods"))
    paths = make_folder(root)
    data = os.path.join(root, "data")
    os.makedirs(data)
    paths["old"] = make_period(data, "old", "old", 64, seed=1)
    paths["new"] = make_period(data, "new", "new", 64, seed=2)
    paths["new_eval"] = make_period(data, "new_eval", "new", 32, seed=3, start_ms=None)
    paths["data"] = data
    return paths


@pytest.fixture
def served_copy(periods, tmp_path):
    """A private copy of the served folder (publishing replaces an adapter in it)."""
    folder = str(tmp_path / "served")
    shutil.copytree(periods["served"], folder, symlinks=True)
    return folder
