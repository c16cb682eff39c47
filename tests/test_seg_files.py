"""Files written by segmentation and nn (checkpoints, vector files): atomic, with the
permissions of the umask, and nothing left behind by a failed write."""

from __future__ import annotations

import os

import geopandas as gpd
import numpy as np
import pytest
import xarray as xr

import xglacier.nn.checkpoint as checkpoint
from xglacier.segmentation.models import UNet
from xglacier.segmentation.vectors import polygonize, write_vector


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def small_unet() -> UNet:
    return UNet(["green", "ndsi"], ["background", "glacier"], depth=1, base_channels=2)


def test_saved_checkpoint_files_get_the_umask_permissions(tmp_path, umask_022):
    json_path = checkpoint.save_model(small_unet(), tmp_path / "model")
    for path in (json_path, json_path.with_suffix(".safetensors")):
        assert path.stat().st_mode & 0o777 == 0o644, path.name  # not mkstemp's 0o600
    os.umask(0o077)
    private = checkpoint.save_model(small_unet(), tmp_path / "private")
    assert private.with_suffix(".safetensors").stat().st_mode & 0o777 == 0o600


def test_failed_weights_write_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    def unreadable(path):
        assert path.is_file() and path.parent == tmp_path  # the weights are written: now it fails
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(checkpoint, "file_sha256", unreadable)
    with pytest.raises(OSError, match="Input/output error"):
        checkpoint.save_model(small_unet(), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []  # no weights, no JSON, no temporary


@pytest.fixture
def polygons() -> gpd.GeoDataFrame:
    lab = np.zeros((6, 8), np.uint8)
    lab[1:4, 2:6] = 1
    da = xr.DataArray(lab, dims=("y", "x"), coords={"y": 5200055.0 - 10 * np.arange(6),
                                                     "x": 500005.0 + 10 * np.arange(8)})
    return polygonize(da.rio.write_crs("EPSG:32632"), classes={"glacier": 1})


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_written_file_gets_the_umask_permissions(polygons, tmp_path, umask_022, suffix):
    path = write_vector(polygons, tmp_path / f"outlines{suffix}")
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_failed_write_leaves_no_file_and_no_temporary(polygons, tmp_path, suffix):
    # the driver creates the file, then fails on a column type it cannot store
    bad = polygons.assign(phase=np.full(len(polygons), 1 + 2j))
    with pytest.raises(NotImplementedError, match="complex128"):
        write_vector(bad, tmp_path / f"outlines{suffix}")
    assert list(tmp_path.iterdir()) == []
    # an existing file is left as it was
    old = tmp_path / f"old{suffix}"
    old.write_text("previous outlines")
    with pytest.raises(NotImplementedError):
        write_vector(bad, old)
    assert old.read_text() == "previous outlines"
    assert [p.name for p in tmp_path.iterdir()] == [old.name]

