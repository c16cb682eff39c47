"""fine_tune: a model trained on wrong labels learns the corrected polygons of one scene.

The scene is built here: bright pixels (NDSI high) in rows 8-40, elevation falling from
west to east. The true glacier is the bright part in the west half (columns < 24); the
bright east half is seasonal snow. The "parent" model is trained on wrong labels that call
every bright pixel glacier; the corrected polygon is the true glacier only.
"""

from __future__ import annotations

import hashlib
import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
from affine import Affine
from shapely import box

import xglacier
from xglacier.errors import CheckpointNotFoundError, InputError, ParameterError
from xglacier.models import UNet
from xglacier.segmentation import finetune_data as ftd
from xglacier.segmentation.finetune import fine_tune
from xglacier.segmentation.tiles import segmentation_tiles
from xglacier.segmentation.train import fit_segmentation

X0, Y0, PX, N = 500_000.0, 5_800_000.0, 30.0, 48
CRS = "EPSG:32611"
TRUE_ROWS, TRUE_COLS = (8, 40), 24  # bright rows (inclusive); glacier west of this column


def make_scene(y_ascending: bool = False) -> tuple[xr.DataArray, np.ndarray]:
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:N, 0:N]
    bright = (rows >= TRUE_ROWS[0]) & (rows <= TRUE_ROWS[1])
    ndsi = np.where(bright, 0.85, -0.1) + 0.05 * rng.standard_normal((N, N))
    elevation = 3000.0 - 1000.0 * cols / (N - 1)
    data = np.stack([ndsi, elevation]).astype("f4")
    f = xr.DataArray(data, dims=("channel", "y", "x"), name="features", coords={
        "channel": ["ndsi", "elevation"], "y": Y0 - PX / 2 - PX * np.arange(N),
        "x": X0 + PX / 2 + PX * np.arange(N), "time": np.datetime64("2020-08-16")}).rio.write_crs(CRS)
    truth = bright & (cols < TRUE_COLS)
    if y_ascending:
        f, truth = f.isel(y=slice(None, None, -1)), truth[::-1]
    return f, truth


def glacier_polygon() -> gpd.GeoDataFrame:
    geom = box(X0, Y0 - PX * (TRUE_ROWS[1] + 1), X0 + PX * TRUE_COLS, Y0 - PX * TRUE_ROWS[0])
    return gpd.GeoDataFrame({"class_name": ["glacier"], "status": ["edited"]}, geometry=[geom], crs=CRS)


def iou(truth: np.ndarray, pred: np.ndarray) -> float:
    return float((truth & pred).sum() / (truth | pred).sum())


@pytest.fixture(scope="module")
def scene() -> tuple[xr.DataArray, np.ndarray]:
    return make_scene()


@pytest.fixture(scope="module")
def parent(scene) -> UNet:
    """A model that learned the wrong labels: every bright pixel is glacier."""
    f, _ = scene
    wrong = xr.DataArray((f.sel(channel="ndsi").values > 0.4).astype("u1"), dims=("y", "x"),
                         coords={"y": f.y, "x": f.x})
    tiles = segmentation_tiles(f, wrong, size=16, classes=["background", "glacier"])
    torch.manual_seed(0)
    model = UNet(["ndsi", "elevation"], ["background", "glacier"], depth=1, base_channels=4, patch_size=16)
    fit_segmentation(model, tiles, epochs=15, lr=1e-2, batch_size=4, seed=0, progress=False)
    return model.eval()


def tune(model, features, polygons, **kw):
    opts = {"epochs": 12, "lr": 3e-3, "batch_size": 4, "holdout_side": "south", "patience": None, "stride": 8}
    return fine_tune(model, features, polygons, **{**opts, **kw})


def south_strip_iou(model, f: xr.DataArray, truth: np.ndarray) -> float:
    """Glacier IoU on the southern quarter (the held-out strip), by xglacier.segment."""
    label = xglacier.segment(f, model, tile=N, overlap=0).label.values
    k = N - round(0.25 * N)
    return iou(truth[k:], label[k:] == 1)


