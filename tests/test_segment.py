"""Lazy tiled segmentation: chunk invariance, exactness against direct model runs, errors."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn

import xglacier
from xglacier.errors import DimensionError, InputError, MissingBandError, ParameterError
from xglacier.segmentation.classes import NODATA
from xglacier.segmentation.models import SegmentationModel
from xglacier.segmentation.segment import segment

from .conftest import ComputeForbidden

CHANNELS = ["green", "swir16", "ndsi"]
CLASSES = ["background", "clean_ice", "debris_covered_ice"]


class ConvNet(SegmentationModel):
    """Two 3x3 convolutions with zero padding: the output depends on the position in the window."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv1 = nn.Conv2d(len(self.channels), 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, len(self.classes), 3, padding=1)
        self.drop = nn.Dropout2d(0.5)

    def forward(self, x):
        return self.conv2(self.drop(torch.tanh(self.conv1(x))))


class SharedCalls(list):
    """A call log that copies of the model share: ``segment`` runs a copy of the model."""

    def __deepcopy__(self, memo):
        return self


class Pointwise(SegmentationModel):
    """A 1x1 convolution: position independent, so tiling must not show at all."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.conv = nn.Conv2d(len(self.channels), len(self.classes), 1)
        self.calls: list[tuple[int, ...]] = SharedCalls()

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        return self.conv(x)


def make(cls, seed=0):
    torch.manual_seed(seed)
    return cls(channels=CHANNELS, classes=CLASSES, mean=[0.5, 0.5, 0.0], std=[0.3, 0.3, 0.5]).eval()


def features(ny, nx, seed=0, nan=0.02):
    rng = np.random.default_rng(seed)
    data = rng.random((3, ny, nx), dtype=np.float32)
    data[rng.random(data.shape) < nan] = np.nan
    f = xr.DataArray(data, dims=("channel", "y", "x"), name="features",
                     coords={"channel": CHANNELS, "y": 3.5e6 - 30.0 * np.arange(ny),
                             "x": 4.0e5 + 30.0 * np.arange(nx)})
    return f.rio.write_crs("EPSG:32643")


def nodata(p, x):
    """Probabilities ``p`` with NaN wherever a channel of the input ``x`` is NaN (no prediction there)."""
    p = p.copy()
    p[:, np.isnan(x).any(axis=0)] = np.nan
    return p


def labels_of(p):
    """Argmax of probabilities, NODATA where they are NaN."""
    return np.where(np.isnan(p).any(axis=0), NODATA, np.nan_to_num(p).argmax(axis=0))


def direct(model, x):
    """``model.predict_proba`` on a (C, y, x) NumPy array, NaN where the input has a NaN channel."""
    with torch.inference_mode():
        p = model.predict_proba(torch.from_numpy(np.ascontiguousarray(x[None]))).numpy()[0]
    return nodata(p, x)


def reference(model, x, tile, overlap):
    """Independent eager implementation: windows every tile - overlap, NaN padding, cosine ramps."""
    n_classes = len(model.classes)

    def axis(n):
        if n <= tile:
            return [0], n, 0
        return list(range(0, n, tile - overlap)), tile, overlap

    def ramp(size, o):
        w = np.ones(size)
        if o:
            r = (1 - np.cos(np.pi * (np.arange(o) + 0.5) / o)) / 2
            w[:o], w[size - o:] = r, r[::-1]
        return w

    (ys, ty, oy), (xs, tx, ox) = axis(x.shape[1]), axis(x.shape[2])
    py, px = ys[-1] + ty, xs[-1] + tx
    padded = np.full((x.shape[0], py, px), np.nan, np.float32)
    padded[:, :x.shape[1], :x.shape[2]] = x
    w = np.outer(ramp(ty, oy), ramp(tx, ox))
    num, den = np.zeros((n_classes, py, px)), np.zeros((py, px))
    for y0 in ys:
        for x0 in xs:
            p = direct(model, padded[:, y0:y0 + ty, x0:x0 + tx])
            num[:, y0:y0 + ty, x0:x0 + tx] += p * w
            den[y0:y0 + ty, x0:x0 + tx] += w
    return nodata((num / den)[:, :x.shape[1], :x.shape[2]].astype(np.float32), x)


@pytest.fixture(scope="module")
def scene():
    return features(150, 170)


@pytest.fixture(scope="module")
def convnet():
    return make(ConvNet)


@pytest.mark.parametrize("chunks", [{"y": 33, "x": 7}, {"y": 150, "x": 170}, {"y": 64, "x": 100},
                                    {"channel": 1, "y": 20, "x": 170}])
def test_chunk_invariant(scene, convnet, chunks):
    """Bit-identical whatever the input chunks (the tiling depends on the grid only)."""
    kw = dict(tile=48, overlap=12, batch_size=3)
    eager = segment(scene, convnet, **kw)
    lazy = segment(scene.chunk(chunks), convnet, **kw)
    assert isinstance(lazy.probability.data, dsa.Array)
    assert isinstance(eager.probability.data, np.ndarray)
    np.testing.assert_array_equal(lazy.probability.values, eager.probability.values)
    np.testing.assert_array_equal(lazy.label.values, eager.label.values)


def test_equals_independent_eager_tiling(scene, convnet):
    """Same windows, padding and blend as a plain NumPy loop over windows, one model call each.

    Tolerance 1e-6: the library calls the model on batches of windows, the reference on one
    window at a time, and the float32 convolutions may round differently per batch shape.
    """
    out = segment(scene.chunk({"y": 50, "x": 60}), convnet, tile=48, overlap=12, batch_size=4)
    ref = reference(convnet, scene.values, 48, 12)
    assert out.probability.shape == ref.shape
    np.testing.assert_allclose(out.probability.values, ref, rtol=0, atol=1e-6)
    missing = np.isnan(scene.values).any(axis=0)
    assert missing.sum() > 100 and (np.isnan(out.probability.values) == missing).all()
    np.testing.assert_allclose(out.probability.values.sum(0)[~missing], 1, atol=1e-5)
    np.testing.assert_array_equal(out.label.values, labels_of(out.probability.values))
    # the zero-padded convolutions make window edges visible: without blending they would differ
    assert np.nanmax(np.abs(direct(convnet, np.nan_to_num(scene.values)) - ref)) > 1e-3


@pytest.mark.parametrize("shape", [(40, 56), (64, 64), (1, 9)])
def test_one_tile_equals_full_scene_run(convnet, shape):
    f = features(*shape, seed=3)
    out = segment(f.chunk({"y": 13, "x": 17}), convnet, tile=64, overlap=16)
    np.testing.assert_array_equal(out.probability.values, direct(convnet, f.values))
    np.testing.assert_array_equal(out.label.values, labels_of(direct(convnet, f.values)))


def test_one_axis_fits(convnet):
    """y fits in one window (no padding along y), x is tiled: matches the reference loop."""
    f = features(30, 130, seed=4)
    out = segment(f.chunk({"x": 41}), convnet, tile=40, overlap=10, batch_size=2)
    np.testing.assert_allclose(out.probability.values, reference(convnet, f.values, 40, 10), atol=1e-6)


def test_pointwise_model_is_seamless(scene):
    """A 1x1 convolution gives the pointwise result everywhere, overlaps and edges included."""
    model = make(Pointwise)
    out = segment(scene.chunk({"y": 70, "x": 45}), model, tile=32, overlap=16, batch_size=5)
    np.testing.assert_allclose(out.probability.values, direct(model, scene.values), rtol=0, atol=1e-6)


def test_windows_per_chunk_only_changes_rounding(scene, convnet):
    a = segment(scene, convnet, tile=48, overlap=12, windows_per_chunk=1)
    b = segment(scene, convnet, tile=48, overlap=12, windows_per_chunk=3)
    np.testing.assert_allclose(a.probability.values, b.probability.values, rtol=0, atol=1e-6)


def test_lazy_builds_without_computing(scene, no_compute):
    model = make(Pointwise)
    lazy_in = scene.chunk({"y": 50})
    with no_compute():
        out = segment(lazy_in, model, tile=48, overlap=8, batch_size=4)
        assert isinstance(out.probability.data, dsa.Array) and isinstance(out.label.data, dsa.Array)
        with pytest.raises(ComputeForbidden):
            out.label.values  # noqa: B018 - the guard really is active
    assert model.calls == []
    # a copy of the model enters the graph once, as one key the tasks depend on
    graph = dict(out.probability.data.__dask_graph__())
    held = [v.value for v in graph.values() if isinstance(getattr(v, "value", None), Pointwise)]
    assert len(held) == 1 and held[0] is not model


def test_batches_and_windows_counted():
    """Every window is predicted exactly once, ``batch_size`` windows per call."""
    model = make(Pointwise)
    f = features(100, 100)
    # stride 24: windows start at 0, 24, 48, 72, 96 -> 5 x 5 windows of 32 x 32
    segment(f.chunk({"y": 31}), model, tile=32, overlap=8, batch_size=4).label.compute()
    assert sum(c[0] for c in model.calls) == 25
    assert all(c[0] <= 4 and c[2:] == (32, 32) for c in model.calls)
    # windows_per_chunk = 2: 3 x 3 blocks holding 4, 2, 2, 1... windows; one call per block
    assert len(model.calls) == 9


def test_eval_mode_and_deterministic(scene):
    """The model runs in eval mode, and the user's model keeps its own mode."""
    model = make(ConvNet).train()
    a = segment(scene.chunk({"x": 60}), model, tile=48, overlap=12).probability.values
    assert model.training
    b = segment(scene, model.eval(), tile=48, overlap=12).probability.values
    np.testing.assert_array_equal(a, b)


