"""Make ``docs/images/review.png``: the review page on the Athabasca HLS L30 crop of 2020-08-16.

Predictions to review: the NDSI rule (NDSI > 0.4) polygonized with ``xglacier.polygonize``
(simplified by 30 m, regions under 2 ha dropped); the glacier's vertices are shown as the
Poly Edit tool shows them. Needs the shared data folder (``XGLACIER_DATA``, default
``../shared/data`` from the project root) and the system's Chromium; run from the project
root: ``python docs/images/review_screenshot.py``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import xglacier  # noqa: E402
from tests._browser import MapPage  # noqa: E402


def main() -> None:
    data = Path(os.environ.get("XGLACIER_DATA", ROOT.parent / "shared" / "data")) / "athabasca"
    scene = xglacier.open_scenes(str(data / "athabasca_2020229_*_L30.tif")).isel(time=0)
    labels = (xglacier.ndsi(scene) > 0.4).astype("uint8").rio.write_crs(scene.rio.crs)
    predictions = xglacier.polygonize(labels, classes={"clean_ice": 1}, simplify=30, min_area=20_000)
    folder = Path(tempfile.mkdtemp())
    from playwright.sync_api import sync_playwright

    from xglacier.review import review

    server = review(predictions, scene, out=folder / "corrected.gpkg")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
            page = browser.new_page(viewport={"width": 1180, "height": 720})
            m = MapPage(page)
            m.open(server.url)
            m.tool("Poly Edit")
            x, y = predictions.geometry[0].representative_point().coords[0]
            m.press(x, y)
            page.wait_for_timeout(800)
            page.screenshot(path=str(ROOT / "docs" / "images" / "review.png"))
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
