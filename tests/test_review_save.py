"""The review's save logic without a browser: what is kept, refused, recombined and written."""

from __future__ import annotations

import os
import re
import urllib.request
from datetime import datetime, timezone

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
import xarray as xr
from shapely.geometry import MultiPolygon, Polygon

from xglacier.errors import EmptySceneError, InputError, ParameterError, ReviewError
from xglacier.review import review
from xglacier.review.image import display_image
from xglacier.review.save import Edits, corrected, count_changes, prepare, write_corrected

CRS = "EPSG:32611"
RES = 30.0
T = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def _holed() -> Polygon:
    return Polygon([(0, 0), (600, 0), (600, 600), (0, 600)],
                   [[(200, 200), (400, 200), (400, 400), (200, 400)]])


def _predictions() -> gpd.GeoDataFrame:
    multi = MultiPolygon([shapely.box(900, 0, 1200, 300), shapely.box(1500, 0, 1800, 300)])
    return gpd.GeoDataFrame(
        {"class": [1, 2, 1], "class_name": ["clean_ice", "debris_covered_ice", "clean_ice"],
         "area_m2": [1.0, 2.0, 3.0], "glacier": ["Athabasca", "Dome", "Columbia"]},
        geometry=[_holed(), shapely.box(0, 900, 300, 1200), multi], crs=CRS)


def _edits(prep):
    return Edits.unedited(prep)


def _drop(e: Edits, i: int) -> None:
    for col in (e.xs, e.ys, e.labels, e.pids):
        del col[i]


def test_untouched_is_copied_whole():
    gdf = _predictions()
    prep = prepare(gdf, resolution=RES)
    assert len(prep.parts) == 4 and prep.fids == (0, 1, 2, 2)
    kept, deleted = corrected(prep, _edits(prep), now=T)
    assert kept.crs == gdf.crs and len(deleted) == 0
    assert (kept["status"] == "predicted").all() and kept["edited_at"].isna().all()
    for a, b in zip(kept.geometry, gdf.geometry, strict=True):
        assert a.equals_exact(b, 0)  # holes and MultiPolygon parts as they came
    assert kept[["class", "class_name", "area_m2", "glacier"]].equals(gdf[["class", "class_name", "area_m2",
                                                                          "glacier"]])
    assert kept["class"].dtype == gdf["class"].dtype


def test_moved_vertex_keeps_holes_rounds_and_recomputes_area():
    gdf = _predictions()
    prep = prepare(gdf, resolution=RES)
    e = _edits(prep)
    e.xs[0][1], e.ys[0][1] = 650.4321, -10.0678  # the (600, 0) corner
    e.times[0] = T
    kept, _ = corrected(prep, e)
    row = kept.iloc[0]
    assert row["status"] == "edited" and row["edited_at"] == T and row["glacier"] == "Athabasca"
    assert len(row.geometry.interiors) == 1  # the nunatak survived the edit
    assert row.geometry.interiors[0].equals(_holed().interiors[0])
    assert (650.0, -10.0) in list(row.geometry.exterior.coords)  # 30 m pixels: whole metres
    assert (kept["status"].iloc[1:] == "predicted").all()


def test_area_is_measured_again_after_an_edit():
    # on the central meridian of UTM 11 the grid shrinks distances by exactly 0.9996
    gdf = gpd.GeoDataFrame({"class_name": ["clean_ice"], "area_m2": [-1.0]}, crs=CRS,
                           geometry=[shapely.box(499000, 5779000, 501000, 5781000)])
    prep = prepare(gdf, resolution=RES)
    e = _edits(prep)
    e.xs[0] = [499000.0, 501000.0, 501000.0, 499000.0]  # same corners, another start: an edit
    e.ys[0] = [5781000.0, 5781000.0, 5779000.0, 5779000.0]
    kept, _ = corrected(prep, e)
    assert kept["status"][0] == "edited"
    assert kept["area_m2"][0] == pytest.approx(2000.0**2 / 0.9996**2, rel=1e-4)


def test_geographic_crs_keeps_more_digits():
    gdf = gpd.GeoDataFrame({"class_name": ["clean_ice"]}, geometry=[shapely.box(-117.3, 52.1, -117.2, 52.2)],
                           crs="EPSG:4326")
    prep = prepare(gdf, resolution=0.00025)
    e = _edits(prep)
    e.xs[0][0] = -117.1234567891
    kept, _ = corrected(prep, e)
    assert -117.12346 in [c[0] for c in kept.geometry[0].exterior.coords]


def test_holes_outside_the_edited_outline_are_refused():
    prep = prepare(_predictions(), resolution=RES)
    e = _edits(prep)
    # shrink the outline so that the nunatak (200-400 m) sticks out of it
    e.xs[0], e.ys[0] = [0.0, 300.0, 300.0, 0.0], [0.0, 0.0, 300.0, 300.0]
    with pytest.raises(ReviewError, match=r"hole\(s\) \(nunataks\) no longer fit inside"):
        corrected(prep, e)


