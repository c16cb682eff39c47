"""Review and correct predicted glacier outlines in the browser, offline.

:func:`review` serves a page on 127.0.0.1 that shows a scene with the polygons over it,
lets an expert move, add and delete vertices, draw and delete polygons, change classes
and undo, and saves the corrected map (GeoPackage or GeoJSON) with an audit trail; see
``docs/review.md``. The save logic lives in :mod:`xglacier.review.save` and needs no browser.

The package itself can be called like :func:`review`, so that ``xglacier.review(polygons,
image, out=...)`` works while ``xglacier.review.save`` stays importable (a function of the
same name would hide the package). Bokeh loads only when a server starts.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .server import ReviewServer, review

__all__ = ["ReviewServer", "review"]


class _CallablePackage(types.ModuleType):
    """This package, callable as :func:`review`."""

    def __call__(self, *args: Any, **kwargs: Any) -> ReviewServer:
        return review(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
