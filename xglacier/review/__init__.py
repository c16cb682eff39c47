"""Review and correct predicted glacier outlines in the browser, offline.

:func:`review` serves a page on 127.0.0.1 that shows a scene with the polygons over it,
lets an expert move, add and delete vertices, draw and delete polygons, change classes
and undo, and saves the corrected map (GeoPackage or GeoJSON) with an audit trail; see
``docs/review.md``. The save logic lives in :mod:`xglacier.review.save` and needs no browser.
"""

from __future__ import annotations

from .server import ReviewServer, review

__all__ = ["ReviewServer", "review"]
