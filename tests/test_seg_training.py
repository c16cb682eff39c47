"""Segmentation tiles (padding, filter, splits, statistics), fit_segmentation and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from xglacier.errors import DimensionError, InputError, ParameterError
from xglacier.models import CombinedBinary, UNet
from xglacier.nn.checkpoint import CheckpointError, load_model, read_metadata, save_model
from xglacier.segmentation.tiles import SegmentationTiles, segmentation_tiles
from xglacier.segmentation.train import fit_segmentation

THREE = ["background", "clean_ice", "debris_covered_ice"]
ATTRS = {"flag_values": [0, 1, 2], "flag_meanings": " ".join(THREE)}


def scene(ny=10, nx=13, channels=("green", "elevation"), seed=0, x0=500_000.0, y0=4_000_000.0,
          labels=None, res=30.0):
    """A (channel, y, x) feature cube with north-up coordinates and its label map."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(len(channels), ny, nx)).astype(np.float32)
    coords = {"y": y0 - res * (np.arange(ny) + 0.5), "x": x0 + res * (np.arange(nx) + 0.5)}
    f = xr.DataArray(data, dims=("channel", "y", "x"), coords={"channel": list(channels), **coords})
    if labels is None:
        labels = rng.integers(0, 3, (ny, nx))
    lab = xr.DataArray(np.asarray(labels, np.uint8), dims=("y", "x"), coords=coords, attrs=ATTRS)
    return f, lab


def stripes(ny=16, nx=16, seed=0, x0=0.0):
    """A learnable problem: the class is a threshold of the first channel (noise in the second)."""
    rng = np.random.default_rng(seed)
    a = rng.random((ny, nx), dtype=np.float32)
    labels = np.digitize(a, [0.5, 0.8]).astype(np.uint8)
    f, lab = scene(ny, nx, ("green", "noise"), seed=seed, x0=x0, labels=labels)
    f[0] = a * 100.0 + 50.0  # far from unit scale: the statistics must matter
    return f, lab


# -- tiles ---------------------------------------------------------------------------------------


def test_edges_are_padded_with_nan_and_ignore():
    f, lab = scene(10, 13)
    f[1, 2, 3] = np.nan
    tiles = segmentation_tiles(f, lab, size=4, min_glacier_fraction=0.0)
    assert isinstance(tiles, SegmentationTiles) and len(tiles) == 3 * 4 and tiles.n_scenes == 1
    assert sorted({(r, c) for _, r, c in tiles.origins}) == [(r, c) for r in (0, 4, 8) for c in (0, 4, 8, 12)]
    x, y = tiles.features, tiles.labels
    assert x.shape == (12, 2, 4, 4) and x.dtype == np.float32 and y.dtype == np.uint8
    # reassemble the padded 12 x 16 grid from the tiles
    grid_x = np.full((2, 12, 16), -1.0, np.float32)
    grid_y = np.zeros((12, 16), np.int64)
    for (_, r, c), xi, yi in zip(tiles.origins, x, y, strict=True):
        grid_x[:, r:r + 4, c:c + 4], grid_y[r:r + 4, c:c + 4] = xi, yi
    np.testing.assert_array_equal(grid_x[:, :10, :13], f.values)  # NaN inside stays NaN
    assert np.isnan(grid_x[:, 10:]).all() and np.isnan(grid_x[:, :, 13:]).all()
    np.testing.assert_array_equal(grid_y[:10, :13], lab.values)
    assert (grid_y[10:] == 255).all() and (grid_y[:, 13:] == 255).all()
    # coordinates continue regularly into the padding
    ys, xs = tiles.coords(int(np.flatnonzero((tiles.origins[:, 1:] == (8, 12)).all(1))[0]))
    np.testing.assert_allclose(xs, 500_000 + 30 * (np.arange(12, 16) + 0.5))
    np.testing.assert_allclose(ys, 4_000_000 - 30 * (np.arange(8, 12) + 0.5))
    # a stride smaller than the tile
    assert len(segmentation_tiles(f, lab, size=4, stride=3, min_glacier_fraction=0.0)) == 3 * 4


