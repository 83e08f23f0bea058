"""A whole night: configuration, planning, masters and lights on a dask cluster, the report."""

from ccdflow.night.config import NightConfig, load_config
from ccdflow.night.run import NightReport, reduce_night

__all__ = ["NightConfig", "NightReport", "load_config", "reduce_night"]
