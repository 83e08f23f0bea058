"""`ImageReduction`: a file list in, one reduced image with its header out (the seed-003 interface)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import dask
import numpy as np
from astropy.io import fits

from ccdflow.array.combination import CombineParams
from ccdflow.errors import CcdflowError, ConfigError, MissingCalibrationError
from ccdflow.io import export
from ccdflow.io.products import stack_header
from ccdflow.io.write import write_fits
from ccdflow.night.config import CalibrationConfig, ClusterConfig, CombineByKind, MinFrames, NightConfig
from ccdflow.night.plan import FramePlan
from ccdflow.night.report import FrameStatus, NightReport
from ccdflow.night.run import plan_night, reduce_night
from ccdflow.night.stage_stacks import combine_calibrated
from ccdflow.night.store import Store

__all__ = ["ImageReduction"]


class ImageReduction:
    """Reduce the frames of a CSV file list to one image: masters, calibration, combination.

    The file list has 2 or 3 columns ``type, path[, hdu]`` (type: light, dark, flat, bias or
    arc). Biases, darks and flats are combined into masters (5-sigma clipping, NaN ignored; darks
    per second and scaled to each light's exposure; flats bias- and dark-subtracted and
    normalised), each light is calibrated, and the lights are combined.

    Parameters
    ----------
    filelist : str or path-like
        The CSV file list.
    combine_method : {"median", "mean"}
        How the calibrated lights (and arcs) are combined.
    sigma : float
        Clipping threshold, both sides, for every combination.
    calibration : dict, optional
        The ``calibration`` section of a night config (overscans, image_area, gain, ...).
    work_dir : path-like, optional
        Where masters, calibrated frames and the zarr store go; a temporary folder by default.
    scheduler : str
        Dask scheduler: ``threads`` (default), ``synchronous``, ``tcp://host:port``, or ``None``
        for a LocalCluster.

    Examples
    --------
    >>> reduction = ImageReduction("night.csv")  # doctest: +SKIP
    >>> hdu = reduction.reduce()  # doctest: +SKIP
    >>> reduction.save_fits("reduced.fits")  # doctest: +SKIP
    """

    def __init__(self, filelist: str | os.PathLike, *, combine_method: str = "median",
                 sigma: float = 5.0, calibration: dict[str, Any] | None = None,
                 work_dir: str | os.PathLike | None = None, scheduler: str | None = "threads"):
        self.filelist = Path(filelist)
        if str(combine_method) not in ("median", "mean"):
            raise ConfigError("combine_method", f"expected 'median' or 'mean', got {combine_method!r}")
        params = CombineParams(method=combine_method, sigma_lower=sigma, sigma_upper=sigma)
        self.params = params
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="ccdflow-"))
        self.config = NightConfig(
            filelist=self.filelist.resolve(), output=self.work_dir.resolve(),
            calibration=CalibrationConfig.from_dict(calibration or {}),
            combine=CombineByKind(
                light=params, **{kind: CombineParams(sigma_lower=sigma, sigma_upper=sigma,
                                                     scale="median" if kind == "flat" else None)
                                 for kind in ("bias", "dark", "flat")}),
            min_frames=MinFrames(bias=1, dark=1, flat=1),
            cluster=ClusterConfig(scheduler=scheduler),
        )
        self.report: NightReport | None = None
        self.image_hdu: fits.PrimaryHDU | None = None
        self.error: np.ndarray | None = None
        self.arc_hdu: fits.PrimaryHDU | None = None

    def reduce(self) -> fits.PrimaryHDU:
        """Build the masters, calibrate every light and arc, and combine them.

        Returns
        -------
        astropy.io.fits.PrimaryHDU
            The combined light, with the first light's header plus the reduction's keywords
            (inputs, combine settings, total and mean exposure, masters used).

        Raises
        ------
        ConfigError
            If the file list is malformed (the file and line are named).
        MissingCalibrationError
            If the list has no light frame.
        CcdflowError
            If any frame or master failed (each file is named with its reason).
        """
        report = reduce_night(self.config, echo=lambda *_: None, progress=False)
        self.report = report
        if not report.ok:
            failures = "; ".join(f"{p}: {r}" for p, r in report.failures.items())
            raise CcdflowError(f"{self.filelist}: the reduction failed: {failures}")
        # the frames of this list only (not what an earlier run left in the store), in list order
        plan = plan_night(self.config)
        lights = self._calibrated(plan.frames, report, "light")
        if not lights:
            raise MissingCalibrationError(f"{self.filelist}: no light frame to reduce")
        data, self.error = self._combine(lights)
        self.image_hdu = fits.PrimaryHDU(data, header=self._header(lights, report))
        arcs = self._calibrated(plan.frames, report, "arc")
        if arcs:
            arc, _ = self._combine(arcs)
            self.arc_hdu = fits.PrimaryHDU(arc, header=self._header(arcs, report))
        return self.image_hdu

    @staticmethod
    def _calibrated(frames: list[FramePlan], report: NightReport, kind: str) -> list[FramePlan]:
        """The planned frames of a type that were calibrated (now or by an earlier run)."""
        ok = {path for path, f in report.frames.items()
              if f["status"] in (FrameStatus.done, FrameStatus.skipped)}
        return [fp for fp in frames if fp.frame.type == kind and str(fp.frame.path) in ok]

    def _combine(self, frames: list[FramePlan]) -> tuple[np.ndarray, np.ndarray]:
        store = Store(self.config.output / "work.zarr")
        result = combine_calibrated(frames, store, self.params)
        scheduler = self.config.cluster.scheduler
        local = scheduler in ("threads", "synchronous", "processes")
        with dask.config.set(scheduler=scheduler) if local else contextlib.nullcontext():
            data, error = dask.compute(result.data, result.error)
        return data, error

    def _header(self, frames: list[FramePlan], report: NightReport) -> fits.Header:
        # the calibrated products' headers: the listed HDU's cards, EXPTIME resolved by the plan,
        # the WCS shifted to the image area
        headers = [fits.getheader(fp.output) for fp in frames]
        header = stack_header(headers[0], exptimes=[float(h.get("EXPTIME", 0.0)) for h in headers],
                              params=self.params.to_dict(), inputs=[str(fp.frame.path) for fp in frames])
        used = dict.fromkeys(n for fp in frames for n in (fp.bias, fp.dark, fp.flat) if n)
        for name in used:
            master = report.masters[name]
            header[f"HIERARCH CCDFLOW MASTER {name.upper()}"] = Path(master["output"]).name
            header[f"HIERARCH CCDFLOW MASTER {name.upper()} N"] = len(master["inputs"])
        return header

    def _image(self) -> np.ndarray:
        if self.image_hdu is None:
            self.reduce()
        return self.image_hdu.data

    def save_fits(self, path: str | os.PathLike, *, overwrite: bool = True) -> Path:
        """Write the reduced image (primary) and its ``ERROR`` extension, atomically."""
        image = self._image()
        hdus = fits.HDUList([fits.PrimaryHDU(image, header=self.image_hdu.header),
                             fits.ImageHDU(self.error, name="ERROR")])
        return write_fits(path, hdus, overwrite=overwrite)

    def save_image(self, path: str | os.PathLike, **kwargs: Any) -> Path:
        """Write a static image (PNG, JPG, SVG or PDF by suffix) with zscale limits.

        ``kwargs`` go to `ccdflow.io.export.save_image` (``title``, ``cmap``, ``dpi``). Without a
        title the picture has exactly the image's aspect, one image pixel per picture pixel.
        """
        return export.save_image(self._image(), path, **kwargs)

    def to_html(self, path: str | os.PathLike) -> Path:
        """Write an interactive plotly figure as a self-contained HTML page."""
        return export.save_html(self._image(), path, title=self._title())

    def to_json(self) -> str:
        """The interactive plotly figure as a JSON string."""
        return export.to_json(self._image(), title=self._title())

    def _title(self) -> str:
        header = self.image_hdu.header
        return f"{header.get('OBJECT', 'reduced image')} ({header['NCOMBINE']} frames)"