def test_glacier_fraction_filter():
    labels = np.zeros((8, 8), np.uint8)
    labels[0, :4] = 1  # tile (0, 0): 4 of 16 pixels glacier = 25 %
    labels[4, 4] = 2  # tile (4, 4): 1 of 16 = 6.25 %
    f, lab = scene(8, 8, labels=labels)
    lab[6:, :4] = 255  # tile (4, 0): half unlabelled, and no glacier
    tiles = segmentation_tiles(f, lab, size=4)  # default: the paper's 10 %
    assert tiles.origins[:, 1:].tolist() == [[0, 0]]
    assert tiles.glacier_fraction.tolist() == [0.25]
    low = segmentation_tiles(f, lab, size=4, min_glacier_fraction=0.05)
    assert low.origins[:, 1:].tolist() == [[0, 0], [4, 4]]
    assert segmentation_tiles(f, lab, size=4, min_glacier_fraction=0.0).fractions()[:, 0].tolist() == [
        0.75, 1.0, 1.0, 15 / 16]
    # the fraction counts labelled pixels only
    lab2 = lab.copy()
    lab2[1:4, :4] = 255  # tile (0, 0): 4 labelled pixels, all glacier
    assert segmentation_tiles(f, lab2, size=4, min_glacier_fraction=0.9).glacier_fraction.tolist() == [1.0]
    with pytest.raises(InputError, match="no 4x4 tile has at least 50% glacier"):
        segmentation_tiles(f, lab, size=4, min_glacier_fraction=0.5)


def test_relabel_and_binary_setups():
    f, lab = scene(4, 4, labels=[[0, 1, 2, 255]] * 4)
    tiles = segmentation_tiles(f, lab, size=4)
    assert tiles.classes == tuple(THREE)
    glacier = tiles.binary(["clean_ice", "debris_covered_ice"], name="glacier")
    assert glacier.classes == ("background", "glacier") and glacier.labels[0, 0].tolist() == [0, 1, 1, 255]
    assert tiles.binary("clean_ice").labels[0, 0].tolist() == [0, 1, 0, 255]
    assert tiles.binary("debris_covered_ice").labels[0, 0].tolist() == [0, 0, 1, 255]
    assert tiles.labels[0, 0].tolist() == [0, 1, 2, 255]  # the original is untouched
    with pytest.raises(ParameterError, match="positive='rock'"):
        tiles.binary("rock")
    with pytest.raises(ParameterError, match="background"):
        tiles.binary("background")


def test_bad_inputs_are_named():
    f, lab = scene()
    with pytest.raises(InputError, match=r"the x coordinates of features and labels differ \(first at "
                                         r"index 0"):
        segmentation_tiles(f, lab.assign_coords(x=lab.x + 30), size=4)
    with pytest.raises(InputError, match="features have 10 y values, labels 9"):
        segmentation_tiles(f, lab.isel(y=slice(1, None)), size=4)
    with pytest.raises(DimensionError, match="select one date"):
        segmentation_tiles(f.expand_dims(time=2), lab, size=4)
    with pytest.raises(InputError, match="no 'channel' coordinate"):
        segmentation_tiles(f.drop_vars("channel"), lab, size=4)
    with pytest.raises(InputError, match=r"values \[7\] that are neither class indices"):
        segmentation_tiles(f, lab.where(lab != 1, 7), size=4)
    with pytest.raises(InputError, match="dtype float"):
        segmentation_tiles(f, lab.astype("f4"), size=4)
    other, lab2 = scene(channels=("elevation", "green"))
    with pytest.raises(InputError, match=r"scene 1 has channels \['elevation', 'green'\]; scene 0 has "
                                         r"\['green', 'elevation'\]"):
        segmentation_tiles([(f, lab), (other, lab2)], size=4)
    with pytest.raises(InputError, match="labels is None"):
        segmentation_tiles(f, size=4)
    with pytest.raises(ParameterError, match="size=0"):
        segmentation_tiles(f, lab, size=0)
    with pytest.raises(ParameterError, match="min_glacier_fraction=2"):
        segmentation_tiles(f, lab, min_glacier_fraction=2)
    with pytest.raises(ParameterError, match="ignore=1 is a class index"):
        segmentation_tiles(f, lab, size=4, ignore=1)


def footprints(tiles):
    """Every (x, y) map coordinate covered by each tile."""
    out = []
    for i in range(len(tiles)):
        ys, xs = tiles.coords(i)
        out.append({(round(x), round(y)) for y in ys for x in xs})
    return out


