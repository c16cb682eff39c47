"""Class names and codes: the ``classes=`` keyword and the CF flag attributes of label maps.

Label maps hold integer class codes (0 = background); their names travel as CF
``flag_values`` / ``flag_meanings`` attributes. Functions take ``classes=`` either as
names in code order, ``{name: code}`` or ``{code: name}`` (:data:`xglacier.datasets.CLASSES`
can be passed as is); these helpers read every form the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..datasets import CLASSES
from ..errors import ParameterError

__all__ = ["NODATA", "class_names", "class_table", "flag_attrs", "flag_names", "is_code"]

#: Label of pixels without a class: nodata in a predicted label map (their inputs are
#: missing) and "ignore" in training labels and scores. Never a class code.
NODATA = 255


def is_code(value: Any) -> bool:
    """Whether ``value`` is a class code (a Python or NumPy integer, not a bool) rather than a name.

    Examples
    --------
    >>> is_code(np.uint8(2)), is_code(True), is_code("clean_ice")
    (True, False, False)
    """
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def class_table(func: str, classes: Mapping[Any, Any] | None) -> dict[str, int]:
    """``classes`` as ``{name: code}`` (uint8 codes); ``{}`` for ``None``.

    Accepts ``{name: code}`` or ``{code: name}``; :class:`ParameterError` (naming
    ``func``) for anything else, codes outside 0-255 or a code given to several names.

    Examples
    --------
    >>> class_table("rasterize", {1: "clean_ice", 2: "debris_covered_ice"})
    {'clean_ice': 1, 'debris_covered_ice': 2}
    >>> class_table("rasterize", {"clean_ice": 300})
    Traceback (most recent call last):
    ...
    xglacier.errors.ParameterError: rasterize: class codes {'clean_ice': 300} outside 0-255; expected \
uint8 codes (0 = background)
    """
    if classes is None:
        return {}
    if not isinstance(classes, Mapping) or not classes:
        raise ParameterError(
            f"{func}: classes={classes!r}; expected a non-empty mapping of class names to codes, "
            "e.g. {'clean_ice': 1, 'debris_covered_ice': 2} (or codes to names, as xglacier.datasets.CLASSES)"
        )
    items = list(classes.items())
    if all(isinstance(k, str) and is_code(v) for k, v in items):
        table = {k: int(v) for k, v in items}
    elif all(is_code(k) and isinstance(v, str) for k, v in items):
        table = {v: int(k) for k, v in items}
    else:
        raise ParameterError(
            f"{func}: classes={dict(classes)!r}; expected names (str) mapped to integer codes, "
            "or integer codes mapped to names"
        )
    bad = {k: v for k, v in table.items() if not 0 <= v <= 255}
    if bad:
        raise ParameterError(f"{func}: class codes {bad} outside 0-255; expected uint8 codes "
                             "(0 = background)")
    codes = list(table.values())
    if len(set(codes)) != len(codes):
        raise ParameterError(f"{func}: classes={dict(classes)!r} gives the same code to several names")
    return table


def class_names(func: str, classes: Any, n: int | None = None) -> list[str]:
    """Class names in code order from names, or ``{code: name}`` with codes ``0..K-1``.

    ``None`` means :data:`xglacier.datasets.CLASSES`; with ``n``, exactly ``n`` names are
    expected (one per row of a confusion matrix).

    Examples
    --------
    >>> class_names("scores", {1: "clean_ice", 0: "background"})
    ['background', 'clean_ice']
    >>> class_names("scores", ["background", "glacier"], 3)
    Traceback (most recent call last):
    ...
    xglacier.errors.ParameterError: scores: classes=['background', 'glacier'] has 2 names; the \
confusion matrix has 3 classes
    """
    if classes is None:
        classes = CLASSES
    if isinstance(classes, Mapping):
        keys = sorted(int(k) for k in classes)
        if keys != list(range(len(keys))):
            raise ParameterError(f"{func}: classes={dict(classes)}; expected keys 0..{len(keys) - 1}")
        names = [str(classes[k]) for k in keys]
    elif isinstance(classes, str) or not isinstance(classes, Sequence):
        raise ParameterError(f"{func}: classes={classes!r}; expected a sequence of class names or a dict "
                             "{value: name}")
    else:
        names = [str(c) for c in classes]
    if n is not None and len(names) != n:
        raise ParameterError(f"{func}: classes={names} has {len(names)} names; the confusion matrix has "
                             f"{n} classes")
    return names


def _meaning(name: str) -> str:
    return "_".join(str(name).split())  # CF flag_meanings are blank-separated words


def flag_attrs(names: Mapping[int, str]) -> dict[str, Any]:
    """CF ``flag_values`` / ``flag_meanings`` of ``{code: name}``, with 0 as ``background``.

    Examples
    --------
    >>> flag_attrs({2: "debris covered ice", 1: "clean_ice"})
    {'flag_values': [0, 1, 2], 'flag_meanings': 'background clean_ice debris_covered_ice'}
    """
    codes = sorted({0, *names})
    meanings = {0: "background", **dict(names)}
    return {
        "flag_values": [int(c) for c in codes],
        "flag_meanings": " ".join(_meaning(meanings[c]) for c in codes),
    }


def flag_names(attrs: Mapping[str, Any]) -> dict[int, str]:
    """``{code: name}`` from CF flag attributes; ``{}`` when absent or inconsistent.

    Examples
    --------
    >>> flag_names({"flag_values": [0, 1], "flag_meanings": "background glacier"})
    {0: 'background', 1: 'glacier'}
    >>> flag_names({"flag_values": [0, 1], "flag_meanings": "glacier"})
    {}
    """
    values, meanings = attrs.get("flag_values"), attrs.get("flag_meanings")
    if values is None or not isinstance(meanings, str):
        return {}
    values = list(np.atleast_1d(values))
    words = meanings.split()
    if len(words) != len(values):
        return {}
    return {int(v): w for v, w in zip(values, words, strict=True)}
