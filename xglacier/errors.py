"""Exceptions and warnings raised by xglacier.

Every error names the variable, dimension, file or parameter at fault and what was
expected, so that a failing pipeline step can be fixed without reading the source.

>>> from xglacier.errors import MissingBandError, XGlacierError
>>> issubclass(MissingBandError, XGlacierError)
True
"""

from __future__ import annotations


class XGlacierError(Exception):
    """Base class of every exception raised by xglacier."""


class InputError(XGlacierError, ValueError):
    """The input object does not follow the data model (see ``docs/data-model.md``)."""


class MissingBandError(InputError, KeyError):
    """A band or variable that the operation needs is not in the Dataset."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0]) if self.args else ""


class DimensionError(InputError):
    """A required dimension is missing, or the dimensions are in the wrong order."""


class TimeAxisError(InputError):
    """The ``time`` coordinate is missing, not sorted, duplicated or of the wrong type."""


class ReflectanceRangeError(InputError):
    """Values are not scaled surface reflectance (for example raw integer DNs)."""


class EmptySceneError(InputError):
    """A scene holds no valid pixel where at least one is required."""


class MetadataError(InputError):
    """Per-scene metadata (a coordinate along ``time``) is missing or malformed."""


class ParameterError(XGlacierError, ValueError):
    """A keyword argument has an invalid value."""


class NaNInPatchError(InputError):
    """A gathered patch sample contains NaN and ``nan="raise"`` was asked."""


class TrainingDivergedError(XGlacierError, FloatingPointError):
    """The training loss became NaN or infinite (the best weights so far are restored)."""


class CheckpointError(XGlacierError):
    """A checkpoint cannot be written or read, or does not match the data it is used on."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """One of the two files of a checkpoint is missing."""


class XGlacierWarning(UserWarning):
    """Base class of warnings issued by xglacier."""


class StacError(XGlacierError):
    """A STAC API could not be reached, answered with an error, or returned nothing.

    The message names the URL and what was asked (collection, bbox, dates, cloud limit).
    """


class EmptySearchError(StacError):
    """A STAC search matched no item."""


class AssetError(XGlacierError):
    """A STAC asset cannot be found in an item, opened or read; the message names it."""


class StoreError(XGlacierError):
    """A NetCDF or Zarr store cannot be written as asked (exists, or does not match on append)."""


class XGlacierDeprecationWarning(XGlacierWarning, FutureWarning):
    """A keyword or function was renamed; the old name still works for now."""


class AlignmentWarning(XGlacierWarning):
    """Some scenes could not be aligned and were kept unwarped."""


class PixelUnitsWarning(XGlacierWarning):
    """Velocities could not be put in metres (no CRS, or a geographic one)."""


class SkippedSceneWarning(XGlacierWarning):
    """Scenes were dropped because an asset could not be opened (``load(on_error="skip")``)."""


class OutOfDistributionWarning(XGlacierWarning):
    """A scene's input channels lie far outside the statistics of the data the model was trained on."""


class FlowNoiseWarning(XGlacierWarning):
    """Some flow pairs have no motion clearly above their noise floor (``speed_noise``)."""


class EmptyOutputWarning(XGlacierWarning):
    """A writer was asked to write nothing (an empty table); the empty file is still written."""


class GridMismatchError(InputError):
    """A raster is not on the grid of the others (CRS, pixel size, origin or shape) and no
    resampling was asked; the message names the file and both grids."""


class ReviewError(InputError):
    """Corrected polygons cannot be saved as they are (a self-intersection, holes left outside an
    edited outline, a polygon with too few vertices, or an output that would overwrite the input);
    the message names each polygon and what to fix."""


class BatchError(XGlacierError):
    """A batch run cannot go on as asked (its cluster went away, or its output folder conflicts)."""


class OutputInUseError(BatchError):
    """Another run is writing the same batch output folder (its lock is held)."""


class RunConfigError(BatchError):
    """A batch output folder was written with another configuration (its run.json hash differs)."""


class InterpolatedInputWarning(XGlacierWarning):
    """Input frames of a forecast were interpolated by ``composite`` (no scene in their period).

    The forecast reads them as observations; a seasonal-residual model or seasonal persistence
    carries such a frame forward into the same quarter of the next year.
    """


class NarrowGlacierWarning(XGlacierWarning):
    """A glacier is narrower than the optical-flow window: its speeds are underestimated."""


class GlacierTimeout(BatchError):
    """A glacier's task ran past ``glacier_timeout_s`` (see :class:`~xglacier.batch.BatchConfig`).

    Recorded with status ``error`` (a slow STAC API or storage is most often the cause, so every
    rerun tries the glacier again); the message names the glacier, the limit and the step.
    """
