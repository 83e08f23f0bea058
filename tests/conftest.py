"""Shared fixtures: paths to the real test frames and a scheduler that forbids computing."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import dask
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

DATA = Path(__file__).parent / "data"


@pytest.fixture
def sprat() -> Path:
    """Folder of the real SPRAT frames (see tests/data/sprat/LICENSE-ASPIRED-BSD3)."""
    return DATA / "sprat"


class _CountingScheduler:
    """A dask scheduler that counts computes and refuses to run any beyond ``max_computes``."""

    def __init__(self, max_computes: int = 0):
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(f"too many dask computations: {self.total_computes}")
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0):
    """Fail if the block triggers more than ``max_computes`` dask computations."""
    scheduler = _CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


def grouped_median(values: np.ndarray) -> float:
    """Median of integer data interpolated within its central unit bin (grouped-data median)."""
    values = np.sort(np.asarray(values).ravel())
    v = values[(values.size - 1) // 2]
    below, at = np.count_nonzero(values < v), np.count_nonzero(values == v)
    return float(v - 0.5 + (values.size / 2 - below) / at)


def error_with_poisson(image, var_rest, f_n, sd, gain, half=3):
    """The calibrated error with its Poisson term on ``E = f_n S + s D``, written out plainly.

    ``S`` is the mean of the calibrated image over the 7x7 box around the pixel without the pixel
    itself; a pixel more than 5 sigma from ``S`` uses its own value.
    """
    finite = np.isfinite(image)
    values = np.where(finite, image, 0.0)
    window = (2 * half + 1, 2 * half + 1)
    total = sliding_window_view(np.pad(values, half), window).sum(axis=(2, 3)) - values
    count = sliding_window_view(np.pad(finite * 1.0, half), window).sum(axis=(2, 3)) - finite
    local = total / count
    expected = np.maximum(f_n * local + sd, 0)
    own = (image - local) ** 2 > 25 * (var_rest + expected / gain / f_n**2)
    expected = np.where(own, np.maximum(f_n * image + sd, 0), expected)
    return np.sqrt(var_rest + expected / gain / f_n**2)


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mount a tmpfs of the given size (a real, small disk that fills up) and unmount it after.

    Skips the test, saying why, where mounting is not permitted.
    """
    mounted = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3-compatible server (moto's) on 127.0.0.1 and a free port, for the module's tests."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, request):
    """A new empty bucket on the test server: its URL and the storage options that reach it."""
    import re

    import boto3

    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}
    name = re.sub(r"[^a-z0-9]+", "-", f"ccdflow-{request.node.name.lower()}")[:60].strip("-")
    boto3.client("s3", aws_access_key_id="testing", aws_secret_access_key="testing",
                 endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return f"s3://{name}", options