def test_lazy_result_is_the_model_as_it_was_at_the_call(scene):
    """Changing the model between the call and the compute does not change a lazy result."""
    model = make(ConvNet)
    expected = segment(scene, model, tile=48, overlap=12).probability.values
    lazy = segment(scene.chunk({"x": 60}), model, tile=48, overlap=12)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    np.testing.assert_array_equal(lazy.probability.values, expected)
    assert not np.array_equal(segment(scene, model, tile=48, overlap=12).probability.values, expected)


def test_output_grid_crs_and_attributes(scene, convnet):
    out = segment(scene.chunk({"y": 64}), convnet, tile=64, overlap=16)
    assert out.probability.dims == ("class", "y", "x") and out.probability.dtype == np.float32
    assert out.label.dims == ("y", "x") and out.label.dtype == np.uint8
    assert out["class"].values.tolist() == CLASSES
    xr.testing.assert_identical(out.x, scene.x)
    xr.testing.assert_identical(out.y, scene.y)
    assert out.rio.crs == scene.rio.crs and out.label.rio.crs.to_epsg() == 32643
    assert out.label.attrs["flag_values"].tolist() == [0, 1, 2]
    assert out.label.attrs["flag_meanings"] == "background clean_ice debris_covered_ice"
    assert "segment" in out.attrs["history"] and out.attrs["model"] == "ConvNet"
    np.testing.assert_array_equal(out.label.values, labels_of(out.probability.values))
    assert out.label.attrs["_FillValue"] == NODATA and out.label.attrs["_FillValue"].dtype == np.uint8


