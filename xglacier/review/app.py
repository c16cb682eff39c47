"""The review page: one Bokeh document per browser tab, its edit history and its save button.

Plain Bokeh (its JavaScript ships in the wheel and the server serves it), so the page
needs nothing from the internet. The polygons live in one ``ColumnDataSource`` that
Bokeh's ``PolyDrawTool`` / ``PolyEditTool`` change in the browser; every change comes
back to Python, which groups changes arriving within :data:`SETTLE_MS` into one undo
step and gives drawn polygons ids. Saving is :func:`~xglacier.review.save.corrected` +
:func:`~xglacier.review.save.write_corrected` on that state.
"""

from __future__ import annotations

import html
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    Button,
    ColorBar,
    ColumnDataSource,
    Div,
    LinearColorMapper,
    PolyDrawTool,
    PolyEditTool,
    Select,
    TapTool,
)
from bokeh.palettes import Category10_10, Greys256
from bokeh.plotting import figure
from bokeh.transform import factor_cmap

from ..errors import ReviewError
from .image import Display
from .save import Edits, Prepared, corrected, count_changes, write_corrected

__all__ = ["PLOT_SIZE", "SETTLE_MS", "ReviewPage"]

#: Changes arriving closer together than this (a vertex drag) make one undo step.
SETTLE_MS = 300
#: Long side of the map in screen pixels.
PLOT_SIZE = 640
_HELP = """<b>Edit</b>: pick the <i>Poly Edit</i> tool, press and hold a polygon to show its vertices,
drag one to move it; press and hold a vertex, then click to add vertices after it (Esc ends);
click a vertex and press Backspace to delete it. <b>Draw</b>: <i>Poly Draw</i> tool, press and hold
to start, click to add vertices, press and hold to finish. <b>Select</b> a polygon with the
<i>Tap</i> tool to change its class or delete it. Holes (nunataks) are drawn dashed: they are
kept, and a save is refused if an edited outline no longer holds them."""


