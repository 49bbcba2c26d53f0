"""Session data for the clip_pe tests: generated PNG memes + a tiny random CLIP."""
import pytest


@pytest.fixture(scope="session")
def clip_hmd(tmp_path_factory):
    from mmf_pe.testing.tiny_clip import make_tiny_clip_hmd

    return make_tiny_clip_hmd(str(tmp_path_factory.mktemp("clip_hmd")))
