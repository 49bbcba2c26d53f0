"""Session data for the frozen_vl tests: generated PNG memes + a tiny random model of every encoder class."""
import pytest


@pytest.fixture(scope="session")
def vl_hmd(tmp_path_factory):
    from mmf_pe.models.frozen_vl.synthetic import make_tiny_vl_hmd

    return make_tiny_vl_hmd(str(tmp_path_factory.mktemp("vl_hmd")))