def test_split_is_geographically_disjoint_across_dates():
    # two dates of one place and another place further east, overlapping tiles (stride < size)
    pairs = [scene(24, 24, seed=0), scene(24, 24, seed=1), scene(24, 24, seed=2, x0=524_000.0)]
    tiles = segmentation_tiles(pairs, size=4, stride=2, min_glacier_fraction=0.0)
    train, val, test = tiles.split(test=0.25, val=0.25, block=8, seed=3)
    assert len(train) and len(val) and len(test)
    pixels = [set().union(*footprints(part)) for part in (train, val, test)]
    assert not (pixels[0] & pixels[1]) and not (pixels[0] & pixels[2]) and not (pixels[1] & pixels[2])
    # tiles straddling a block boundary (origins at odd multiples of the stride) are dropped
    kept = np.concatenate([part.origins for part in (train, val, test)])
    assert len(kept) < len(tiles)
    assert set(kept[:, 1] % 8) <= {0, 2, 4} and set(kept[:, 2] % 8) <= {0, 2, 4}
    # the same place on both dates lands in the same split
    for part in (train, val, test):
        o = part.origins
        assert {tuple(t) for t in o[o[:, 0] == 0, 1:]} == {tuple(t) for t in o[o[:, 0] == 1, 1:]}
    # a gap keeps splits apart: widened footprints stay inside one block
    g_train, _, _ = tiles.split(test=0.25, val=0.25, block=8, gap=1, seed=3)
    assert len(g_train) < len(train)
    # reproducible, seed-dependent
    again = tiles.split(test=0.25, val=0.25, block=8, seed=3)
    assert all(np.array_equal(a.origins, b.origins) for a, b in zip(again, (train, val, test), strict=True))
    with pytest.raises(InputError, match="too few"):
        segmentation_tiles(scene(8, 8), size=4, min_glacier_fraction=0.0).split(block=8)
    with pytest.raises(ParameterError, match=r"test=0\.6, val=0\.5"):
        tiles.split(test=0.6, val=0.5)


def test_statistics_use_the_given_tiles_and_ignore_nan():
    f, lab = scene(8, 16, labels=np.ones((8, 16)))
    f[0, :, 8:] += 100.0  # the right half differs
    f[1, 0, 0] = np.nan
    tiles = segmentation_tiles(f, lab, size=8)
    left = tiles.subset(tiles.origins[:, 2] == 0)
    mean, std = left.statistics()
    values = f.values[:, :, :8].reshape(2, -1)
    np.testing.assert_allclose(mean, np.nanmean(values, axis=1), rtol=1e-6)
    np.testing.assert_allclose(std, np.nanstd(values, axis=1), rtol=1e-5)
    assert tiles.statistics()[0][0] > mean[0] + 40  # the whole set differs from the left half
    # padding (NaN) does not count
    padded = segmentation_tiles(f, lab, size=5)
    np.testing.assert_allclose(padded.statistics()[0], np.nanmean(f.values.reshape(2, -1), axis=1), rtol=1e-6)


# -- training --------------------------------------------------------------------------------------


def tiny_unet(channels=("green", "noise"), classes=THREE, seed=0, **kw):
    torch.manual_seed(seed)
    return UNet(list(channels), list(classes), depth=1, base_channels=8, dropout=0.1, **kw)


def test_fit_lowers_the_loss_and_sets_train_statistics():
    # two places 1200 m (five 8-pixel blocks) apart: every 8x8 tile is a block of its own
    tiles = segmentation_tiles([stripes(32, 32, seed=0), stripes(32, 32, seed=1, x0=1200.0)], size=8,
                               min_glacier_fraction=0.0)
    train, val, _ = tiles.split(test=0.25, val=0.25, block=8, seed=0)
    assert (len(train), len(val)) == (16, 8)
    model = tiny_unet()
    history = fit_segmentation(model, train, val, epochs=8, batch_size=2, lr=1e-2, l1=1e-5,
                               loss="dice+ce", patience=None, progress=False)
    assert history.columns.tolist() == ["epoch", "train_loss", "val_loss", "lr", "seconds", "best"]
    assert history.train_loss.iloc[-1] < 0.7 * history.train_loss.iloc[0]
    assert history.val_loss.min() < 0.7 * history.val_loss.iloc[0]
    assert history.best.sum() == 1 and history.attrs["best_epoch"] == history.epoch[history.val_loss.idxmin()]
    mean, std = train.statistics()
    assert model.config["mean"] == pytest.approx(mean.tolist()) and model.config["std"] == pytest.approx(
        std.tolist())
    assert model.patch_size == 8 and model.config["patch_size"] == 8
    assert not np.allclose(mean, tiles.statistics()[0])  # computed on train, not on all tiles


