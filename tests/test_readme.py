"""The README's Python blocks run as written (those marked as needing the internet excepted)."""

from __future__ import annotations

import re
from pathlib import Path

import geopandas as gpd
import matplotlib
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# a block preceded by this marker needs what tests cannot have (the internet, a STAC API)
NOT_RUN = "<!-- not run:"


def _blocks() -> list[tuple[str, bool]]:
    """Every ```python block of the README and whether it is to be run."""
    text = README.read_text()
    out = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        before = text[:match.start()].rstrip().splitlines()[-1:]
        out.append((match.group(1), not (before and before[0].startswith(NOT_RUN))))
    return out


def test_every_block_is_run_or_says_why_not():
    blocks = _blocks()
    assert len(blocks) >= 2
    assert blocks[0][1], "the tour itself must run"
    text = README.read_text()
    for line in text.splitlines():
        if line.startswith(NOT_RUN):
            assert "internet" in line or "STAC" in line, line


@pytest.mark.slow
# winter scenes of the sample are too uniform to align: the tour's user sees that warning
@pytest.mark.filterwarnings("default::xglacier.errors.AlignmentWarning")
# quarterly pairs of a 128 px scene can sit at their noise floor: the user is told so
@pytest.mark.filterwarnings("default::xglacier.errors.FlowNoiseWarning")
def test_readme_blocks_run(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # the tour writes a checkpoint and a GeoPackage
    namespace: dict = {}
    for code, run in _blocks():
        if run:
            exec(compile(code, str(README), "exec"), namespace)
    assert (tmp_path / "salstm.json").is_file() and (tmp_path / "salstm.safetensors").is_file()
    fc = namespace["fc"]
    assert fc.dims == ("lead_time", "y", "x") and fc.sizes["lead_time"] == 4
    assert float(fc.isel(lead_time=0).notnull().mean()) == 1.0
    # the tour's U-Net, trained on other glaciers, finds this one: both ice classes are outlined
    outlines = gpd.read_file(tmp_path / "glaciers.gpkg")
    assert set(outlines["class_name"]) >= {"clean_ice", "debris_covered_ice"}