def test_self_intersection_is_refused_and_nothing_written(tmp_path):
    prep = prepare(_predictions(), resolution=RES)
    e = _edits(prep)
    e.xs.append([2000.0, 2300.0, 2000.0, 2300.0])  # a bow-tie
    e.ys.append([0.0, 300.0, 300.0, 0.0])
    e.labels.append("clean_ice")
    e.pids.append(99)
    with pytest.raises(ReviewError, match="Self-intersection"):
        corrected(prep, e)
    e.xs[-1], e.ys[-1] = [2000.0, 2300.0], [0.0, 0.0]
    with pytest.raises(ReviewError, match="2 distinct vertices"):
        corrected(prep, e)
    assert list(tmp_path.iterdir()) == []


def test_added_changed_class_and_deleted(tmp_path):
    gdf = _predictions()
    prep = prepare(gdf, resolution=RES)
    e = _edits(prep)
    e.labels[0] = "debris_covered_ice"
    e.xs.append([3000.0, 3300.0, 3300.0])
    e.ys.append([0.0, 0.0, 300.0])
    e.labels.append("clean_ice")
    e.pids.append(4)
    e.times.update({0: T, 4: T, 1: T})
    _drop(e, 1)  # the debris polygon
    kept, deleted = corrected(prep, e)
    assert kept["status"].tolist() == ["edited", "predicted", "added"]
    assert kept["class_name"].tolist() == ["debris_covered_ice", "clean_ice", "clean_ice"]
    assert kept["class"].tolist() == [2, 1, 1]  # the code follows the name
    assert kept["source_fid"].tolist()[:2] == [0, 2] and kept["source_fid"].isna().iloc[2]
    assert kept["edited_at"].iloc[2] == T
    assert deleted["glacier"].tolist() == ["Dome"] and deleted["status"].tolist() == ["deleted"]
    assert deleted.geometry[0].equals(gdf.geometry[1])

    out = write_corrected(kept, deleted, tmp_path / "corrected.gpkg")
    layers = dict(pyogrio.list_layers(out))
    assert set(layers) == {"corrected", "deleted"}
    back = gpd.read_file(out, layer="corrected")
    gone = gpd.read_file(out, layer="deleted")
    assert back.crs == gdf.crs and gone.crs == gdf.crs
    assert back["status"].tolist() == ["edited", "predicted", "added"]
    assert back["glacier"].tolist()[:2] == ["Athabasca", "Columbia"]
    assert gone["glacier"].tolist() == ["Dome"]
    # a layer mixing Polygons and MultiPolygons is written as MultiPolygons: same shapes, holes kept
    assert back.geometry[0].equals(kept.geometry[0]) and len(back.geometry[0].geoms[0].interiors) == 1


def test_multipolygons_are_recombined_by_feature():
    gdf = _predictions()
    prep = prepare(gdf, resolution=RES)
    e = _edits(prep)
    e.xs[2][1] = 1230.0  # one part of the MultiPolygon
    kept, deleted = corrected(prep, e)
    geom = kept.geometry[2]
    assert kept["status"][2] == "edited" and geom.geom_type == "MultiPolygon" and len(geom.geoms) == 2
    assert geom.geoms[1].equals_exact(gdf.geometry[2].geoms[1], 0)  # the other part untouched
    e = _edits(prep)
    _drop(e, 3)  # delete the second part only
    kept, deleted = corrected(prep, e)
    assert kept["status"][2] == "edited" and kept.geometry[2].equals(gdf.geometry[2].geoms[0])
    assert len(deleted) == 1 and deleted.geometry[0].equals(gdf.geometry[2].geoms[1])
    assert deleted["source_fid"].tolist() == [2]


def test_a_second_review_keeps_the_audit_trail():
    prep = prepare(_predictions(), resolution=RES)
    e = _edits(prep)
    e.xs[1][0] = 30.0
    e.times[1] = T
    first, _ = corrected(prep, e)
    prep2 = prepare(first, resolution=RES)
    again, _ = corrected(prep2, _edits(prep2))
    assert again["status"].tolist() == first["status"].tolist() == ["predicted", "edited", "predicted"]
    assert again["edited_at"][1] == T


def test_file_without_classes():
    gdf = gpd.GeoDataFrame({"ID": [1]}, geometry=[shapely.box(0, 0, 300, 300)], crs=CRS)
    prep = prepare(gdf, resolution=RES)
    assert prep.labels[0] == "glacier" and "clean_ice" in prep.labels
    kept, _ = corrected(prep, _edits(prep))
    assert kept["class_name"].tolist() == ["glacier"] and kept["ID"].tolist() == [1]


