"""The gallery and the docstrings it is built from: every example is placed in the gallery's
order, every link from a user-guide page names an example that exists, and no Returns
section is written in a way numpydoc renders as a stack of bold type lines."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import pytest
from numpydoc.docscrape import NumpyDocString

import xglacier
import xglacier.batch

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _order() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("_gallery_order", DOCS / "_gallery_order.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ORDER


def test_every_example_has_its_place_in_the_gallery_order():
    examples = {p.name for p in (DOCS / "examples").glob("plot_*.py")}
    order = _order()
    assert len(set(order)) == len(order), "docs/_gallery_order.py lists an example twice"
    assert examples == set(order), (f"docs/_gallery_order.py lacks {sorted(examples - set(order))}, "
                                    f"lists missing files {sorted(set(order) - examples)}")


def test_every_example_opens_with_a_title():
    for path in sorted((DOCS / "examples").glob("plot_*.py")):
        lines = path.read_text().splitlines()
        assert lines[0] == '"""' and lines[2] == "=" * len(lines[1]), f"{path.name}: no title block"


def test_gallery_links_in_the_pages_name_existing_examples():
    examples = {p.stem for p in (DOCS / "examples").glob("plot_*.py")}
    linked = set()
    for page in DOCS.glob("*.md"):
        linked |= set(re.findall(r"sphx_glr_gallery_(plot_\w+)\.py", page.read_text()))
        linked |= set(re.findall(r"\(gallery/(plot_\w+)\.rst\)", page.read_text()))
    assert linked, "no page links the gallery"
    assert linked <= examples, f"links to examples that do not exist: {sorted(linked - examples)}"


def _public_functions():
    names = {f"xglacier.{n}": getattr(xglacier, n) for n in xglacier.__all__ if not n.startswith("_")}
    names.update({f"xglacier.batch.{n}": getattr(xglacier.batch, n) for n in xglacier.batch.__all__})
    return sorted((k, v) for k, v in names.items() if inspect.isfunction(v) and v.__doc__)


@pytest.mark.parametrize(("name", "func"), _public_functions(), ids=lambda v: v if isinstance(v, str) else "")
def test_returns_sections_have_a_type_line(name, func):
    # A description written straight under "Returns" (no type line, no indent) is read by
    # numpydoc as one type per line: the page shows each line as a bold heading.
    returns = NumpyDocString(inspect.getdoc(func))["Returns"]
    untyped = [r.type for r in returns if not r.name and not r.desc]
    assert len(untyped) < 2, f"{name}: Returns needs a type line with the description indented under it"
