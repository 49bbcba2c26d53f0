"""Every extraction test (detectors/ included) runs torch on one thread."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """On the shared 2-core machine under load, 2 OpenMP threads are 5-10x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