def test_same_seed_same_weights_and_l1_is_applied():
    tiles = segmentation_tiles(stripes(), size=8, min_glacier_fraction=0.0)
    kw = dict(epochs=2, batch_size=2, lr=1e-2, progress=False)
    a, b, c = tiny_unet(), tiny_unet(), tiny_unet()
    fit_segmentation(a, tiles, seed=4, **kw)
    fit_segmentation(b, tiles, seed=4, **kw)
    fit_segmentation(c, tiles, seed=5, **kw)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    # a strong penalty shrinks the weights that plain training leaves larger
    plain, sparse = tiny_unet(), tiny_unet()
    h0 = fit_segmentation(plain, tiles, l1=0.0, **kw)
    h1 = fit_segmentation(sparse, tiles, l1=1e-2, **kw)
    assert h0.attrs["l1_penalty"] == 0.0 and h1.attrs["l1_penalty"] > 0
    weight_sum = [sum(p.abs().sum().item() for p in m.parameters() if p.ndim > 1) for m in (plain, sparse)]
    assert weight_sum[1] < weight_sum[0]


def test_fit_refuses_what_does_not_fit():
    tiles = segmentation_tiles(stripes(), size=8, min_glacier_fraction=0.0)
    with pytest.raises(InputError, match=r"train tiles have channels \['green', 'noise'\]; the model expects "
                                         r"\['noise', 'green'\]"):
        fit_segmentation(tiny_unet(channels=("noise", "green")), tiles, progress=False)
    with pytest.raises(InputError, match=r"classes \['background', 'clean_ice', 'debris_covered_ice'\]; "
                                         r"the model predicts \['background', 'glacier'\]"):
        fit_segmentation(tiny_unet(classes=("background", "glacier")), tiles, progress=False)
    glacier = tiles.binary(["clean_ice", "debris_covered_ice"], name="glacier")
    fit_segmentation(tiny_unet(classes=("background", "glacier"), binary_head=True), glacier, epochs=1,
                     progress=False)
    both = CombinedBinary(tiny_unet(classes=("background", "clean_ice")),
                          tiny_unet(classes=("background", "debris_covered_ice")))
    with pytest.raises(ParameterError, match="trained part by part"):
        fit_segmentation(both, tiles, progress=False)
    with pytest.raises(InputError, match="expected SegmentationTiles"):
        fit_segmentation(tiny_unet(), tiles.features, progress=False)
    with pytest.raises(ParameterError, match="fit_segmentation: l1=-1"):
        fit_segmentation(tiny_unet(), tiles, l1=-1, progress=False)
    with pytest.raises(ParameterError, match="loss='mse'"):
        fit_segmentation(tiny_unet(), tiles, loss="mse", progress=False)


# -- checkpoints -------------------------------------------------------------------------------------


def test_checkpoint_keeps_channels_classes_statistics_and_predictions(tmp_path):
    f, lab = stripes()
    tiles = segmentation_tiles(f, lab, size=8, min_glacier_fraction=0.0)
    model = tiny_unet()
    fit_segmentation(model, tiles, epochs=1, batch_size=4, progress=False)
    path = save_model(model, tmp_path / "unet", variable="features")
    meta = read_metadata(path)
    assert meta["class"] == "UNet" and meta["channels"] == ["green", "noise"] and meta["classes"] == THREE
    assert meta["config"]["mean"] == model.config["mean"] and meta["patch_size"] == 8
    loaded = load_model(path, expect=f)
    assert loaded.channels == model.channels and loaded.classes == model.classes
    assert torch.equal(loaded.mean, model.mean) and torch.equal(loaded.std, model.std)
    x = torch.from_numpy(f.values[None])
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded.predict_proba(x), model.predict_proba(x))
    assert isinstance(load_model(path, expect=tiles), UNet)
    assert isinstance(load_model(path, expect={"channels": ["green", "noise"], "classes": THREE}), UNet)


def test_checkpoint_refuses_other_channels_or_order(tmp_path):
    f, _ = stripes()
    path = save_model(tiny_unet(), tmp_path / "unet")
    swapped = f.isel(channel=[1, 0])
    with pytest.raises(CheckpointError, match=r"channels: checkpoint was trained on \['green', 'noise'\], "
                                              r"data has \['noise', 'green'\] \(same names, other order\)"):
        load_model(path, expect=swapped)
    with pytest.raises(CheckpointError, match=r"data has \['green'\]"):
        load_model(path, expect=f.isel(channel=[0]))
    with pytest.raises(CheckpointError, match=r"classes: checkpoint was trained on"):
        load_model(path, expect={"classes": ["background", "glacier"]})
