"""The frame table of a night: every listed frame with the header facts the plan needs."""

from __future__ import annotations

import dataclasses
import json
import numbers
import re
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from astropy.io import fits

from ccdflow.array.detector import Detector
from ccdflow.errors import CcdflowError, FrameReadError
from ccdflow.io.detectors import assembled_header, header_detectors
from ccdflow.io.filelist import ListedFrame
from ccdflow.io.fits import read_header_text
from ccdflow.io.fits_plain import HeaderText
from ccdflow.io.headers import (
    EXPTIME_KEYS,
    FILTER_KEYS,
    FILTER_WHEEL_KEYS,
    GAIN_KEYS,
    IMAGE_AREA_KEYS,
    OVERSCAN_KEYS,
    READ_NOISE_KEYS,
    SATURATION_KEYS,
    find_exposure_time,
    frame_filter,
)
from ccdflow.io.location import stat
from ccdflow.io.names import safe_name
from ccdflow.io.products import file_sha1

_LETTERED = re.compile(r"DATASEC[A-Z]")

#: Threads reading headers at once: enough to hide a network file system's latency.
READ_THREADS = 16

__all__ = ["PLAN_KEYS", "READ_THREADS", "FrameInfo", "PlanValues", "describe_frames",
           "file_identity", "output_stem"]

#: The header keywords planning reads: the frame's shape, type of data, exposure time, filter,
#: object, binning, and what `ccdflow.io.frame_settings.resolve_params` may take from a header.
#: Their values are kept with each frame (and in the header cache), so that a plan parses no header.
PLAN_KEYS = frozenset({
    "NAXIS1", "NAXIS2", "BITPIX", "ZBITPIX", "BSCALE", "OBJECT", "CCDSUM",
    *EXPTIME_KEYS, *FILTER_KEYS, *FILTER_WHEEL_KEYS, *GAIN_KEYS, *READ_NOISE_KEYS,
    *SATURATION_KEYS, *OVERSCAN_KEYS, *IMAGE_AREA_KEYS,
})


