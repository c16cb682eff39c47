"""Many glaciers on a Dask cluster: ``run_glaciers`` and its building blocks.

See ``docs/many-glaciers.md``. The per-glacier pipeline (configuration, outlines,
``process_glacier``) lives in :mod:`xglacier.batch.config` and :mod:`xglacier.batch.glacier`;
the orchestration (layout on disk, status files, the Dask run) in the other modules.

>>> from xglacier.batch import run_glaciers, BatchConfig
>>> BatchConfig().threads
1
"""

from .config import BatchConfig, config_hash, load_config
from .glacier import Glacier, process_glacier, read_outlines
from .run import run_glaciers
from .status import glacier_table, report

__all__ = ["BatchConfig", "Glacier", "config_hash", "glacier_table", "load_config", "process_glacier",
           "read_outlines", "report", "run_glaciers"]