def test_channel_errors(scene, convnet):
    with pytest.raises(InputError, match=r"lack channel\(s\) \['ndsi'\].*"
                                         r"expects \['green', 'swir16', 'ndsi'\]"):
        segment(scene.sel(channel=["green", "swir16"]), convnet)
    with pytest.raises(InputError, match=r"\['ndsi', 'green', 'swir16'\] are in a different order "
                                         r"than the model's \['green', 'swir16', 'ndsi'\]"):
        segment(scene.sel(channel=["ndsi", "green", "swir16"]), convnet)
    extra = xr.concat([scene, scene.sel(channel=["ndsi"]).assign_coords(channel=["dem"])], "channel")
    with pytest.raises(InputError, match=r"expects exactly"):
        segment(extra, convnet)
    with pytest.raises(DimensionError, match="dims"):
        segment(scene.isel(channel=0), convnet)
    with pytest.raises(InputError, match="'channel' coordinate"):
        segment(scene.drop_vars("channel"), convnet)


@pytest.mark.parametrize("kw, match", [({"tile": 0}, "tile=0"), ({"overlap": -1}, "overlap=-1"),
                                       ({"tile": 32, "overlap": 17}, "overlap <= tile // 2"),
                                       ({"batch_size": 0}, "batch_size=0"),
                                       ({"windows_per_chunk": 0}, "windows_per_chunk=0")])
