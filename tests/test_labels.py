"""Label maps from outlines and back: classes, priority, holes, areas, files, bad input."""

from __future__ import annotations

from pathlib import Path

import dask.array as dsa
import geopandas as gpd
import numpy as np
import pytest
import rioxarray  # noqa: F401 - registers .rio
import shapely
import xarray as xr
from geopandas.testing import assert_geodataframe_equal
from shapely.geometry import Polygon, box

from xglacier.datasets import CLASSES
from xglacier.errors import DimensionError, EmptyOutputWarning, InputError, ParameterError
from xglacier.segmentation.classes import NODATA
from xglacier.segmentation.labels import geodesic_area, polygonize, rasterize, write_vector

from .conftest import ComputeForbidden, assert_same

OGGM = Path(__file__).resolve().parents[2] / "shared" / "data" / "oggm"
UTM = "EPSG:32632"
X0, Y0 = 500000.0, 5200000.0  # on UTM 32N's central meridian, 47 N


def grid(res: float = 10.0, shape: tuple[int, int] = (40, 60), x0: float = X0, y0: float = Y0,
         crs: str = UTM) -> xr.DataArray:
    ny, nx = shape
    da = xr.DataArray(np.zeros(shape, np.float32), dims=("y", "x"),
                      coords={"y": y0 - res * (np.arange(ny) + 0.5), "x": x0 + res * (np.arange(nx) + 0.5)})
    return da.rio.write_crs(crs)


def sq(c0: int, r0: int, c1: int, r1: int) -> Polygon:
    """Box over columns c0..c1 and rows r0..r1 (pixel edges) of :func:`grid`."""
    return box(X0 + 10 * c0, Y0 - 10 * r1, X0 + 10 * c1, Y0 - 10 * r0)


@pytest.fixture
def outlines() -> gpd.GeoDataFrame:
    """Clean ice with a rock outcrop (hole), and debris overlapping its lower part."""
    clean = sq(2, 2, 40, 30).difference(sq(10, 8, 16, 14))
    debris = sq(30, 20, 55, 36)
    return gpd.GeoDataFrame({"type": ["clean_ice", "debris_covered_ice"], "code": [1, 2]},
                            geometry=[clean, debris], crs=UTM)


# -- rasterize --------------------------------------------------------------------------------


def test_rasterize_classes_priority_and_holes(outlines):
    like = grid()
    lab = rasterize(outlines, like, classes={"clean_ice": 1, "debris_covered_ice": 2}, column="type")
    assert lab.dtype == np.uint8 and lab.dims == ("y", "x") and lab.name == "labels"
    assert lab.rio.crs == like.rio.crs
    np.testing.assert_array_equal(lab.x.values, like.x.values)
    assert lab.attrs["flag_values"] == [0, 1, 2]
    assert lab.attrs["flag_meanings"] == "background clean_ice debris_covered_ice"
    v = lab.values
    assert (v[8:14, 10:16] == 0).all()  # the hole stays background
    assert (v[2:8, 2:40] == 1).all() and (v[36:, :] == 0).all()
    assert (v[20:30, 30:40] == 2).all()  # default: the higher code wins the overlap
    assert (v == 1).sum() == 38 * 28 - 36 - 100 and (v == 2).sum() == 25 * 16
    first = rasterize(outlines, like, classes={"clean_ice": 1, "debris_covered_ice": 2}, column="type",
                      priority=["clean_ice"])
    assert (first.values[20:30, 30:40] == 1).all()
    assert (first.values != v).sum() == 100
    # the same with codes in a column, and with xglacier.datasets.CLASSES ({code: name})
    assert_same(rasterize(outlines, like, classes=CLASSES, column="code"), lab)
    assert_same(rasterize(outlines, like, classes=CLASSES, column="type"), lab)
    assert_same(rasterize(outlines, like, column="code", priority=[1]), first)
    assert rasterize(outlines, like, column="code").attrs["flag_meanings"] == "background class_1 class_2"