def test_input_never_overwritten(tmp_path):
    src = tmp_path / "pred.gpkg"
    _predictions().to_file(src)
    before = src.read_bytes()
    prep = prepare(gpd.read_file(src), resolution=RES)
    kept, deleted = corrected(prep, _edits(prep))
    with pytest.raises(ReviewError, match="never overwrites its input"):
        write_corrected(kept, deleted, src, source=src)
    os.symlink(src, tmp_path / "link.gpkg")
    with pytest.raises(ReviewError, match="never overwrites"):
        write_corrected(kept, deleted, tmp_path / "link.gpkg", source=src)
    with pytest.raises(ReviewError, match="never overwrites"):
        review(src, _scene(), out=tmp_path / "." / "pred.gpkg")
    assert src.read_bytes() == before


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    prep = prepare(_predictions(), resolution=RES)
    kept, deleted = corrected(prep, _edits(prep))
    out = tmp_path / "corrected.gpkg"
    write_corrected(kept, deleted, out)
    old = out.read_bytes()

    real = gpd.GeoDataFrame.to_file

    def fail_on_second_layer(self, path, *args, **kwargs):
        if kwargs.get("layer") == "deleted":  # the first layer is in the file already
            raise OSError("disk full (simulated) while writing the deleted layer")
        return real(self, path, *args, **kwargs)

    e = _edits(prep)
    _drop(e, 0)
    kept2, deleted2 = corrected(prep, e)
    monkeypatch.setattr(gpd.GeoDataFrame, "to_file", fail_on_second_layer)
    with pytest.raises(OSError, match="simulated"):
        write_corrected(kept2, deleted2, out)
    assert out.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["corrected.gpkg"]
    with pytest.raises(OSError, match="simulated"):
        write_corrected(kept2, deleted2, tmp_path / "new.gpkg")
    assert not (tmp_path / "new.gpkg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrected.gpkg"]


def test_geojson_writes_deleted_beside(tmp_path):
    prep = prepare(_predictions(), resolution=RES)
    e = _edits(prep)
    _drop(e, 1)
    kept, deleted = corrected(prep, e)
    out = write_corrected(kept, deleted, tmp_path / "c.geojson")
    assert len(gpd.read_file(out)) == 2
    assert gpd.read_file(tmp_path / "c.deleted.geojson")["glacier"].tolist() == ["Dome"]
    with pytest.raises(ParameterError, match="suffix"):
        write_corrected(kept, deleted, tmp_path / "c.shp")


def test_count_changes():
    prep = prepare(_predictions(), resolution=RES)
    a = _edits(prep)
    b = _edits(prep)
    b.labels[0] = "debris_covered_ice"
    _drop(b, 1)
    assert count_changes(a, b) == 2 and count_changes(b, b) == 0


# -- the picture ------------------------------------------------------------------------------
def _scene(ny=40, nx=50, descending=True, dtype="float32") -> xr.Dataset:
    rng = np.random.default_rng(1)
    y = 900.0 + RES * np.arange(ny) + RES / 2
    y = y[::-1] if descending else y
    x = -300.0 + RES * np.arange(nx) + RES / 2
    data = {b: (("y", "x"), (rng.random((ny, nx)) * 1000).astype(dtype)) for b in ("red", "green", "blue")}
    return xr.Dataset(data, coords={"y": y, "x": x}).rio.write_crs(CRS)


@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_display_is_the_same_either_way_up(dtype):
    down, up = _scene(dtype=dtype), _scene(dtype=dtype).isel(y=slice(None, None, -1))
    a, b = display_image(down), display_image(up)
    assert a.kind == "rgb" and np.array_equal(a.data, b.data)
    assert (a.x0, a.y0, a.width, a.height) == (-300.0, 900.0, 50 * RES, 40 * RES)
    # row 0 is the south edge: the smallest y
    red = down["red"].values
    lo, hi = np.percentile(red, [2, 98])
    south = np.clip((red[-1, 0] - lo) / (hi - lo) * 255, 0, 255)
    assert abs(int(a.data.view(np.uint8).reshape(40, 50, 4)[0, 0, 0]) - south) <= 1


def test_display_coarsens_large_scenes_keeping_the_footprint():
    ds = _scene(ny=130, nx=70)
    ds["red"][:10, :10] = np.nan
    d = display_image(ds, max_size=32)
    assert d.factor == 5 and d.data.shape == (26, 14) and d.resolution == RES
    assert (d.width, d.height) == (70 * RES, 130 * RES)
    one = display_image(ds, bands=["green"], max_size=32)
    assert one.kind == "band" and one.bands == ("green",) and np.isfinite(one.data).all()
    assert one.data[-1, 0] == pytest.approx(float(ds["green"][:5, :5].mean()), rel=1e-5)


