import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))

# The suite tests the *installed* fastconv. Subprocesses started from the repo
# root (python -m fastconv, python -c, torchrun -m fastconv) would otherwise put
# the cwd first on sys.path and import the source tree, which has no compiled
# _C. PYTHONSAFEPATH (Python >= 3.11) stops that for every child process.
os.environ["PYTHONSAFEPATH"] = "1"

from helpers import seed_from  # noqa: E402


@pytest.fixture
def gen(request) -> torch.Generator:
    """A torch.Generator seeded from the test's id: fresh random data per test,
    reproducible run to run."""
    g = torch.Generator()
    g.manual_seed(seed_from(request.node.nodeid))
    return g


@pytest.fixture
def nprng(request) -> np.random.Generator:
    return np.random.default_rng(seed_from(request.node.nodeid))


@pytest.fixture(autouse=True)
def _seed_and_restore(request):
    """Seed the global RNGs (layer init), keep float32 CUDA math exact (no TF32),
    and restore the thread count a test may change."""
    torch.manual_seed(seed_from(request.node.nodeid))
    threads = torch.get_num_threads()
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    try:
        import fastconv
        if hasattr(fastconv, "get_num_threads") and fastconv.get_num_threads() != threads:
            fastconv.set_num_threads(threads)
    except ImportError:
        pass