def test_rasterize_defaults_and_single_class(outlines):
    like = grid()
    lab = rasterize(outlines, like)
    assert lab.attrs["flag_meanings"] == "background glacier"
    np.testing.assert_array_equal(np.unique(lab), [0, 1])
    deb = rasterize(outlines, like, classes={"debris_covered_ice": 2})
    np.testing.assert_array_equal(deb.values, 2 * lab.values)
    touched = rasterize(outlines, like, all_touched=True)
    assert (touched.values >= lab.values).all()
    # outlines in another CRS are reprojected onto like's grid
    geo = rasterize(outlines.to_crs("EPSG:4326"), like)
    assert (geo.values != lab.values).sum() <= 4  # a few pixel centres on transformed edges


def test_rasterize_lazy_like(outlines, no_compute):
    cube = xr.Dataset({"green": grid().expand_dims(time=3)}).chunk({"time": 1, "y": 7, "x": 25})
    with no_compute():
        lab = rasterize(outlines, cube, classes=CLASSES, column="type")
        assert isinstance(lab.data, dsa.Array) and lab.chunks == ((7,) * 5 + (5,), (25, 25, 10))
        with pytest.raises(ComputeForbidden):
            lab.values  # noqa: B018
    assert_same(lab, rasterize(outlines, grid(), classes=CLASSES, column="type"))


def test_rasterize_bad_input(outlines, tmp_path):
    like = grid()
    empty = tmp_path / "empty.geojson"
    empty.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(InputError, match=r"outline file '.*empty\.geojson' is empty"):
        rasterize(empty, like)
    with pytest.raises(InputError, match=r"outline file '.*nowhere\.shp' does not exist"):
        rasterize(tmp_path / "nowhere.shp", like)
    bad = tmp_path / "bad.gpkg"
    bad.write_text("not a geopackage")
    with pytest.raises(InputError, match=r"bad\.gpkg' cannot be read"):
        rasterize(bad, like)
    far = outlines.set_geometry(outlines.translate(xoff=1e5))
    with pytest.raises(InputError, match=r"does not overlap the grid of like: .*grid covers \(500000, "):
        rasterize(far.geometry, like)  # a GeoSeries will do
    with pytest.raises(InputError, match=r"does not overlap the grid of like: .*grid covers \(500000, "):
        rasterize(far, like)
    path = tmp_path / "far.gpkg"
    far.to_file(path)
    with pytest.raises(InputError, match=r"outline file '.*far\.gpkg' does not overlap"):
        rasterize(path, like)
    with pytest.raises(InputError, match="has no CRS"):
        rasterize(outlines.set_crs(None, allow_override=True), like)
    with pytest.raises(InputError, match="like has no CRS"):
        rasterize(outlines, like.drop_vars("spatial_ref"))
    with pytest.raises(InputError, match=r"\['LineString'\] geometries"):
        line = shapely.LineString(sq(0, 0, 5, 5).exterior.coords)
        rasterize(gpd.GeoDataFrame(geometry=[line], crs=UTM), like)
    with pytest.raises(ParameterError, match=r"column 'type' .* class names \['debris_covered_ice'\] not in"):
        rasterize(outlines, like, classes={"clean_ice": 1}, column="type")
    with pytest.raises(ParameterError, match=r"column 'code' .* unknown class codes \[2\]"):
        rasterize(outlines, like, classes={"clean_ice": 1}, column="code")
    with pytest.raises(ParameterError, match=r"column 'type' .* pass classes="):
        rasterize(outlines, like, column="type")
    with pytest.raises(ParameterError, match=r"column='kind' is not a column"):
        rasterize(outlines, like, classes=CLASSES, column="kind")
    with pytest.raises(ParameterError, match="priority entry 'rock'"):
        rasterize(outlines, like, classes=CLASSES, column="type", priority=["rock"])
    with pytest.raises(ParameterError, match="without column="):
        rasterize(outlines, like, classes={"clean_ice": 1, "debris_covered_ice": 2})
    with pytest.raises(ParameterError, match="outside 0-255"):
        rasterize(outlines, like, classes={"clean_ice": 300}, column="type")


