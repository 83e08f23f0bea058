"""`ImageReduction`: a file list in, one reduced image per filter and object out (the seed-003 interface)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import numpy as np
from astropy.io import fits

from ccdflow.array.combination import CombineParams
from ccdflow.errors import CcdflowError, ConfigError, MissingCalibrationError
from ccdflow.io import export
from ccdflow.io.filelist import read_filelist
from ccdflow.io.frame_settings import HEADER
from ccdflow.io.headers import IMAGE_AREA_KEYS, OVERSCAN_KEYS, header_section
from ccdflow.io.products import stack_header
from ccdflow.io.write import guard_inputs, write_fits
from ccdflow.night.config import CalibrationConfig, ClusterConfig, CombineByKind, MinFrames, NightConfig
from ccdflow.night.frames import FrameInfo, describe_frames
from ccdflow.night.plan import FramePlan, make_plan
from ccdflow.night.report import FrameStatus, NightReport
from ccdflow.night.run import reduce_night
from ccdflow.night.stage_stacks import combine_calibrated
from ccdflow.night.store import Store

__all__ = ["ImageReduction"]


#: Where a light's group key comes from: ``(FILTER, OBJECT)`` of its header ("" when absent).
GroupKey = tuple[str, str]


class ImageReduction:
    """Reduce the frames of a CSV file list: masters, calibration, one combined image per target.

    The file list has 2 or 3 columns ``type, path[, hdu]`` (type: light, dark, flat, bias or
    arc). Biases, darks and flats are combined into masters (5-sigma clipping, NaN ignored; darks
    per second and scaled to each light's exposure; flats bias- and dark-subtracted and
    normalised), each light is calibrated, and the lights of each filter and object are combined:
    lights of different filters or objects are never mixed.

    Parameters
    ----------
    filelist : str or path-like
        The CSV file list.
    combine_method : {"median", "mean"}
        How the calibrated lights (and arcs) are combined.
    sigma : float
        Clipping threshold, both sides, for every combination.
    calibration : dict, optional
        The ``calibration`` section of a night config (overscans, image_area, gain, ...). Keys
        given win; ``overscans`` and ``image_area`` not given are ``"header"`` (``BIASSEC``,
        ``TRIMSEC``/``DATASEC``) when every readable listed frame has those cards, and otherwise
        no overscan step and the whole frame.
    work_dir : path-like, optional
        Where masters, calibrated frames and the zarr store go, kept (a rerun reuses them). By
        default a temporary folder, removed before `reduce` or `reduce_all` returns: the
        results are then in memory only, and each call reduces the night afresh.
    scheduler : str
        Dask scheduler: ``threads`` (default), ``synchronous``, ``tcp://host:port``, or ``None``
        for a LocalCluster.

    Examples
    --------
    >>> reduction = ImageReduction("night.csv")  # doctest: +SKIP
    >>> hdu = reduction.reduce(filter="V")  # doctest: +SKIP
    >>> reduction.save_fits("reduced.fits")  # doctest: +SKIP
    >>> images = reduction.reduce_all()  # doctest: +SKIP
    >>> images[("V", "M67")].header["NCOMBINE"]  # doctest: +SKIP
    5
    """

    def __init__(self, filelist: str | os.PathLike, *, combine_method: str = "median",
                 sigma: float = 5.0, calibration: dict[str, Any] | None = None,
                 work_dir: str | os.PathLike | None = None, scheduler: str | None = "threads"):
        self.filelist = Path(filelist)
        if str(combine_method) not in ("median", "mean"):
            raise ConfigError("combine_method", f"expected 'median' or 'mean', got {combine_method!r}")
        self.params = CombineParams(method=combine_method, sigma_lower=sigma, sigma_upper=sigma)
        self.sigma = sigma
        self.calibration = dict(calibration or {})
        CalibrationConfig.from_dict(self.calibration)  # validated now, not at the first reduce
        self.work_dir = Path(work_dir) if work_dir else None
        self.scheduler = scheduler
        self.config: NightConfig | None = None
        self.report: NightReport | None = None
        self.image_hdu: fits.PrimaryHDU | None = None
        self.error: np.ndarray | None = None
        self.images: dict[GroupKey, fits.PrimaryHDU] = {}
        self.errors: dict[GroupKey, np.ndarray] = {}
        self.arc_hdu: fits.PrimaryHDU | None = None

    def reduce(self, *, filter: str | None = None, object: str | None = None) -> fits.PrimaryHDU:
        """Build the masters, calibrate every light and arc, and combine one filter and object.

        Parameters
        ----------
        filter, object : str, optional
            Which lights to combine (their ``FILTER`` and ``OBJECT`` cards, ``""`` when absent);
            needed only when the file list holds several.

        Returns
        -------
        astropy.io.fits.PrimaryHDU
            The combined light, with the first light's calibrated header (its WCS shifted to
            the image area) plus the reduction's keywords (inputs, combine settings, total and
            mean exposure, masters used). Also in ``image_hdu`` (and its error in ``error``).

        Raises
        ------
        ConfigError
            If the file list is malformed (the file and line are named), or its lights have
            several filters or objects and none was chosen, or none matches the choice (the
            filters and objects present are listed).
        MissingCalibrationError
            If the list has no light frame.
        CcdflowError
            If any frame or master failed (each file is named with its reason).
        """
        images = self._reduce(lambda groups: [_select(groups, filter=filter, object=object)])
        self.image_hdu, self.error = next(iter(images.values())), next(iter(self.errors.values()))
        return self.image_hdu

    def reduce_all(self) -> dict[GroupKey, fits.PrimaryHDU]:
        """Like `reduce`, for every filter and object of the file list.

        Returns
        -------
        dict
            ``{(filter, object): PrimaryHDU}`` in file-list order; the errors are in ``errors``
            under the same keys. ``image_hdu`` is the first.
        """
        images = self._reduce(list)
        first = next(iter(images))
        self.image_hdu, self.error = images[first], self.errors[first]
        return images

    def _reduce(self, choose) -> dict[GroupKey, fits.PrimaryHDU]:
        frames = describe_frames(read_filelist(self.filelist.resolve()))
        with _workspace(self.work_dir) as work:
            config = self._config(frames, work)
            plan = make_plan(frames, config)
            groups = _light_groups(plan.frames)
            if not groups:
                raise MissingCalibrationError(f"{self.filelist}: no light frame to reduce")
            keys = choose(groups)
            report = reduce_night(config, echo=lambda *_: None, progress=False)
            self.config, self.report = config, report
            if not report.ok:
                failures = "; ".join(f"{p}: {r}" for p, r in report.failures.items())
                raise CcdflowError(f"{self.filelist}: the reduction failed: {failures}")
            self.images, self.errors = {}, {}
            for key in keys:
                lights = _calibrated(groups[key], report)
                data, self.errors[key] = self._combine(config, lights)
                self.images[key] = fits.PrimaryHDU(data, header=self._header(lights, report))
            arcs = _calibrated([fp for fp in plan.frames if fp.frame.type == "arc"], report)
            if arcs:
                arc, _ = self._combine(config, arcs)
                self.arc_hdu = fits.PrimaryHDU(arc, header=self._header(arcs, report))
        return self.images

    def _config(self, frames: list[FrameInfo], output: Path) -> NightConfig:
        calibration = dict(self.calibration)
        headers = [f.fits_header() for f in frames if f.error is None]
        for key, cards in (("overscans", OVERSCAN_KEYS), ("image_area", IMAGE_AREA_KEYS)):
            if key not in calibration and headers and all(header_section(h, cards)[0] for h in headers):
                calibration[key] = HEADER
        sigma = self.sigma
        return NightConfig(
            filelist=self.filelist.resolve(), output=output.resolve(),
            calibration=CalibrationConfig.from_dict(calibration),
            combine=CombineByKind(
                light=self.params, **{kind: CombineParams(sigma_lower=sigma, sigma_upper=sigma,
                                                          scale="median" if kind == "flat" else None)
                                      for kind in ("bias", "dark", "flat")}),
            min_frames=MinFrames(bias=1, dark=1, flat=1),
            keep_cube=True,  # the lights are combined from the night's cube
            cluster=ClusterConfig(scheduler=self.scheduler),
        )

    def _combine(self, config: NightConfig, frames: list[FramePlan]) -> tuple[np.ndarray, np.ndarray]:
        store = Store(config.output / "work.zarr")
        result = combine_calibrated(frames, store, self.params)
        scheduler = config.cluster.scheduler
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
        """Write the reduced image (primary) and its ``ERROR`` extension, atomically.

        Raises `InputOverwriteError` (before reducing) if ``path`` is the file list or one of its frames.
        """
        guard_inputs([path], inputs=[self.filelist, *(f.path for f in read_filelist(self.filelist))])
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


@contextlib.contextmanager
def _workspace(work_dir: Path | None) -> Iterator[Path]:
    """The given folder, or a temporary one removed on exit (results are in memory by then)."""
    if work_dir is not None:
        yield work_dir
        return
    with tempfile.TemporaryDirectory(prefix="ccdflow-") as folder:
        yield Path(folder)


def _light_groups(frames: list[FramePlan]) -> dict[GroupKey, list[FramePlan]]:
    """The planned lights by ``(FILTER, OBJECT)``, in file-list order."""
    groups: dict[GroupKey, list[FramePlan]] = {}
    for fp in frames:
        if fp.frame.type == "light":
            groups.setdefault((fp.frame.filter, fp.frame.object), []).append(fp)
    return groups


def _select(groups: dict[GroupKey, list[FramePlan]], *, filter: str | None,
            object: str | None) -> GroupKey:
    """The one group matching the choice, or a `ConfigError` listing the groups present."""
    present = ", ".join(f"(filter={f!r}, object={o!r})" for f, o in groups)
    keys = [k for k in groups if filter in (None, k[0]) and object in (None, k[1])]
    if len(keys) == 1:
        return keys[0]
    if not keys:
        key = "filter" if filter is not None and filter not in {f for f, _ in groups} else "object"
        raise ConfigError(key, f"no light with filter={filter!r}, object={object!r}; the file list "
                               f"has {present}")
    key = "filter" if len({f for f, _ in keys}) > 1 else "object"
    raise ConfigError(key, f"the file list has lights of several filters or objects: {present}; "
                           "choose one with reduce(filter=..., object=...) or use reduce_all()")


def _calibrated(frames: list[FramePlan], report: NightReport) -> list[FramePlan]:
    """The frames that were calibrated (now or by an earlier run), in their order."""
    ok = {path for path, f in report.frames.items()
          if f["status"] in (FrameStatus.done, FrameStatus.reused)}
    return [fp for fp in frames if str(fp.frame.path) in ok]
