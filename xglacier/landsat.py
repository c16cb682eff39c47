"""Facts about Landsat Collection 2 Level-2 products, kept in one place.

The QA_PIXEL bit layout follows the USGS Landsat 8-9 OLI/TIRS Collection 2 Level-2
product guide; the reflectance scaling is the Collection 2 surface-reflectance one.

>>> from xglacier.landsat import QA_BITS, flag_mask
>>> QA_BITS["cloud"]
3
>>> flag_mask(["cloud", "cloud_shadow"])
24
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import ParameterError

#: Reflective bands of the data model, by STAC ``common_name``, in wavelength order.
REFLECTANCE_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir08", "swir16", "swir22")

#: Name of the quality band.
QA_BAND = "qa_pixel"

#: Collection 2 Level-2 surface reflectance: ``reflectance = DN * SCALE + OFFSET``.
SR_SCALE = 0.0000275
SR_OFFSET = -0.2

#: Smallest and largest reflectance a scaled C2 L2 product can hold (DN 1 .. 65535).
REFLECTANCE_RANGE = (SR_OFFSET, 65535 * SR_SCALE + SR_OFFSET)

#: Single-bit flags of QA_PIXEL.
QA_BITS: dict[str, int] = {
    "fill": 0,
    "dilated_cloud": 1,
    "cirrus": 2,
    "cloud": 3,
    "cloud_shadow": 4,
    "snow": 5,
    "clear": 6,
    "water": 7,
}

#: Two-bit confidence fields of QA_PIXEL (lowest bit); values 0 none, 1 low, 2 medium, 3 high.
QA_CONFIDENCE_BITS: dict[str, int] = {
    "cloud_confidence": 8,
    "cloud_shadow_confidence": 10,
    "snow_ice_confidence": 12,
    "cirrus_confidence": 14,
}

#: Flags that make a pixel unusable by default; snow and water are never in this set.
DEFAULT_MASK_FLAGS: tuple[str, ...] = ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow")


def flag_mask(flags: Iterable[str]) -> int:
    """Return the QA_PIXEL bit mask that has the named single-bit flags set.

    Parameters
    ----------
    flags
        Names from :data:`QA_BITS`.

    Examples
    --------
    >>> flag_mask(["fill"])
    1
    """
    mask = 0
    for name in flags:
        if name not in QA_BITS:
            raise ParameterError(
                f"unknown QA_PIXEL flag {name!r}; expected one of {sorted(QA_BITS)}"
            )
        mask |= 1 << QA_BITS[name]
    return mask
