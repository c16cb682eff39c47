"""The Python blocks of the README and of the getting-started page run as written.

Blocks marked as needing the internet (a STAC API and its assets) are the only ones skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import matplotlib
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TOUR = ROOT / "docs" / "getting-started.md"
# a block preceded by this marker needs what tests cannot have (the internet, a STAC API)
NOT_RUN = "<!-- not run:"


def _blocks(path: Path) -> list[tuple[str, bool]]:
    """Every ```python block of a Markdown file and whether it is to be run."""
    text = path.read_text()
    out = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        before = text[:match.start()].rstrip().splitlines()[-1:]
        out.append((match.group(1), not (before and before[0].startswith(NOT_RUN))))
    return out


def _run(path: Path) -> dict:
    namespace: dict = {}
    for code, run in _blocks(path):
        if run:
            exec(compile(code, str(path), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("path", [README, TOUR], ids=["readme", "tour"])
def test_every_block_is_run_or_says_why_not(path):
    blocks = _blocks(path)
    assert blocks and blocks[0][1], f"{path.name}: its first block must run"
    for line in path.read_text().splitlines():
        if line.startswith(NOT_RUN):
            assert "internet" in line or "STAC" in line, line


def test_readme_taste_runs(capsys):
    ns = _run(README)
    area = ns["area_km2"]
    assert area.dims == ("time",) and area.sizes["time"] == ns["ndsi"].sizes["time"]
    # every pixel of the sample is 30 m: the area is a count of snow/ice pixels, within the scene
    scene_km2 = ns["cube"].sizes["y"] * ns["cube"].sizes["x"] * 900 / 1e6
    assert float(area.min()) > 0 and float(area.max()) <= scene_km2
    assert "snow_mask" in capsys.readouterr().out
    # winter snow covers more than late summer, when only the glacier is left
    winter, summer = (float(area.sel(time=t)) for t in ("2020-01-01", "2020-07-01"))
    assert winter > summer


@pytest.mark.slow
# winter scenes of the sample are too uniform to align: the tour's user sees that warning
@pytest.mark.filterwarnings("default::xglacier.errors.AlignmentWarning")
# quarterly pairs of a 128 px scene can sit at their noise floor: the user is told so
@pytest.mark.filterwarnings("default::xglacier.errors.FlowNoiseWarning")
def test_tour_blocks_run(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # the tour writes a checkpoint and a GeoPackage
    namespace = _run(TOUR)
    assert (tmp_path / "salstm.json").is_file() and (tmp_path / "salstm.safetensors").is_file()
    fc = namespace["fc"]
    assert fc.dims == ("lead_time", "y", "x") and fc.sizes["lead_time"] == 4
    assert float(fc.isel(lead_time=0).notnull().mean()) == 1.0
    # the tour's U-Net, trained on other glaciers, finds this one: both ice classes are outlined
    outlines = gpd.read_file(tmp_path / "glaciers.gpkg")
    assert set(outlines["class_name"]) >= {"clean_ice", "debris_covered_ice"}
