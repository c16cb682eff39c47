"""Serve the review page on 127.0.0.1: :func:`review` and the :class:`ReviewServer` it returns."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import geopandas as gpd

from .._validate import check_int
from ..errors import InputError, ParameterError
from .image import display_image, same_crs
from .save import Prepared, check_output, default_output, prepare

__all__ = ["ReviewServer", "review"]


class ReviewServer:
    """A running review page: ``url``, ``out``, ``stop()``; also a context manager.

    Started by :func:`review`; the Bokeh server runs on its own thread and event loop,
    so a notebook or a test keeps control. Each browser tab gets its own edit history;
    every save writes ``out``.
    """

    def __init__(self, make_doc: Any, port: int, out: Path) -> None:
        self.out = out
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: Any = None  # tornado IOLoop of the server's thread
        self._server: Any = None  # bokeh.server.server.Server
        self._thread = threading.Thread(target=self._run, args=(make_doc, port), name="xglacier-review",
                                        daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        self.port: int = self._server.port  # the one bound, also when 0 asked for a free one
        self.url = f"http://127.0.0.1:{self.port}/"

    def _run(self, make_doc: Any, port: int) -> None:
        # Bokeh and Tornado load here, not with `import xglacier`
        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.server.server import Server
        from tornado.ioloop import IOLoop

        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            self._loop = IOLoop.current()
            self._server = Server({"/": Application(FunctionHandler(make_doc))}, port=port,
                                  address="127.0.0.1", io_loop=self._loop, num_procs=1,
                                  allow_websocket_origin=["127.0.0.1", "localhost"],
                                  websocket_max_message_size=512 * 1024 * 1024)
            self._server.start()
        except BaseException as err:  # handed to the caller's thread, raised there
            self._error = err
            self._ready.set()
            return
        self._ready.set()
        self._loop.start()
        self._loop.close(all_fds=True)

    @property
    def running(self) -> bool:
        """Whether the server still answers."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop the server and wait until its port is closed (idempotent)."""
        if not self._thread.is_alive():
            return

        def _halt() -> None:
            self._server.stop()
            self._loop.stop()

        self._loop.add_callback(_halt)
        self._thread.join(timeout=30)

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C stops it): what the command line does."""
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            self.stop()

    def __enter__(self) -> ReviewServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ReviewServer(url={self.url!r}, running={self.running})"


def _read_polygons(polygons: Any) -> tuple[gpd.GeoDataFrame, Path | None]:
    if isinstance(polygons, gpd.GeoDataFrame):
        return polygons, None
    if isinstance(polygons, (str, os.PathLike)):
        path = Path(polygons)
        if not path.exists():
            raise InputError(f"review: polygons file {str(path)!r} does not exist")
        return gpd.read_file(path, engine="pyogrio"), path
    raise InputError(f"review: polygons is a {type(polygons).__name__}; expected a GeoDataFrame or the "
                     "path of a vector file (GeoPackage, GeoJSON, shapefile)")


def review(polygons: gpd.GeoDataFrame | str | os.PathLike, image: Any, *,
           out: str | os.PathLike | None = None, port: int | None = None, bands: Any = None,
           time: Any = None, class_column: str | None = None, max_size: int = 1024) -> ReviewServer:
    """Serve a page on 127.0.0.1 to review and correct ``polygons`` over ``image``.

    The page shows the scene (an RGB composite of the bands present, or one band with a
    colour bar; coarsened so that its long side is at most ``max_size`` pixels) in its own
    CRS, with the polygons coloured by class, and lets an expert move, add and delete
    vertices, draw and delete polygons, change classes, undo, and save. Nothing is loaded
    from the internet. See ``docs/review.md``.

    Parameters
    ----------
    polygons
        Predicted polygons: a GeoDataFrame or a vector file (e.g. from
        :func:`xglacier.polygonize`), in the image's CRS. Never overwritten.
    image
        The scene: a path for :func:`xglacier.open_scenes`, a Dataset of bands or a DataArray.
    out
        Where a save writes the corrected polygons (``.gpkg``, default, or ``.geojson``).
        Default: ``<stem>.corrected.gpkg`` beside a polygons file; required for a GeoDataFrame.
    port
        TCP port on 127.0.0.1; default: a free one (see ``.url``).
    bands, time
        One band or three to show (default: true colour, else SWIR/NIR/red, else the
        first band); the date, when the image holds several.
    class_column
        Column of the class (default ``class_name``, else ``class``, else none).
    max_size
        Long side, in pixels, of the picture sent to the browser.

    Returns
    -------
    ReviewServer
        Running; ``.url`` to open, ``.stop()`` to end it.

    Examples
    --------
    ::

        server = xglacier.review("outlines.gpkg", "scenes/2020-08-16/", out="outlines.corrected.gpkg")
        print(server.url)   # open it in a browser, correct, save
        server.stop()
    """
    gdf, path = _read_polygons(polygons)
    if out is None:
        if path is None:
            raise ParameterError("review: out= is required when polygons is a GeoDataFrame; expected the "
                                 "path of the corrected file (.gpkg or .geojson)")
        out = default_output(path)
    out = Path(out)
    check_output(out, path)
    port = check_int("review", "port", 0 if port is None else port, low=0, high=65535)
    from bokeh.settings import settings

    if settings.resources(default="server") not in ("server", "server-dev", "inline"):
        raise ParameterError(f"review: BOKEH_RESOURCES={settings.resources(default='server')!r} would load "
                             "BokehJS from the internet; unset it (the page serves its own)")
    display = display_image(image, bands=bands, time=time, max_size=max_size)
    if gdf.crs is None:
        raise InputError("review: the polygons have no CRS; expected one (gdf.set_crs)")
    bounds = (display.x0, display.y0, display.x0 + display.width, display.y0 + display.height)
    if not same_crs(display.crs, gdf.crs, bounds, display.resolution / 100):
        raise InputError(f"review: the polygons' CRS ({gdf.crs.name}) is not the image's "
                         f"({display.crs.name}); reproject the polygons (gdf.to_crs(image.rio.crs)) "
                         "or open the image on their grid (open_scenes(..., crs=...))")
    prep: Prepared = prepare(gdf, resolution=display.resolution, class_column=class_column)

    def make_doc(doc: Any) -> None:  # a bokeh Document, one per browser tab
        from .app import ReviewPage

        ReviewPage(doc, prep, display, out, source_path=path)

    return ReviewServer(make_doc, port, out)