def test_rasterize_refuses_the_nodata_code(outlines):
    # 255 labels pixels without a class (segmentation.classes.NODATA): never burned as a class
    like = grid()
    with pytest.raises(ParameterError, match=r"^rasterize: column 'code' .* unknown class codes \[255\]; "
                       r"expected codes in 1-254 \(0: background, 255: nodata\)"):
        rasterize(outlines.assign(code=[1, NODATA]), like, column="code")
    with pytest.raises(ParameterError, match=r"^rasterize: class code 255 \('debris_covered_ice'\) is the "
                       "label of pixels without a class"):
        rasterize(outlines, like, classes={"clean_ice": 1, "debris_covered_ice": 255}, column="type")
    with pytest.raises(ParameterError, match=r"^rasterize: class code 255"):
        rasterize(outlines, like, classes={"glacier": NODATA})


# -- polygonize and writing -------------------------------------------------------------------


def test_polygonize_holes_classes_areas(outlines):
    lab = rasterize(outlines, grid(), classes=CLASSES, column="type")
    gdf = polygonize(lab)
    assert list(gdf.columns) == ["class", "class_name", "area_m2", "geometry"]
    assert gdf.crs == lab.rio.crs
    assert gdf["class"].tolist() == [1, 2]
    assert gdf["class_name"].tolist() == ["clean_ice", "debris_covered_ice"]  # from flag_meanings
    clean = gdf.geometry[0]
    assert len(clean.interiors) == 1 and Polygon(clean.interiors[0]).area == 3600
    # geodesic areas: UTM grid metres on the central meridian are 1 / 0.9996 true metres
    np.testing.assert_allclose(gdf.area_m2, np.array([928, 400]) * 100 / 0.9996**2, rtol=2e-5)
    np.testing.assert_allclose(gdf.area_m2, geodesic_area(gdf), rtol=1e-12)
    assert (polygonize(lab, classes={"a": 1, "b": 2}).class_name == ["a", "b"]).all()
    plain = lab.copy()
    plain.attrs = {}
    assert (polygonize(plain).class_name == ["class_1", "class_2"]).all()


def test_polygonize_min_area_simplify_connectivity():
    v = np.zeros((30, 30), np.uint8)
    v[2:20, 2:20] = 1
    v[8:10, 8:10] = 0  # a 4-pixel hole: kept whatever min_area is
    v[25, 25] = v[26, 26] = 1  # two pixels touching at a corner
    yy, xx = np.mgrid[0:30, 0:30]
    v[(xx - 15) ** 2 + (yy - 24) ** 2 <= 16] = 2  # a pixelated disc
    lab = grid(shape=(30, 30)).copy(data=v)
    gdf = polygonize(lab)
    assert gdf.groupby("class").size().tolist() == [3, 1]
    assert len(polygonize(lab, connectivity=8)) == 3
    big = polygonize(lab, min_area=150)
    assert big["class"].tolist() == [1, 2] and len(big.geometry[0].interiors) == 1
    disc = gdf[gdf["class"] == 2].geometry.iloc[0]
    smooth = polygonize(lab, simplify=15).query("`class` == 2").geometry.iloc[0]
    assert len(smooth.exterior.coords) < len(disc.exterior.coords)
    assert shapely.hausdorff_distance(smooth, disc) <= 15
    empty = polygonize(lab * 0)
    assert len(empty) == 0 and list(empty.columns) == ["class", "class_name", "area_m2", "geometry"]
    assert_geodataframe_equal(polygonize(lab.chunk({"y": 7})), gdf)  # computed, same result