def test_corrections_move_the_model_on_the_held_out_strip(scene, parent):
    f, truth = scene
    before = south_strip_iou(parent, f, truth)
    # refit=False: the returned model never saw the strip, so the strip scores it honestly
    tuned, history = tune(parent, f, glacier_polygon(), refit=False)
    after = south_strip_iou(tuned, f, truth)
    assert before < 0.6  # the parent also calls the snow glacier
    assert after > before + 0.3
    record = history.attrs["fine_tuning"]
    assert record["holdout"]["side"] == "south"
    scores = record["scores"]
    assert scores["holdout_iou_after"]["glacier"] > scores["holdout_iou_before"]["glacier"] + 0.3
    assert history["holdout_iou"].notna().all() and len(history) == 12


def test_statistics_kept_and_parent_unchanged(scene, parent):
    f, _ = scene
    stats = parent.training_statistics()
    weights = {k: v.clone() for k, v in parent.state_dict().items()}
    tuned, _ = tune(parent, f, glacier_polygon(), epochs=2)
    assert tuned.training_statistics() == stats
    assert torch.equal(tuned.mean, parent.mean) and torch.equal(tuned.std, parent.std)
    assert all(torch.equal(v, parent.state_dict()[k]) for k, v in weights.items())
    assert not all(torch.equal(v, tuned.state_dict()[k]) for k, v in weights.items())


def test_refit_learns_the_whole_scene_for_the_chosen_epochs(scene, parent):
    f, _ = scene
    kept, h1 = tune(parent, f, glacier_polygon(), refit=False, epochs=4)
    refit, h2 = tune(parent, f, glacier_polygon(), epochs=4)
    assert h2.attrs["fine_tuning"]["scores"] == h1.attrs["fine_tuning"]["scores"] | {
        "refit_epochs": h1.attrs["best_epoch"]}
    assert not all(torch.equal(v, refit.state_dict()[k]) for k, v in kept.state_dict().items())
    assert h2.attrs["fine_tuning"]["training"]["refit"] and not h1.attrs["fine_tuning"]["training"]["refit"]


def test_refit_for_every_epoch_instead_of_the_best(scene, parent):
    f, _ = scene
    best, h1 = tune(parent, f, glacier_polygon(), epochs=4)
    every, h2 = tune(parent, f, glacier_polygon(), epochs=4, refit_epochs="all")
    # the run on the strip is the same; only the refit's length differs
    assert h2["val_loss"].tolist() == h1["val_loss"].tolist()
    assert h2.attrs["fine_tuning"]["scores"]["refit_epochs"] == 4
    assert h1.attrs["fine_tuning"]["scores"]["refit_epochs"] == h1.attrs["best_epoch"]
    assert h2.attrs["fine_tuning"]["training"]["refit_epochs"] == "all"
    same = all(torch.equal(v, every.state_dict()[k]) for k, v in best.state_dict().items())
    assert same == (h1.attrs["best_epoch"] == 4)