class PlanValues(Mapping):
    """A frame's header values for planning: the `PLAN_KEYS` its header has.

    Asking for a keyword outside `PLAN_KEYS` is a mistake in the code, not a missing card, and
    raises `RuntimeError` rather than answering "absent".

    Examples
    --------
    >>> values = PlanValues({"EXPTIME": 30.0})
    >>> values["EXPTIME"], "GAIN" in values, values.get("FILTER", "")
    (30.0, False, '')
    """

    def __init__(self, values: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        if key not in PLAN_KEYS:
            raise RuntimeError(f"{key} is not among the header keys kept for planning (PLAN_KEYS)")
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _plain(value: Any) -> Any:
    """A header value as JSON keeps it: numbers, text, booleans and None as they are."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)  # a complex number: never a usable value of these keys


@dataclass(frozen=True)
class FrameInfo:
    """A listed frame and what its header says; ``error`` is set when it could not be read."""

    type: str
    path: Path
    hdu: int
    shape: tuple[int, int] | None = None
    exptime: float | None = None
    filter: str = ""
    object: str = ""
    processed: bool = False  # floating-point or rescaled data: a reduced product, not a raw readout
    header: str = ""  # the header as FITS text: small, picklable, exact
    # the header's values the plan reads (`PLAN_KEYS`), as (keyword, value) pairs
    values: tuple[tuple[str, Any], ...] = ()
    identity: tuple = ()
    error: str | None = None
    # a frame read through several amplifiers or HDUs: the layout its headers describe (JSON),
    # and for a file of several CCDs, which one this entry is
    detector: str = ""
    ccd: str = ""

    def header_detector(self) -> Detector | None:
        """The amplifier layout the file's headers describe, if it has several amplifiers/HDUs."""
        return self._parsed_detector

    @cached_property
    def _parsed_detector(self) -> Detector | None:
        # parsed once: the plan asks for it per master and per light
        return Detector.from_dict(json.loads(self.detector)) if self.detector else None

    def fits_header(self) -> fits.Header:
        """The frame's header, parsed once and shared: copy it before changing it."""
        return self._parsed_header

    def plan_header(self) -> PlanValues:
        """The header's values the plan reads, without parsing the header."""
        return self._plan_values

    @cached_property
    def _plan_values(self) -> PlanValues:
        return PlanValues(self.values)

    @cached_property
    def _parsed_header(self) -> fits.Header:
        # cached_property writes the instance __dict__ directly, which a frozen dataclass allows
        return fits.Header.fromstring(self.header)

    def __getstate__(self) -> dict:
        # Ship the text only: a parsed Header pickles larger and slower than it re-parses.
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_parsed_header", "_parsed_detector", "_plan_values")}

    @classmethod
    def from_header(cls, *, type: str, path: Path, hdu: int, header: fits.Header | HeaderText,
                    identity: tuple) -> FrameInfo:
        """Describe a frame from its header, which is kept (no second parse).

        Examples
        --------
        >>> from pathlib import Path
        >>> header = fits.Header([("NAXIS1", 4), ("NAXIS2", 3), ("EXPTIME", 2.0), ("FILTER", "V ")])
        >>> info = FrameInfo.from_header(type="light", path=Path("a.fits"), hdu=0, header=header,
        ...                              identity=())
        >>> info.shape, info.exptime, info.filter, info.fits_header() is header
        ((3, 4), 2.0, 'V', True)
        """
        cards = header if isinstance(header, HeaderText) else HeaderText.parsed(header)
        values = PlanValues(sorted((key, _plain(value))
                                   for key, value in cards.values(PLAN_KEYS).items()))
        info = cls(type=type, path=path, hdu=hdu,
                   shape=(int(values["NAXIS2"]), int(values["NAXIS1"])),
                   exptime=find_exposure_time(values, path=str(path)),
                   filter=frame_filter(values),
                   object=str(values.get("OBJECT", "")).strip(),
                   processed=_is_reduced_product(values),
                   header=cards.text, values=tuple(values.items()), identity=identity)
        info.__dict__["_plan_values"] = values
        if "header" in cards.__dict__:  # parsed already
            info.__dict__["_parsed_header"] = cards.header
        return info

    @property
    def label(self) -> str:
        """How the frame is named in the report: its path, with ``[CCD]`` for one CCD of several."""
        return f"{self.path}[{self.ccd}]" if self.ccd else str(self.path)

    @property
    def stem(self) -> str:
        """The file name without FITS suffixes, ``_<CCD>`` added for one CCD of several; safe."""
        stem = output_stem(self.path) + (f"_{self.ccd}" if self.ccd else "")
        return safe_name(stem, fallback="frame")


def output_stem(path: Path) -> str:
    """``raw/v_e_1.fits.gz`` -> ``v_e_1``."""
    name = path.name
    for suffix in (".gz", ".fz", ".bz2"):
        name = name.removesuffix(suffix)
    for suffix in (".fits", ".fit", ".fts"):
        name = name.removesuffix(suffix)
    return name


def file_identity(path: Path, *, content: bool = False) -> tuple:
    """What says a file changed: its absolute path, size and modification time (and content).

    An object on a store (a URL) adds its ETag: its modification time counts whole seconds.

    With ``content``, the SHA-1 of the file's bytes is added: pixels rewritten in place with the
    size and modification time restored are then noticed too, at the cost of reading every file.
    """
    st = stat(path)
    identity = (str(path), st.st_size, st.st_mtime_ns)
    if getattr(st, "etag", ""):  # an object's ETag changes with every rewrite, whatever the time
        identity = (*identity, st.etag)
    return (*identity, file_sha1(path)) if content else identity


def _is_reduced_product(header: Mapping[str, Any]) -> bool:
    """Raw readouts are plain integers; floating-point or rescaled (BSCALE != 1) data is a product."""
    bitpix = int(header.get("ZBITPIX", header.get("BITPIX", 16)))
    bscale = header.get("BSCALE", 1.0)
    return bitpix < 0 or (isinstance(bscale, int | float) and bscale != 1)


def describe_frames(listed: list[ListedFrame], *, content: bool = False,
                    known: Mapping[tuple, FrameInfo] | None = None,
                    threads: int = READ_THREADS) -> list[FrameInfo]:
    """Read every listed frame's header (never its pixels); unreadable frames carry an error.

    Headers are read by a pool of threads (opening and reading a file releases the GIL, which
    matters most on network file systems), the results kept in the listed order.

    Parameters
    ----------
    listed : list of ListedFrame
        From `ccdflow.io.filelist.read_filelist` or `scan_directory`.
    content : bool
        Put each file's SHA-1 in its identity (``resume: content``), not only size and time.
    known : mapping, optional
        Frames described before, by ``(identity, listed type, listed hdu)``
        (see `ccdflow.night.header_cache`): a frame whose file is unchanged is taken from here,
        its header not read again.
    threads : int
        Threads reading headers; 1 reads them one by one in this thread.

    Returns
    -------
    list of FrameInfo
        In the listed order.

    Examples
    --------
    >>> from pathlib import Path
    >>> [info] = describe_frames([ListedFrame(type="bias", path=Path("/no/such.fits"))])
    >>> info.error.startswith("FrameReadError")
    True
    """
    known = known or {}
    described: list[list[FrameInfo] | None] = [None] * len(listed)
    if known and not content:  # a stat each: cheaper here than handed to a thread
        for i, entry in enumerate(listed):
            cached = None if entry.error else _known(entry, content=False, known=known)
            described[i] = None if cached is None else [cached]
    todo = [i for i, infos in enumerate(described) if infos is None]

    def describe(i: int) -> list[FrameInfo]:
        return _describe_one(listed[i], content=content, known=known)

    if threads <= 1 or len(todo) <= 1:
        for i in todo:
            described[i] = describe(i)
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ccdflow-headers") as pool:
            for i, infos in zip(todo, pool.map(describe, todo), strict=True):
                described[i] = infos
    return [info for infos in described for info in infos]


def _describe_one(entry: ListedFrame, *, content: bool, known: Mapping[tuple, FrameInfo]
                  ) -> list[FrameInfo]:
    if entry.error:
        return [FrameInfo(type=entry.type, path=entry.path, hdu=entry.hdu, error=entry.error)]
    try:
        cached = _known(entry, content=content, known=known)
        if cached is not None:
            return [cached]
        try:
            hdu, cards = read_header_text(entry.path, hdu=entry.hdu)
        except FrameReadError as unreadable:
            # an empty primary before one extension per amplifier (or per CCD) is no error; a
            # file that cannot be opened at all keeps the frame reader's reason
            try:
                detectors = header_detectors(entry.path, hdu=entry.hdu)
            except FrameReadError:
                raise unreadable from unreadable.__cause__
            if not detectors:
                raise unreadable from unreadable.__cause__
            return _describe_detectors(entry, detectors, content=content)
        if "DATASEC" in cards.text and any(_LETTERED.fullmatch(k) for k in cards.keywords):
            detectors = header_detectors(entry.path, hdu=hdu)
            if detectors:
                return _describe_detectors(entry, detectors, content=content)
        return [FrameInfo.from_header(type=entry.type, path=entry.path, hdu=hdu, header=cards,
                                      identity=file_identity(entry.path, content=content))]
    except (CcdflowError, OSError) as err:
        return [FrameInfo(type=entry.type, path=entry.path, hdu=entry.hdu,
                          error=f"{type(err).__name__}: {err}")]


def _describe_detectors(entry: ListedFrame, detectors: list[Detector], *, content: bool
                        ) -> list[FrameInfo]:
    """One entry per CCD of a file read through several amplifiers or HDUs."""
    identity = file_identity(entry.path, content=content)
    out = []
    for det in detectors:
        header = assembled_header(entry.path, det)
        header["NAXIS1"], header["NAXIS2"] = det.shape[1], det.shape[0]
        info = FrameInfo.from_header(type=entry.type, path=entry.path, hdu=det.hdus[0],
                                     header=header, identity=identity)
        out.append(dataclasses.replace(info, detector=json.dumps(det.to_dict()),
                                       ccd=det.name if len(detectors) > 1 else ""))
    return out


def _known(entry: ListedFrame, *, content: bool, known: Mapping[tuple, FrameInfo]
           ) -> FrameInfo | None:
    if not known:
        return None
    try:
        identity = file_identity(entry.path, content=content)
    except OSError:
        return None  # read_header_text then says what is wrong, as for any unreadable file
    return known.get((identity, entry.type, entry.hdu))