def test_polygonize_skips_nodata_and_refuses_unknown_codes():
    v = np.zeros((30, 30), np.uint8)
    v[2:20, 2:20] = 1
    v[10:14, 10:14] = NODATA  # missing inputs inside the glacier: a hole, not a polygon
    v[22:28, 2:28] = 2
    v[22:28, 20:30] = NODATA  # and over part of the debris and the edge
    lab = grid(shape=(30, 30)).copy(data=v).assign_attrs(flag_values=[0, 1, 2],
                                                         flag_meanings="background clean_ice debris")
    gdf = polygonize(lab)
    assert gdf["class"].tolist() == [1, 2] and gdf["class_name"].tolist() == ["clean_ice", "debris"]
    np.testing.assert_allclose(gdf.geometry.area, [(18 * 18 - 16) * 100, 6 * 18 * 100])
    assert len(gdf.geometry[0].interiors) == 1
    # NODATA named among the flags (as a predicted map may carry it) is still never traced
    flagged = lab.assign_attrs(flag_values=[0, 1, 2, NODATA],
                               flag_meanings="background clean_ice debris nodata")
    assert_geodataframe_equal(polygonize(flagged), gdf)
    # without any class table, every code but 0 and NODATA is a class
    bare = lab.copy()
    bare.attrs = {}
    assert polygonize(bare)["class_name"].tolist() == ["class_1", "class_2"]
    # a code the map's classes do not name is an error, not a polygon
    odd = lab.copy(data=np.where(v == 2, 3, v).astype(np.uint8))
    with pytest.raises(InputError, match=r"^polygonize: labels None hold codes \[3\] that are not "
                       r"among their classes \[1, 2\] \(flag_values\); expected only those, "
                       r"0 \(background\) and 255 "):
        polygonize(odd)
    with pytest.raises(InputError, match=r"codes \[2\] .* classes \[1\] \(classes=\)"):
        polygonize(lab, classes={"glacier": 1})
    renamed = polygonize(lab, classes={"ice": 1, "rock_glacier": 2})
    assert renamed["class_name"].tolist() == ["ice", "rock_glacier"]
    only_nodata = polygonize(lab.copy(data=np.full((30, 30), NODATA, np.uint8)))
    assert len(only_nodata) == 0 and only_nodata["class_name"].dtype == object


def test_polygonize_in_geographic_crs():
    # 0.001-degree cells at 47 N: areas must be true m², not square degrees
    v = np.zeros((20, 20), np.uint8)
    v[5:15, 4:16] = 1
    lab = grid(res=0.001, shape=(20, 20), x0=11.0, y0=47.0, crs="EPSG:4326").copy(data=v)
    gdf = polygonize(lab, simplify=30)
    assert gdf.crs.is_geographic
    expect = geodesic_area(gpd.GeoSeries([box(11.004, 46.985, 11.016, 46.995)], crs="EPSG:4326"))[0]
    np.testing.assert_allclose(gdf.area_m2.iloc[0], expect, rtol=1e-6)
    utm = gpd.GeoSeries(gdf.geometry, crs=gdf.crs).to_crs(UTM).area.iloc[0]
    assert abs(gdf.area_m2.iloc[0] / utm - 1) < 2e-3 and 1.0e6 < expect < 1.03e6