# a one-epoch run may well not lower the held-out loss: fine_tune says so, and that is not tested here
@pytest.mark.filterwarnings("ignore::xglacier.errors.XGlacierWarning")
@pytest.mark.parametrize("side", ["north", "south", "east", "west"])
@pytest.mark.parametrize("y_ascending", [False, True])
def test_held_out_strip_never_in_a_training_tile(monkeypatch, parent, side, y_ascending):
    made = []

    def spy(*args, **kwargs):
        made.append(segmentation_tiles(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ftd, "segmentation_tiles", spy)
    f, _ = make_scene(y_ascending)
    _, history = tune(parent, f, glacier_polygon(), epochs=1, holdout_side=side, stride=4, refit=False)
    x0, y0, x1, y1 = history.attrs["fine_tuning"]["holdout"]["bounds"]
    train, held = made
    assert len(train) > 0 and len(held) > 0

    def real_pixels(tiles):
        """Map coordinates of the tiles' pixels that hold data (not padding)."""
        for i in range(len(tiles)):
            ys, xs = tiles.coords(i)
            feats, _ = tiles.gather([i])
            ok = np.isfinite(feats[0]).all(axis=0)
            yy, xx = np.meshgrid(ys, xs, indexing="ij")
            yield yy[ok], xx[ok]

    for yy, xx in real_pixels(train):
        inside = (xx > x0) & (xx < x1) & (yy > y0) & (yy < y1)
        assert not inside.any()
    held_pixels = sum(int(yy.size) for yy, _ in real_pixels(held))
    k = round(0.25 * N)
    assert held_pixels == k * N  # the whole strip, once
    assert (x1 - x0) * (y1 - y0) == pytest.approx(k * N * PX * PX)


def test_y_ascending_gives_the_same_model(parent):
    f, _ = make_scene()
    g, _ = make_scene(y_ascending=True)
    a, ha = tune(parent, f, glacier_polygon(), epochs=2)
    b, hb = tune(parent, g, glacier_polygon(), epochs=2)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert ha.attrs["fine_tuning"]["holdout"] == hb.attrs["fine_tuning"]["holdout"]


@pytest.mark.filterwarnings("ignore::xglacier.errors.XGlacierWarning")  # two epochs on 3 tiles
def test_scene_statistics_come_from_the_training_part_only(scene, parent):
    f, _ = scene
    # tiles of 16 every 16 px on the 36 training rows: each training pixel counts once
    kw = {"statistics": "scene", "stride": 16, "epochs": 2}
    tuned, history = tune(parent, f, glacier_polygon(), **kw)
    train = f.values[:, : N - round(0.25 * N)].astype(np.float64)
    mean, std = tuned.training_statistics()
    np.testing.assert_allclose(mean, train.mean(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, train.std(axis=(1, 2)), rtol=1e-6)
    assert mean != parent.training_statistics()[0]
    record = history.attrs["fine_tuning"]["training"]
    assert record["statistics"] == "scene" and (record["mean"], record["std"]) == (mean, std)
    # the held-out strip's values never reach the statistics
    g = f.copy(data=f.values.copy())
    g.values[:, N - round(0.25 * N):] *= 7.0
    other, _ = tune(parent, g, glacier_polygon(), **kw)
    assert other.training_statistics() == (mean, std)
    # the parent is scored as it is, with its own statistics
    _, kept = tune(parent, f, glacier_polygon(), stride=16, epochs=2)
    before = kept.attrs["fine_tuning"]["scores"]["holdout_iou_before"]
    assert history.attrs["fine_tuning"]["scores"]["holdout_iou_before"] == before


@pytest.mark.filterwarnings("ignore::xglacier.errors.XGlacierWarning")
@pytest.mark.parametrize("variant", ["y_ascending", "chunked"])
def test_scene_statistics_same_for_every_layout(parent, variant):
    f, _ = make_scene()
    g = make_scene(y_ascending=True)[0] if variant == "y_ascending" else f.chunk({"y": 20, "x": 16})
    a, ha = tune(parent, f, glacier_polygon(), statistics="scene", epochs=2)
    b, hb = tune(parent, g, glacier_polygon(), statistics="scene", epochs=2)
    assert a.training_statistics() == b.training_statistics()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert ha.attrs["fine_tuning"]["training"] == hb.attrs["fine_tuning"]["training"]


@pytest.mark.filterwarnings("ignore::xglacier.errors.XGlacierWarning")
def test_scene_statistics_travel_in_the_checkpoint(tmp_path, scene, parent):
    f, _ = scene
    xglacier.save_model(parent, tmp_path / "parent", variable="features")
    tuned, _ = fine_tune(tmp_path / "parent", f, glacier_polygon(), epochs=2, lr=3e-3, batch_size=4,
                         stride=8, holdout_side="south", statistics="scene", out=tmp_path / "round1")
    loaded = xglacier.load_model(tmp_path / "round1")
    assert loaded.training_statistics() == tuned.training_statistics() != parent.training_statistics()
    meta = json.loads((tmp_path / "round1.json").read_text())
    (record,) = meta["extra"]["fine_tuning"]
    assert (record["training"]["mean"], record["training"]["std"]) == tuned.training_statistics()
    assert xglacier.load_model(tmp_path / "parent").training_statistics() == parent.training_statistics()
    np.testing.assert_array_equal(xglacier.segment(f, loaded, tile=N, overlap=0).label.values,
                                  xglacier.segment(f, tuned, tile=N, overlap=0).label.values)


def test_cosine_schedule_decays_the_learning_rate(scene, parent):
    f, _ = scene
    _, flat = tune(parent, f, glacier_polygon(), epochs=4, refit=False)
    _, cosine = tune(parent, f, glacier_polygon(), epochs=4, schedule="cosine", refit=False)
    assert (flat["lr"] == 3e-3).all()
    lrs = cosine["lr"].to_numpy()
    assert (np.diff(lrs) < 0).all() and lrs[0] < 3e-3 and lrs[-1] < 0.05 * 3e-3
    assert cosine.attrs["fine_tuning"]["training"]["schedule"] == "cosine"


@pytest.mark.filterwarnings("ignore::xglacier.errors.XGlacierWarning")  # round 2: one epoch
def test_checkpoint_records_the_corrections(tmp_path, scene, parent):
    f, _ = scene
    xglacier.save_model(parent, tmp_path / "parent", variable="features")
    polys = gpd.GeoDataFrame(
        {"class_name": ["glacier", "glacier", "glacier"], "status": ["edited", "added", "predicted"]},
        geometry=[box(X0, Y0 - PX * 41, X0 + PX * 12, Y0 - PX * 8),
                  box(X0 + PX * 12, Y0 - PX * 41, X0 + PX * 24, Y0 - PX * 8),
                  box(X0 + PX * 40, Y0 - PX * 2, X0 + PX * 44, Y0)], crs=CRS)
    gpkg = tmp_path / "corrected.gpkg"
    polys.to_file(gpkg, layer="glaciers")
    polys.iloc[:1].to_file(gpkg, layer="deleted")
    _, history = fine_tune(tmp_path / "parent", f, gpkg, epochs=3, lr=1e-2, batch_size=4, stride=8,
                           out=tmp_path / "round1")
    meta = json.loads((tmp_path / "round1.json").read_text())
    (record,) = meta["extra"]["fine_tuning"]
    c = record["corrections"]
    assert c["file"] == "corrected.gpkg" and c["layer"] == "glaciers" and c["deleted_layer"] == 1
    assert c["sha256"] == hashlib.sha256(gpkg.read_bytes()).hexdigest()
    assert c["n_polygons"] == 3 and c["by_status"] == {"predicted": 1, "edited": 1, "added": 1, "deleted": 0}
    assert c["by_class"] == {"glacier": 3} and c["reprojected"] is False
    parent_meta = json.loads((tmp_path / "parent.json").read_text())
    assert record["parent"]["checkpoint"] == "parent.json"
    assert record["parent"]["sha256"] == parent_meta["weights"]["sha256"]
    assert record["scene"]["time"].startswith("2020-08-16")
    assert record["scene"]["bounds"] == [X0, Y0 - N * PX, X0 + N * PX, Y0]
    assert record["scene"]["shape"] == [N, N]
    assert 1 <= record["training"]["epochs_run"] <= 3
    best = history.loc[history["best"], "holdout_iou"].item()
    assert record["scores"]["holdout_iou_after"]["glacier"] == pytest.approx(best)
    assert meta["config"]["mean"] == parent_meta["config"]["mean"]
    # the loop goes on: the new checkpoint segments, and a second round keeps the first
    model = xglacier.load_model(tmp_path / "round1", expect=f)
    assert xglacier.segment(f, model, tile=N, overlap=0).label.shape == (N, N)
    fine_tune(tmp_path / "round1", f, gpkg, epochs=1, batch_size=4, stride=8, out=tmp_path / "round2")
    rounds = json.loads((tmp_path / "round2.json").read_text())["extra"]["fine_tuning"]
    assert len(rounds) == 2 and rounds[1]["parent"]["checkpoint"] == "round1.json"


def test_deleted_polygons_burn_nothing(scene, parent):
    f, _ = scene
    polys = glacier_polygon()
    gone = gpd.GeoDataFrame({"class_name": ["glacier"], "status": ["deleted"]},
                            geometry=[box(X0 + PX * 30, Y0 - PX * 41, X0 + PX * 48, Y0 - PX * 8)], crs=CRS)
    both = gpd.GeoDataFrame(gpd.pd.concat([polys, gone], ignore_index=True), crs=CRS)
    a, _ = tune(parent, f, polys, epochs=2)
    b, hb = tune(parent, f, both, epochs=2)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert hb.attrs["fine_tuning"]["corrections"]["by_status"]["deleted"] == 1


def test_polygons_in_another_crs_are_reprojected(scene, parent):
    f, _ = scene
    a, _ = tune(parent, f, glacier_polygon(), epochs=2)
    b, hb = tune(parent, f, glacier_polygon().to_crs("EPSG:4326"), epochs=2)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert hb.attrs["fine_tuning"]["corrections"]["reprojected"] is True


def test_class_columns(scene, parent):
    f, _ = scene
    polys = glacier_polygon().drop(columns="class_name")
    a, _ = tune(parent, f, polys, epochs=1)  # a two-class model: every polygon is its glacier class
    b, _ = tune(parent, f, polys.assign(klass=["ice"]), column="klass", classes={"ice": "glacier"}, epochs=1)
    c, _ = tune(parent, f, polys.assign(**{"class": [1]}), epochs=1)  # polygonize's class index
    for other in (b, c):
        assert all(torch.equal(v, other.state_dict()[k]) for k, v in a.state_dict().items())


def _bad_cases(f, polys):
    nan = f.copy(data=np.full(f.shape, np.nan, "f4"))
    return [
        ({"epochs": 0}, f, polys, ParameterError, "epochs"),
        ({"lr": -1.0}, f, polys, ParameterError, "lr"),
        ({"holdout": 0.6}, f, polys, ParameterError, "holdout"),
        ({"holdout_side": "up"}, f, polys, ParameterError, "holdout_side"),
        ({"statistics": "train"}, f, polys, ParameterError, "statistics"),
        ({"statistics": True}, f, polys, ParameterError, "statistics"),
        ({"schedule": "linear"}, f, polys, ParameterError, "schedule"),
        ({"refit_epochs": "most"}, f, polys, ParameterError, "refit_epochs"),
        ({}, f.to_dataset(dim="channel"), polys, InputError, "Dataset"),
        ({}, f.sel(channel=["elevation", "ndsi"]), polys, InputError, "order"),
        ({}, f.drop_vars("spatial_ref"), polys, InputError, "no CRS"),
        ({}, nan, polys, InputError, "no pixel"),
        ({}, f, polys.set_crs(None, allow_override=True), InputError, "no CRS"),
        ({}, f, polys.set_geometry(polys.translate(1e6)), InputError, "do not overlap"),
        ({}, f, polys.iloc[:0], InputError, "no polygon"),
        ({}, f, polys.assign(class_name=["rock"]), InputError, "'rock'"),
        ({}, f, polys.assign(class_name=["background"]), InputError, "background"),
        ({}, f, polys.assign(status=["moved"]), InputError, "status"),
        ({"column": "kind"}, f, polys, ParameterError, "kind"),
        ({"classes": "rock"}, f, polys.drop(columns="class_name"), ParameterError, "rock"),
        ({}, f, 42, InputError, "corrected_polygons"),
        ({}, f, "nowhere.gpkg", InputError, "does not exist"),
    ]


def test_bad_inputs_raise_clear_errors(scene, parent):
    f, _ = scene
    for kw, feats, polys, error, words in _bad_cases(f, glacier_polygon()):
        with pytest.raises(error, match=words) as info:
            tune(parent, feats, polys, **{"epochs": 1, **kw})
        assert str(info.value).startswith("fine_tune:"), info.value


def test_bad_models_raise_clear_errors(tmp_path, scene, parent):
    f, _ = scene
    with pytest.raises(CheckpointNotFoundError):
        fine_tune(tmp_path / "none", f, glacier_polygon())
    with pytest.raises(ParameterError, match="fine_tune: model is a dict"):
        fine_tune({}, f, glacier_polygon())
    three = UNet(["ndsi", "elevation"], ["background", "clean_ice", "debris_covered_ice"], depth=1,
                 base_channels=2, patch_size=16)
    with pytest.raises(InputError, match="pass column= or classes="):
        fine_tune(three, f, glacier_polygon().drop(columns="class_name"))
    xglacier.save_model(parent, tmp_path / "parent")
    with pytest.raises(ParameterError, match="is the checkpoint being fine-tuned"):
        fine_tune(tmp_path / "parent", f, glacier_polygon(), out=tmp_path / "parent.json")


def _write_scene(folder, f: xr.DataArray) -> list[str]:
    """HLS-named int16 GeoTIFFs (DN = reflectance * 1e4) of a green and a swir16 band."""
    ndsi = f.sel(channel="ndsi").values
    green = np.full(ndsi.shape, 0.6, "f4")
    swir = green * (1 - ndsi) / (1 + ndsi)  # NDSI = (green - swir) / (green + swir)
    profile = {"driver": "GTiff", "height": N, "width": N, "count": 1, "dtype": "int16", "crs": CRS,
               "nodata": -9999, "transform": Affine(PX, 0.0, X0, 0.0, -PX, Y0)}
    paths = []
    for code, band in (("B03", green), ("B06", swir)):
        path = folder / f"scene_2020229_{code}_L30.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.round(band * 1e4).astype("int16"), 1)
        paths.append(str(path))
    return paths


@pytest.mark.filterwarnings("ignore::xglacier.errors.XGlacierWarning")  # an untrained parent, 2 epochs
def test_cli_round_trip(tmp_path, scene, capsys):
    from xglacier.cli import main

    f, _ = scene
    paths = _write_scene(tmp_path, f)
    cube = xglacier.open_scenes(paths)
    feats = xglacier.features(cube, indices=["ndsi"])
    model = UNet([str(c) for c in feats.channel.values], ["background", "glacier"], depth=1,
                 base_channels=4, patch_size=16)
    xglacier.save_model(model, tmp_path / "parent", variable="features")
    glacier_polygon().to_file(tmp_path / "corrected.gpkg")
    args = ["fine-tune", str(tmp_path / "parent"), "--image", *paths, "--polygons",
            str(tmp_path / "corrected.gpkg"), "--out", str(tmp_path / "new"), "--epochs", "2", "--lr", "0.01",
            "--statistics", "scene", "--schedule", "cosine", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "glacier IoU on the held-out" in out and "new.json" in out
    meta = json.loads((tmp_path / "new.json").read_text())
    record = meta["extra"]["fine_tuning"][0]
    assert record["corrections"]["file"] == "corrected.gpkg"
    assert record["training"]["statistics"] == "scene" and record["training"]["schedule"] == "cosine"
    assert record["training"]["epochs"] == 2 and meta["config"]["mean"] != model.config["mean"]
    assert xglacier.load_model(tmp_path / "new", expect=feats).channels == model.channels
    # a clear message, not a traceback: the corrections file is missing
    bad = [*args[:6], str(tmp_path / "missing.gpkg"), *args[7:]]
    assert main(bad) == 1
    assert "does not exist" in capsys.readouterr().err
