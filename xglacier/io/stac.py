"""STAC in one place: :func:`search` (module ``search``) and :func:`load` (module ``load``).

>>> from xglacier.io.stac import PLANETARY_COMPUTER
>>> PLANETARY_COMPUTER.startswith("https://")
True
"""

from .load import load
from .search import PLANETARY_COMPUTER, check_bbox, search

__all__ = ["PLANETARY_COMPUTER", "check_bbox", "load", "search"]
