"""The README's Python tour runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _tour() -> str:
    text = README.read_text()
    section = text[text.index("## A short tour"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README has no Python tour"
    return match.group(1)


@pytest.mark.slow
# winter scenes of the sample are too uniform to align: the tour's user sees that warning
@pytest.mark.filterwarnings("default::xglacier.errors.AlignmentWarning")
def test_readme_tour_runs(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # the tour writes a checkpoint and a GeoPackage
    namespace: dict = {}
    exec(compile(_tour(), str(README), "exec"), namespace)  # noqa: S102 - the point of the test
    assert (tmp_path / "salstm.json").is_file() and (tmp_path / "salstm.safetensors").is_file()
    assert (tmp_path / "glaciers.gpkg").is_file()
    fc = namespace["fc"]
    assert fc.dims == ("lead_time", "y", "x") and fc.sizes["lead_time"] == 4
    assert float(fc.isel(lead_time=0).notnull().mean()) == 1.0
