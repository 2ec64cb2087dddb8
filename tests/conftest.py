"""Suite-wide test settings."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread per test: the suite's networks are tiny, and on a shared 2-core machine
    two OpenMP threads per process were up to 10x slower (busy-waiting barriers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
