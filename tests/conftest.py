"""Test session setup: generated benchmarks go to a temporary folder, never the user's cache."""

import os
import tempfile

import pytest

# Set before dive_d2 is imported anywhere, so every registration and loader sees it.
os.environ.setdefault("DIVE_D2_DATASETS", tempfile.mkdtemp(prefix="dive_d2_test_datasets_"))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