def test_parameter_errors(scene, convnet, kw, match):
    with pytest.raises(ParameterError, match=match):
        segment(scene, convnet, **kw)


def test_model_errors(scene):
    with pytest.raises(ParameterError, match="no 'channels'"):
        segment(scene, nn.Conv2d(3, 3, 1))

    class Wrong(Pointwise):
        def predict_proba(self, x):
            return super().predict_proba(x)[:, :2]

    with pytest.raises(InputError, match="predict_proba returned shape"):
        segment(scene, make(Wrong), tile=64, overlap=0)


def test_threaded_scheduler_shared_model(scene, convnet):
    with dask.config.set(scheduler="threads", num_workers=2):
        a = segment(scene.chunk({"y": 40, "x": 40}), convnet, tile=32, overlap=8).probability.values
    np.testing.assert_array_equal(a, segment(scene, convnet, tile=32, overlap=8).probability.values)


def test_dataset_input_builds_the_model_channels():
    cube, truth = xglacier.synthetic_cube(shape=(48, 40), end="2020-03-01", max_shift=0)
    ds = cube.drop_vars("qa_pixel")
    torch.manual_seed(1)
    model = ConvNet(channels=["green", "swir16", "ndsi", "elevation", "slope"], classes=CLASSES).eval()
    out = segment(ds, model, tile=32, overlap=8, dem=truth.dem, time=0)
    feats = xglacier.features(ds, bands=["green", "swir16"], indices=["ndsi"], dem=truth.dem, time=0)
    assert feats["channel"].values.tolist() == list(model.channels)
    want = segment(feats, model, tile=32, overlap=8)
    np.testing.assert_array_equal(out.probability.values, want.probability.values)
    np.testing.assert_array_equal(out.label.values, want.label.values)
    with pytest.raises(InputError, match=r"terrain channel\(s\) \['elevation', 'slope'\]; pass dem="):
        segment(ds, model, time=0)
    with pytest.raises(MissingBandError, match=r"need the band\(s\) \['swir16'\]"):
        segment(ds.drop_vars("swir16"), model, dem=truth.dem, time=0)
    # NDSI composites (prepare's output) given to a model of reflectance bands
    comps = xr.Dataset({"ndsi": xglacier.ndsi(ds), "nir08": ds.nir08})
    want_msg = r"need the band\(s\) \['green', 'swir16'\].*present: \['ndsi', 'nir08'\]"
    with pytest.raises(MissingBandError, match=want_msg):
        segment(comps, model, dem=truth.dem, time=0)
    with pytest.raises(ParameterError, match="scene Dataset only"):
        segment(feats, model, dem=truth.dem)


@pytest.mark.parametrize("flip", ["y", "x", "both"])
@pytest.mark.parametrize("chunked", [False, True])
def test_a_scene_stored_either_way_gets_the_same_labels(scene, convnet, flip, chunked):
    """y ascending or x descending: the model (not flip-invariant) sees the scene north-up and
    east-right, as it was trained, and the result comes back on the input's grid."""
    dims = ["y", "x"] if flip == "both" else [flip]
    other = scene.isel({d: slice(None, None, -1) for d in dims})
    if chunked:
        other = other.chunk({"y": 23, "x": 31})
    want = segment(scene, convnet, tile=32, overlap=8)
    got = segment(other, convnet, tile=32, overlap=8).compute()
    for d in ("y", "x"):
        np.testing.assert_array_equal(got[d].values, other[d].values)
    back = got.isel({d: slice(None, None, -1) for d in dims})
    np.testing.assert_array_equal(back.probability.values, want.probability.values)
    np.testing.assert_array_equal(back.label.values, want.label.values)
    assert got.rio.crs == want.rio.crs
