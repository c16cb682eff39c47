"""NetCDF writes from several threads of one process (a Dask worker with threads > 1)."""

from __future__ import annotations

import threading

import numpy as np
import xarray as xr

import xglacier


def test_threads_writing_netcdf_at_once_do_not_crash_and_write_the_right_values(tmp_path):
    # unserialised, this crashed the HDF5 library (segfault) in 3 runs of 3
    rng = np.random.default_rng(0)
    data = {k: rng.random((4, 64, 64)).astype("f4") for k in range(4)}
    failures: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(12):
                ds = xr.Dataset({"a": (("time", "y", "x"), data[k] + i)},
                                coords={"y": 100.0 - np.arange(64), "x": np.arange(64.0)})
                if i % 2:  # Dask-backed half the time: chunks written by the threaded scheduler
                    ds = ds.chunk({"time": 1})
                xglacier.to_netcdf(ds, tmp_path / f"t{k}_{i}.nc")
        except BaseException as err:  # re-raised in the main thread below
            failures.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    # read back once every writer is done: reading while another thread writes is not
    # serialised by to_netcdf (xarray closes files outside its own lock)
    assert len(list(tmp_path.glob("*.nc"))) == 48
    for k in range(4):
        for i in range(12):
            with xr.open_dataset(tmp_path / f"t{k}_{i}.nc") as back:
                np.testing.assert_array_equal(back["a"].values, data[k] + i)