def test_display_errors():
    ds = _scene()
    with pytest.raises(EmptySceneError, match="no valid pixel"):
        display_image(ds * np.nan)
    two = xr.concat([ds, ds * 2], "time").assign_coords(time=pd.to_datetime(["2020-08-16", "2020-09-09"]))
    with pytest.raises(ParameterError, match="2 scenes along time; pass time="):
        display_image(two)
    with pytest.raises(ParameterError, match="at time='2020'"):
        display_image(two, time="2020")
    assert np.array_equal(display_image(two, time="2020-08").data, display_image(ds).data)
    with pytest.raises(ParameterError, match="one band or three"):
        display_image(ds, bands=["red", "green"])


def test_review_checks_before_serving(tmp_path):
    gdf = _predictions()
    with pytest.raises(ParameterError, match="out= is required"):
        review(gdf, _scene())
    with pytest.raises(InputError, match="CRS"):
        review(gdf.set_crs("EPSG:32612", allow_override=True), _scene(), out=tmp_path / "c.gpkg")


def test_page_is_served_offline_and_stops(tmp_path):
    other_spelling = _predictions().to_crs("+proj=utm +zone=11 +datum=WGS84")
    server = review(other_spelling, _scene(), out=tmp_path / "c.gpkg")
    try:
        assert server.url.startswith("http://127.0.0.1:")
        page = urllib.request.urlopen(server.url, timeout=30).read().decode()
        urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page) + re.findall(r"https?://[^\s\"'<>]+", page)
        assert urls and all(u.startswith(("/", "http://127.0.0.1")) for u in urls), urls
    finally:
        server.stop()
    assert not server.running
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=5)


def test_command_line_serves_until_interrupted(tmp_path):
    import signal
    import subprocess
    import sys

    scene = _scene()
    for band, name in (("blue", "B02"), ("green", "B03"), ("red", "B04")):
        scene[band].rio.to_raster(tmp_path / f"test_2020229_{name}_L30.tif")
    src = tmp_path / "pred.gpkg"
    gpd.GeoDataFrame({"class_name": ["clean_ice"]}, geometry=[shapely.box(0, 1000, 300, 1300)],
                     crs=CRS).to_file(src)
    # Ctrl-C as in a terminal: a job started in the background of a script (as CI may run
    # the suite) inherits an ignored SIGINT, and Python then installs no handler for it
    start = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "from xglacier.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", start, "review", str(src), "--image",
                             str(tmp_path / "test_2020229_*_L30.tif")], stderr=subprocess.PIPE, text=True)
    try:
        # the URL line may follow other lines (warnings of a loaded machine, say)
        lines: list[str] = []
        while not lines or not re.search(r"http://127\.0\.0\.1:\d+/", lines[-1]):
            line = proc.stderr.readline()
            assert line, "the command ended before serving:\n" + "".join(lines)
            lines.append(line)
        url = re.search(r"http://127\.0\.0\.1:\d+/", lines[-1])
        assert "pred.corrected.gpkg" in lines[-1], lines[-1]
        with urllib.request.urlopen(url.group(0), timeout=60) as answer:
            assert answer.status == 200 and "static/js/bokeh" in answer.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("xglacier review did not stop within 60 s of Ctrl-C") from None
    assert code == 0


def test_empty_input_and_drawn_polygons(tmp_path):
    empty = gpd.GeoDataFrame({"class_name": []}, geometry=gpd.GeoSeries([], crs=CRS))
    prep = prepare(empty, resolution=RES)
    e = _edits(prep)
    assert e.pids == [] and prep.labels[:2] == ("clean_ice", "debris_covered_ice")
    e.xs.append([0.0, 300.0, 300.0])
    e.ys.append([0.0, 0.0, 300.0])
    e.labels.append("debris_covered_ice")
    e.pids.append(0)
    kept, deleted = corrected(prep, e, now=T)
    assert kept["status"].tolist() == ["added"] and kept["edited_at"].tolist() == [T]
    out = write_corrected(kept, deleted, tmp_path / "c.gpkg")
    assert gpd.read_file(out, layer="c")["class_name"].tolist() == ["debris_covered_ice"]
    assert len(gpd.read_file(out, layer="deleted")) == 0


def test_input_that_is_not_polygons():
    lines = gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=CRS)
    with pytest.raises(InputError, match="feature 0 is a LineString"):
        prepare(lines, resolution=RES)
    with pytest.raises(InputError, match="no CRS"):
        prepare(_predictions().set_crs(None, allow_override=True), resolution=RES)
    with pytest.raises(ParameterError, match="class_column='kind'"):
        prepare(_predictions(), resolution=RES, class_column="kind")