def test_polygonize_bad_input():
    lab = grid().astype(np.uint8)
    with pytest.raises(InputError, match="dtype float32; expected integer class codes"):
        polygonize(grid())
    with pytest.raises(InputError, match="have no CRS"):
        polygonize(lab.drop_vars("spatial_ref"))
    with pytest.raises(DimensionError, match=r"\('time', 'y', 'x'\); expected \('y', 'x'\)"):
        polygonize(lab.expand_dims(time=2))
    with pytest.raises(ParameterError, match="connectivity=6"):
        polygonize(lab, connectivity=6)
    with pytest.raises(ParameterError, match="min_area=-1"):
        polygonize(lab, min_area=-1)


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_write_vector(outlines, tmp_path, suffix):
    gdf = polygonize(rasterize(outlines, grid(), classes=CLASSES, column="type"))
    path = tmp_path / f"glaciers{suffix}"
    path.write_text("old content, replaced whole")
    assert write_vector(gdf, path) == path
    back = gpd.read_file(path)
    assert back.crs == gdf.crs and back["class_name"].tolist() == gdf["class_name"].tolist()
    np.testing.assert_allclose(back.area_m2, gdf.area_m2)
    assert len(back.geometry[0].interiors) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    with pytest.raises(ParameterError, match=r"suffix '\.shp'; expected one of"):
        write_vector(gdf, tmp_path / "glaciers.shp")
    with pytest.raises(InputError, match="does not exist"):
        write_vector(gdf, tmp_path / "missing" / "glaciers.gpkg")


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_write_vector_warns_on_empty_and_writes_a_valid_file(tmp_path, suffix):
    empty = polygonize(grid().astype(np.uint8))  # a map without any glacier
    assert len(empty) == 0
    path = tmp_path / f"nothing{suffix}"
    with pytest.warns(EmptyOutputWarning, match=r"^write_vector: the GeoDataFrame is empty; '.*nothing"):
        assert write_vector(empty, path) == path
    back = gpd.read_file(path)
    assert len(back) == 0 and back.crs == empty.crs
    if suffix == ".gpkg":  # GeoJSON keeps no schema without a feature
        assert list(back.columns) == ["class", "class_name", "area_m2", "geometry"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    with pytest.raises(InputError, match=r"^write_vector: the GeoDataFrame has no geometry column"):
        write_vector(gpd.GeoDataFrame({"a": [1]}), tmp_path / f"nogeom{suffix}")


# -- round trip on real RGI outlines ----------------------------------------------------------


@pytest.mark.skipif(not (OGGM / "rgi_oetztal.shp").exists(),
                    reason=f"RGI Oetztal outlines not found in {OGGM} (../shared/data)")
@pytest.mark.parametrize("res", [30.0, 10.0])
def test_round_trip_rgi_oetztal(res):
    """20 RGI outlines (EPSG:4326, 0.34-16.6 km², 35 interior rings) -> labels -> polygons.

    Each outline is its own class (its RGIId), so outlines that share edges stay apart.
    The grid is UTM 32N, offset by a fraction of a pixel from the 30 m UTM lattice the RGI
    outlines were digitised on (a grid aligned with it reproduces them exactly).
    """
    path = OGGM / "rgi_oetztal.shp"
    src = gpd.read_file(path)
    codes = {rgi: k + 1 for k, rgi in enumerate(src["RGIId"])}
    utm = src.to_crs(UTM)
    left, bottom, right, top = utm.total_bounds
    x0, y0 = np.floor(left / 30) * 30 - 60 + 13, np.ceil(top / 30) * 30 + 60 + 7
    like = grid(res, (int((y0 - bottom) / res) + 3, int((right - x0) / res) + 3), x0, y0)
    lab = rasterize(path, like, classes=codes, column="RGIId")  # from the file, reprojected from EPSG:4326
    gdf = polygonize(lab)
    assert set(gdf["class_name"]) == set(codes)

    area = gdf.groupby("class").area_m2.sum().reindex(list(codes.values())).to_numpy()
    truth = geodesic_area(src)
    err = np.abs(area / truth - 1)
    assert err.max() < 0.02, f"largest area error {100 * err.max():.2f}%"
    # holes: those of the valid outline (RGI exterior rings touch themselves at pixel
    # corners, enclosing 5 holes more than the 35 interior rings); each must come back
    # at its place: overlapping a polygon's hole at 30 m (where a one-pixel hole moves by
    # the grid offset), with an IoU above 0.5 at 10 m
    valid = [shapely.make_valid(g) for g in utm.geometry]
    assert {g.geom_type for g in valid} == {"Polygon"}
    assert sum(len(g.interiors) for g in utm.geometry) == 35
    assert sum(len(g.interiors) for g in valid) == 40
    for k, geom in enumerate(valid):
        holes = [Polygon(r) for r in geom.interiors]
        got = [Polygon(r) for g in gdf.geometry[gdf["class"] == k + 1] for r in g.interiors]
        assert len(got) >= len(holes)
        for h in holes:
            iou = max((h.intersection(q).area / h.union(q).area for q in got), default=0.0)
            assert iou > (0.5 if res <= 10 else 0.0), f"outline {k}: hole of {h.area:.0f} m² lost"