class ReviewPage:
    """The page of one browser tab: plot, widgets, undo history, save."""

    def __init__(self, doc: Document, prep: Prepared, display: Display, out: Path,
                 source_path: str | os.PathLike | None = None) -> None:
        self.doc, self.prep, self.out, self.source_path = doc, prep, Path(out), source_path
        start = Edits.unedited(prep)
        self.committed, self.saved = start, start
        self.history: list[Edits] = []
        self.next_pid = len(prep.parts)
        self._busy, self._pending = False, None
        self.source = ColumnDataSource(self._columns(start),
                                       default_values={"label": prep.labels[0], "pid": -1})
        self.holes = ColumnDataSource({"xs": [], "ys": [], "label": []})
        self.plot = self._plot(display)
        self.select = Select(title="Class of the selected polygon (or of new ones)",
                             value=prep.labels[0], options=list(prep.labels), name="class")
        self.delete = Button(label="Delete selected polygon", name="delete")
        self.undo = Button(label="Undo", name="undo")
        self.save = Button(label=f"Save to {self.out.name}", button_type="primary", name="save")
        self.changes = Div(text="", name="changes")
        self.message = Div(text="", name="message", width=340)
        self.source.on_change("data", self._changed)
        self.source.selected.on_change("indices", self._selected)
        self.select.on_change("value", self._relabel)
        self.delete.on_click(self._delete)
        self.undo.on_click(self._undo)
        self.save.on_click(self._save)
        self._refresh()
        side = column(self.select, self.delete, self.undo, self.save, self.changes, self.message,
                      Div(text=_HELP, width=340), width=360)
        doc.add_root(row(self.plot, side))
        doc.title = f"xglacier review: {self.out.name}"

    # -- building -------------------------------------------------------------------------
    def _plot(self, d: Display) -> Any:
        scale = PLOT_SIZE / max(d.width, d.height)
        p = figure(frame_width=round(d.width * scale), frame_height=round(d.height * scale),
                   x_range=(d.x0, d.x0 + d.width), y_range=(d.y0, d.y0 + d.height), match_aspect=True,
                   tools="pan,wheel_zoom,box_zoom,reset", x_axis_label=f"x ({_unit(d)})",
                   y_axis_label=f"y ({_unit(d)})", title=f"{' / '.join(d.bands)}"
                   + (f" (shown at 1/{d.factor} resolution)" if d.factor > 1 else ""), name="map")
        p.axis.formatter.use_scientific = False
        if d.kind == "rgb":
            p.image_rgba(image=[d.data], x=d.x0, y=d.y0, dw=d.width, dh=d.height)
        else:
            mapper = LinearColorMapper(palette=Greys256, low=d.low, high=d.high, nan_color=(0, 0, 0, 0))
            p.image(image=[d.data], x=d.x0, y=d.y0, dw=d.width, dh=d.height, color_mapper=mapper)
            p.add_layout(ColorBar(color_mapper=mapper, title=d.bands[0]), "right")
        colours = factor_cmap("label", list(Category10_10[: len(self.prep.labels)]), list(self.prep.labels))
        patches = p.patches("xs", "ys", source=self.source, fill_color=colours, line_color=colours,
                            fill_alpha=0.25, line_width=3, legend_field="label")
        p.multi_line("xs", "ys", source=self.holes, line_dash="dashed", line_width=2, line_color="black")
        vertices = p.scatter([], [], size=10, fill_color="white", line_color="black")
        draw = PolyDrawTool(renderers=[patches], drag=False, description="Poly Draw: draw a polygon")
        edit = PolyEditTool(renderers=[patches], vertex_renderer=vertices,
                            description="Poly Edit: move, add and delete vertices")
        p.add_tools(TapTool(renderers=[patches]), draw, edit)
        p.toolbar.active_drag = None
        p.legend.location = "top_left"
        return p

    @staticmethod
    def _columns(e: Edits) -> dict[str, list[Any]]:
        return {"xs": [list(x) for x in e.xs], "ys": [list(y) for y in e.ys], "label": list(e.labels),
                "pid": list(e.pids)}

    def _set(self, e: Edits) -> None:
        self._busy = True
        try:
            self.source.data = self._columns(e)
            self.source.selected.indices = []
        finally:
            self._busy = False

    def _read(self) -> Edits:
        d = self.source.data
        return Edits([list(map(float, x)) for x in d["xs"]], [list(map(float, y)) for y in d["ys"]],
                     [str(c) for c in d["label"]], [int(p) for p in d["pid"]], dict(self.committed.times))

    # -- history ------------------------------------------------------------------------
    def _changed(self, attr: str, old: Any, new: Any) -> None:
        if self._busy:
            return
        if self._pending is not None:
            self.doc.remove_timeout_callback(self._pending)
        self._pending = self.doc.add_timeout_callback(self._commit, SETTLE_MS)

    def _commit(self) -> None:
        """Make the browser's current polygons one undo step (ids for drawn ones, edit times)."""
        self._pending = None
        now = self._read()
        fresh = [i for i, p in enumerate(now.pids) if p < 0]
        if fresh:
            for i in fresh:
                now.pids[i], self.next_pid = self.next_pid, self.next_pid + 1
            self._busy = True
            try:
                self.source.patch({"pid": [(i, now.pids[i]) for i in fresh]})
            finally:
                self._busy = False
        before = {p: (x, y, c) for x, y, c, p in zip(self.committed.xs, self.committed.ys,
                                                     self.committed.labels, self.committed.pids, strict=True)}
        after = {p: (x, y, c) for x, y, c, p in zip(now.xs, now.ys, now.labels, now.pids, strict=True)}
        changed = [p for p in set(before) | set(after) if before.get(p) != after.get(p)]
        if not changed:
            return
        stamp = datetime.now(timezone.utc)
        now.times.update(dict.fromkeys(changed, stamp))
        self.history.append(self.committed)
        self.committed = now
        parts = self.prep.parts
        holed = [p for p in changed if p in after and p < len(parts) and parts[p].interiors]
        if holed:
            self._say(f"This polygon has {len(self.prep.parts[holed[0]].interiors)} hole(s) (nunataks, "
                      "dashed): they are kept around the edited outline, and a save is refused if they "
                      "no longer fit inside it.", "darkorange")
        self._refresh()

    def _flush(self) -> None:
        if self._pending is not None:
            self.doc.remove_timeout_callback(self._pending)
            self._commit()

    def _undo(self) -> None:
        self._flush()
        if not self.history:
            self._say("Nothing to undo.", "gray")
            return
        self.committed = self.history.pop()
        self._set(self.committed)
        self._say(f"Undone; {len(self.history)} more step(s) can be undone.", "gray")
        self._refresh()

    def _refresh(self) -> None:
        n = count_changes(self.saved, self.committed)
        self.changes.text = f"<b>Unsaved changes: <span id='unsaved'>{n}</span></b>"
        xs, ys, labels = [], [], []
        for pid, label in zip(self.committed.pids, self.committed.labels, strict=True):
            if pid < len(self.prep.parts):
                for ring in self.prep.parts[pid].interiors:
                    xs.append(list(ring.xy[0]))
                    ys.append(list(ring.xy[1]))
                    labels.append(label)
        self.holes.data = {"xs": xs, "ys": ys, "label": labels}

    # -- widgets --------------------------------------------------------------------------
    def _selected(self, attr: str, old: Any, new: list[int]) -> None:
        if self._busy or not new:
            return
        label = self.source.data["label"][new[0]]
        if label != self.select.value:
            self._busy = True
            try:
                self.select.value = label
            finally:
                self._busy = False

    def _relabel(self, attr: str, old: str, new: str) -> None:
        if self._busy:
            return
        self.source.default_values = {"label": new, "pid": -1}
        picked = list(self.source.selected.indices)
        if picked:
            self._flush()
            self._busy = True
            try:
                self.source.patch({"label": [(i, new) for i in picked]})
            finally:
                self._busy = False
            self._commit()

    def _delete(self) -> None:
        self._flush()
        picked = set(self.source.selected.indices)
        if not picked:
            self._say("Select a polygon first (Tap tool).", "gray")
            return
        now = self._read()
        keep = [i for i in range(len(now.pids)) if i not in picked]
        self._set(Edits([now.xs[i] for i in keep], [now.ys[i] for i in keep], [now.labels[i] for i in keep],
                        [now.pids[i] for i in keep], now.times))
        self._commit()

    def _save(self) -> None:
        self._flush()
        try:
            kept, deleted = corrected(self.prep, self.committed)
            write_corrected(kept, deleted, self.out, source=self.source_path)
        except ReviewError as err:
            self._say(f"Not saved. {err}", "crimson")
            return
        counts = kept["status"].value_counts()
        self.saved = self.committed
        self._refresh()
        self._say(f"Saved {len(kept)} polygons ({counts.get('edited', 0)} edited, {counts.get('added', 0)} "
                  f"added) and {len(deleted)} deleted to {self.out} at "
                  f"{datetime.now(timezone.utc):%H:%M:%S} UTC.", "darkgreen")

    def _say(self, text: str, colour: str) -> None:
        self.message.text = f"<p style='color:{colour}' id='message'>{html.escape(text)}</p>"


def _unit(d: Display) -> str:
    unit = d.crs.axis_info[0].unit_name if d.crs.axis_info else "units"
    return {"metre": "m"}.get(unit, unit)
