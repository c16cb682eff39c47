"""End to end: a real headless Chromium edits, undoes and saves on the review page.

Every edit is a user action: mouse presses, drags and clicks on the map canvas at the
pixels where Bokeh draws the vertices, clicks on the toolbar and on the widgets. Page
JavaScript only reads the plot's data-to-screen mapping and what the browser holds
(``tests/_browser.py``). The saved GeoPackage is then read back with geopandas.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
import xarray as xr
from shapely.geometry import Polygon

from tests._browser import MapPage, chromium_or_skip
from xglacier.review import review

X0, Y0, RES = 480000.0, 5778000.0, 30.0
NY, NX = 60, 80


def _scene() -> xr.Dataset:
    rng = np.random.default_rng(3)
    base = rng.random((NY, NX)).astype("float32") * 0.2
    bands = {b: (("y", "x"), base + k * 0.1) for k, b in enumerate(("red", "green", "blue"))}
    coords = {"y": Y0 + RES * NY - RES / 2 - RES * np.arange(NY), "x": X0 + RES / 2 + RES * np.arange(NX)}
    return xr.Dataset(bands, coords=coords).rio.write_crs("EPSG:32611")


def _box(x0, y0, x1, y1):
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def _predictions() -> gpd.GeoDataFrame:
    holed = Polygon(_box(300, 900, 900, 1500).exterior, [_box(450, 1050, 750, 1350).exterior])
    return gpd.GeoDataFrame(
        {"class": [1, 2, 1, 1], "class_name": ["clean_ice", "debris_covered_ice", "clean_ice", "clean_ice"],
         "name": ["A", "B", "C", "E"]},
        geometry=[_box(300, 300, 600, 600), _box(900, 300, 1200, 600), _box(1500, 300, 1800, 600), holed],
        crs="EPSG:32611")


@pytest.fixture
def browser_page():
    path = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 900})
        finally:
            browser.close()


def _unsaved(m: MapPage, n: int, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while m.text("#unsaved") != str(n):
        if time.monotonic() > end:
            said = m.text("#message") if m.page.locator("#message").count() else ""
            raise AssertionError(f"unsaved changes shows {m.text('#unsaved')}, expected {n}; message: {said}")
        time.sleep(0.1)


def _shows_class(m: MapPage, label: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while m.page.locator("select").first.input_value() != label:
        if time.monotonic() > end:
            raise AssertionError(f"the class list shows {m.page.locator('select').first.input_value()!r}, "
                                 f"expected {label!r}")
        time.sleep(0.1)


def test_edit_undo_save_in_chromium(browser_page, tmp_path):
    src = tmp_path / "predictions.gpkg"
    _predictions().to_file(src)
    server = review(src, _scene())
    requests, sockets = [], []
    page = browser_page
    page.on("request", lambda r: requests.append(r.url))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        m = MapPage(page)
        m.open(server.url)
        _unsaved(m, 0)

        # 1. move a vertex: Poly Edit, press and hold A to show its vertices, drag its NE corner
        m.tool("Poly Edit")
        m.show_vertices(X0 + 450, Y0 + 450)
        m.drag((X0 + 600, Y0 + 600), (X0 + 660, Y0 + 690))
        m.wait_for(lambda d: max(d["xs"][0]) > X0 + 640, "the moved vertex")
        _unsaved(m, 1)

        # 2. change B's class: Tap tool, click B, pick the class
        m.tool("Tap")
        m.click(X0 + 1050, Y0 + 450)
        m.wait_for(lambda d: d["selected"] == [1], "B selected")
        _shows_class(m, "debris_covered_ice")  # as a user does: wait until the list shows B's class
        page.locator("select").first.select_option("clean_ice")
        m.wait_for(lambda d: d["label"][1] == "clean_ice", "B relabelled")
        _unsaved(m, 2)

        # 3. delete C
        m.click(X0 + 1650, Y0 + 450)
        m.wait_for(lambda d: d["selected"] == [2], "C selected")
        page.locator("button", has_text="Delete selected polygon").click()
        _unsaved(m, 3)

        # 4. delete E too, then undo that one step
        m.click(X0 + 350, Y0 + 1400)
        m.wait_for(lambda d: d["selected"] == [2], "E selected")
        page.locator("button", has_text="Delete selected polygon").click()
        _unsaved(m, 4)
        page.locator("button", has_text="Undo").click()
        _unsaved(m, 3)
        m.wait_for(lambda d: len(d["pid"]) == 3, "E back after undo")

        # 5. draw a new debris polygon: nothing selected, pick the class, Poly Draw
        m.click(X0 + 2300, Y0 + 1650)
        m.wait_for(lambda d: d["selected"] == [], "nothing selected")
        page.locator("select").first.select_option("debris_covered_ice")
        m.tool("Poly Draw")
        corners = [(1500, 1000), (2100, 1000), (2100, 1500), (1500, 1500)]
        m.press(X0 + corners[0][0], Y0 + corners[0][1])  # Bokeh 3.9: a press starts a polygon
        for cx, cy in corners[1:-1]:
            m.click(X0 + cx, Y0 + cy)
        m.press(X0 + corners[-1][0], Y0 + corners[-1][1])  # and a press ends it
        m.wait_for(lambda d: len(d["pid"]) == 4 and d["pid"][3] >= 4, "the drawn polygon, with its id")
        _unsaved(m, 4)

        page.locator("button", has_text="Save to").click()
        _unsaved(m, 0)
        assert "Saved" in m.text("#message")
    finally:
        server.stop()
    assert not server.running

    origin = urlsplit(server.url).netloc
    assert requests and all(urlsplit(u).netloc == origin for u in requests), requests
    assert sockets and all(urlsplit(u).netloc == origin for u in sockets), sockets

    out = tmp_path / "predictions.corrected.gpkg"
    assert set(dict(pyogrio.list_layers(out))) == {"predictions.corrected", "deleted"}
    kept = gpd.read_file(out, layer="predictions.corrected").set_index("name", drop=False)
    gone = gpd.read_file(out, layer="deleted")
    assert kept.crs.equals(_predictions().crs)
    assert sorted(kept["name"].dropna()) == ["A", "B", "E"] and gone["name"].tolist() == ["C"]
    assert kept.loc["A", "status"] == "edited" and kept.loc["B", "status"] == "edited"
    assert kept.loc["E", "status"] == "predicted" and len(kept.loc["E"].geometry.interiors) == 1
    assert kept.loc["E"].geometry.equals_exact(_predictions().geometry[3], 0)
    assert kept.loc["B", "class_name"] == "clean_ice" and kept.loc["B", "class"] == 1
    added = kept[kept["status"] == "added"]
    assert len(added) == 1 and added["class_name"].iloc[0] == "debris_covered_ice"
    assert added.geometry.iloc[0].area == pytest.approx(600 * 500, rel=0.05)  # clicks land within a pixel
    corner = np.array(kept.loc["A"].geometry.exterior.coords)
    dist = np.hypot(corner[:, 0] - (X0 + 660), corner[:, 1] - (Y0 + 690)).min()
    assert dist <= RES, f"the moved vertex is {dist:.1f} m from where it was dropped"
    assert not pd.isna(kept.loc["A", "edited_at"])
    assert src.exists() and len(gpd.read_file(src)) == 4  # the input is untouched


def _message(m: MapPage, text: str, timeout: float = 20.0) -> str:
    end = time.monotonic() + timeout
    while True:
        said = m.text("#message") if m.page.locator("#message").count() else ""
        if text in said:
            return said
        if time.monotonic() > end:
            raise AssertionError(f"the page never said {text!r}; it says {said!r}")
        time.sleep(0.1)


def test_invalid_outline_and_lost_holes_are_refused_on_the_page(browser_page, tmp_path):
    out = tmp_path / "corrected.gpkg"
    server = review(_predictions(), _scene(), out=out)
    try:
        m = MapPage(browser_page)
        m.open(server.url)
        m.tool("Poly Edit")
        # a bow-tie: A's NE corner dragged below its south edge
        m.show_vertices(X0 + 450, Y0 + 450)
        m.drag((X0 + 600, Y0 + 600), (X0 + 450, Y0 + 150))
        _unsaved(m, 1)
        browser_page.locator("button", has_text="Save to").click()
        said = _message(m, "Not saved")
        assert "Self-intersection" in said and not out.exists()
        browser_page.locator("button", has_text="Undo").click()
        _unsaved(m, 0)

        # E has a nunatak: pulling its NE corner into the hole is warned about, then refused
        m.show_vertices(X0 + 350, Y0 + 1400)
        m.drag((X0 + 900, Y0 + 1500), (X0 + 600, Y0 + 1200))
        _unsaved(m, 1)
        _message(m, "hole(s)")
        browser_page.locator("button", has_text="Save to").click()
        _message(m, "no longer fit inside")
        assert not out.exists()
        browser_page.locator("button", has_text="Undo").click()
        _unsaved(m, 0)
        browser_page.locator("button", has_text="Save to").click()
        _message(m, "Saved")
    finally:
        server.stop()
    kept = gpd.read_file(out, layer="corrected")
    assert (kept["status"] == "predicted").all() and len(kept.geometry[3].interiors) == 1


def test_missing_browser_skips_outside_ci_and_fails_in_ci(monkeypatch):
    import tests._browser as helper

    monkeypatch.setattr(helper.shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium found"):
        helper.chromium_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot run in CI"):
        helper.chromium_or_skip()
