"""The API reference lists every public name and every accessor method.

`docs/api.rst` is written by hand (grouped by stage); this test keeps it complete, so that a
new public function cannot ship without a page.
"""

from __future__ import annotations

import re
from pathlib import Path

import xglacier
from xglacier.accessor import DataArrayGlacier, DatasetGlacier

API = Path(__file__).resolve().parents[1] / "docs" / "api.rst"
# documented otherwise: the version string on every page, the errors module by automodule
NOT_LISTED = {"__version__", "errors"}


def _entries() -> set[str]:
    """Names listed in the autosummary blocks of the API page."""
    return set(re.findall(r"^   ([A-Za-z_][\w.]*)\s*$", API.read_text(), re.M))


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def test_every_public_name_has_a_page():
    missing = sorted(set(xglacier.__all__) - NOT_LISTED - _entries())
    assert not missing, f"docs/api.rst lacks {missing}"


def test_every_accessor_method_has_a_page():
    entries = _entries()
    for kind, cls in (("Dataset", DatasetGlacier), ("DataArray", DataArrayGlacier)):
        missing = sorted(m for m in _public(cls) if f"{kind}.glacier.{m}" not in entries)
        assert not missing, f"docs/api.rst lacks {kind}.glacier.{missing}"


def test_the_api_page_lists_nothing_that_does_not_exist():
    import xarray as xr

    for entry in _entries():
        if entry.startswith(("Dataset.glacier.", "DataArray.glacier.")):
            kind, _, method = entry.split(".")
            assert hasattr(getattr(xr, kind).glacier, method), entry
        else:
            # names of the sub-namespaces the page documents besides the top level
            homes = (xglacier, xglacier.models, xglacier.batch)
            assert any(hasattr(home, entry) for home in homes), entry


def test_the_errors_module_is_documented():
    assert ".. automodule:: xglacier.errors" in API.read_text()
