"""Shared fixtures: small synthetic cubes and a scheduler that forbids computing."""

from __future__ import annotations

import os

import dask
import numpy as np
import pytest
import xarray as xr

import xglacier


def pytest_configure(config):
    # pytest-xdist runs one worker per core; torch's default pool of one thread per core in
    # each worker oversubscribes the machine, and an OpenMP thread that is not scheduled stalls
    # every small operation (training the small SA-LSTM-H: 0.09 s per batch with 1 thread,
    # 2.2-2.9 s with 2, on 2 busy cores)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small():
    """A lazy 64x64 synthetic cube over one year and its truth."""
    return xglacier.synthetic_cube(shape=(64, 64), start="2020-01-01", end="2021-01-01", seed=1)


@pytest.fixture(scope="session")
def small_loaded(small):
    """The same cube and truth held in memory (NumPy-backed)."""
    cube, truth = small
    return cube.compute(), truth.compute()


class ComputeForbidden(RuntimeError):
    pass


def _forbid(dsk, keys, **kwargs):
    raise ComputeForbidden("something was computed while building the graph")


@pytest.fixture
def no_compute():
    """Factory of a context in which any Dask compute raises :class:`ComputeForbidden`."""
    # dask.config.set takes effect when called, so hand out a factory, not the context
    return lambda: dask.config.set(scheduler=_forbid)


def assert_same(a: xr.DataArray | xr.Dataset, b: xr.DataArray | xr.Dataset) -> None:
    """Exact equality of values (NaN == NaN) and coordinates."""
    if isinstance(a, xr.Dataset):
        assert set(a.data_vars) == set(b.data_vars)
        for name in a.data_vars:
            assert_same(a[name], b[name])
        return
    a, b = a.compute(), b.compute()
    assert a.dims == b.dims
    np.testing.assert_array_equal(a.values, b.values)
    for name in a.coords:
        np.testing.assert_array_equal(a[name].values, b[name].values)
