"""Driving the review page in a real headless Chromium (Playwright on the system's ``chromium``).

Edits go through the mouse on the map canvas and clicks on the widgets, as a user does.
Page JavaScript is used only to *read* where things are drawn: the plot's data-to-screen
mapping (to know at which pixel a vertex sits) and the polygons the browser holds (to wait
until it has taken an edit); it never changes the page's state.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

#: Bokeh's figure view of the map, found by the model's name.
_MAP_VIEW = "[...Bokeh.index.all_views()].find(v => v.model.name === 'map')"


def chromium_or_skip() -> str:
    """Path of the system Chromium; a skip outside CI, a failure in CI (``CI=true``) when absent."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        path = None
        why = "playwright is not installed (pip install -e '.[test]')"
    else:
        path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        why = "no Chromium found on PATH (Debian: apt-get install chromium)"
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser test cannot run in CI: {why}")
    pytest.skip(f"browser test skipped: {why}")


class MapPage:
    """A Playwright page showing the review map, with helpers to act on it like a user."""

    def __init__(self, page) -> None:
        self.page = page
        self._last_tap = 0.0

    def _spaced(self) -> None:
        """Wait so that this click is not taken as the second half of a double click (300 ms)."""
        wait = self._last_tap + 0.4 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_tap = time.monotonic()

    def open(self, url: str, timeout: float = 30.0) -> float:
        """Load the page; seconds until the map is drawn (canvas, picture and polygons)."""
        t0 = time.perf_counter()
        self.page.goto(url)
        self.page.wait_for_function(
            f"""() => {{ const v = window.Bokeh && Bokeh.index && {_MAP_VIEW};
                return v && v.has_finished() && v.frame.bbox.width > 0; }}""",
            timeout=timeout * 1000)
        return time.perf_counter() - t0

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        """Page pixel of map coordinates (x, y), from the plot's own scales."""
        return tuple(self.page.evaluate(
            f"""([x, y]) => {{ const v = {_MAP_VIEW};
                const r = v.canvas_view.el.getBoundingClientRect();
                return [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)]; }}""",
            [x, y]))

    def polygons(self) -> dict:
        """The polygons the browser holds now (read only)."""
        return self.page.evaluate(
            f"""() => {{ const v = {_MAP_VIEW};
                const r = v.model.renderers.find(r => r.glyph.type === 'Patches');
                const d = r.data_source.data;
                return {{xs: d.xs.map(a => Array.from(a)), ys: d.ys.map(a => Array.from(a)),
                        label: Array.from(d.label), pid: Array.from(d.pid),
                        selected: Array.from(r.data_source.selected.indices)}}; }}""")

    def vertices(self) -> int:
        """How many vertices the Poly Edit tool shows (read only)."""
        return self.page.evaluate(
            f"""() => {{ const v = {_MAP_VIEW};
                const r = v.model.renderers.find(r => r.glyph.type === 'Scatter');
                return r.data_source.get_length() ?? 0; }}""")

    def show_vertices(self, x: float, y: float, timeout: float = 20.0) -> None:
        """Poly Edit: press and hold inside a polygon until its vertices are shown."""
        self.press(x, y)
        end = time.monotonic() + timeout
        while not self.vertices():
            if time.monotonic() > end:
                raise AssertionError(f"no vertex shown after a press at ({x}, {y})")
            time.sleep(0.05)

    def tool_active(self, description: str) -> bool:
        """Whether the toolbar tool whose tooltip starts with ``description`` is active (read only)."""
        return self.page.evaluate(
            f"""(d) => {{ const v = {_MAP_VIEW};
                const t = v.model.toolbar.tools.find(t => (t.description ?? t.tool_name).startsWith(d));
                return t.active; }}""", description)

    def tool(self, description: str) -> None:
        """Make a toolbar tool active by clicking its button (a click on an active one turns it off)."""
        button = self.page.locator(f"[title^='{description}']").first
        for _ in range(2):
            if self.tool_active(description):
                return
            button.click()
        assert self.tool_active(description), f"the {description} tool does not turn on"

    def click(self, x: float, y: float) -> None:
        self._spaced()
        self.page.mouse.click(*self.to_screen(x, y))

    def double_click(self, x: float, y: float) -> None:
        self._spaced()
        self.page.mouse.dblclick(*self.to_screen(x, y))
        self._last_tap = time.monotonic()

    def press(self, x: float, y: float, hold: float = 0.5) -> None:
        """Press and hold (Bokeh's *press* gesture: 300 ms without moving)."""
        self._spaced()
        self.page.mouse.move(*self.to_screen(x, y))
        self.page.mouse.down()
        time.sleep(hold)
        self.page.mouse.up()
        self._last_tap = time.monotonic()

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
        self._spaced()
        (x0, y0), (x1, y1) = self.to_screen(*start), self.to_screen(*end)
        self.page.mouse.move(x0, y0)
        self.page.mouse.down()
        self.page.mouse.move(x1, y1, steps=steps)
        self.page.mouse.up()

    def wait_for(self, check, what: str, timeout: float = 20.0) -> dict:
        """Poll the browser's polygons until ``check(polygons)`` holds."""
        end = time.monotonic() + timeout
        while True:
            data = self.polygons()
            if check(data):
                return data
            if time.monotonic() > end:
                shown = {k: v if k != "xs" and k != "ys" else f"{len(v)} rings" for k, v in data.items()}
                raise AssertionError(f"the page never showed {what}; polygons now: {str(shown)[:600]}")
            time.sleep(0.1)

    def text(self, selector: str) -> str:
        return self.page.locator(selector).first.inner_text()
