"""Lazy FITS input: frames and stacks as float32 dask arrays, pixels read only when a chunk runs."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
from astropy.io import fits
from dask.base import tokenize

from ccdflow.array.chunks import CHUNK_BUDGET, rows_for_budget
from ccdflow.errors import ConfigError, FrameReadError, IncompatibleFramesError
from ccdflow.io.fits_integrity import READ_ERRORS, check_cards
from ccdflow.io.fits_plain import HeaderText, read_primary
from ccdflow.io.fits_scaling import scale_into
from ccdflow.io.headers import exposure_time
from ccdflow.io.location import RemotePath, as_location, open_binary

__all__ = [
    "Frame", "PlainLayout", "open_frame", "open_stack", "read_band", "read_header",
    "read_header_text", "read_images", "read_layout", "read_rows",
]


@dataclass(frozen=True, eq=False)
class Frame:
    """One image HDU of a FITS file: header in memory, pixels as a lazy float32 dask array.

    Attributes
    ----------
    data : dask.array.Array
        (rows, columns) float32, BZERO/BSCALE applied; read when computed.
    header : astropy.io.fits.Header
        The HDU's header.
    path : pathlib.Path
        The file.
    hdu : int
        The HDU index read.
    exptime : float
        Exposure time in seconds (see `ccdflow.io.headers.exposure_time`), or the override given.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "raw.fits"
    >>> fits.writeto(path, np.arange(6, dtype=np.uint16).reshape(2, 3),
    ...              fits.Header([("EXPTIME", 30.0)]))
    >>> frame = open_frame(path)
    >>> frame.shape, frame.exptime, float(frame.data.sum().compute())
    ((2, 3), 30.0, 15.0)
    """

    data: da.Array
    header: fits.Header
    path: Path
    hdu: int
    exptime: float

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the image."""
        return self.data.shape


def _image_hdu(hdul: fits.HDUList, hdu: int, path: str) -> tuple[int, fits.hdu.base.ExtensionHDU]:
    """Pick the image HDU; an empty primary then a compressed image means the latter (fpack)."""
    try:
        chosen = hdul[hdu]
    except (IndexError, KeyError):
        raise FrameReadError(path, f"has no HDU {hdu} ({len(hdul)} HDUs)", hdu=hdu) from None
    if hdu == 0 and chosen.header.get("NAXIS", 0) == 0 and len(hdul) > 1:
        if isinstance(hdul[1], fits.CompImageHDU):
            hdu, chosen = 1, hdul[1]  # still checked below: a compressed cube is not a frame
    if not isinstance(chosen, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
        raise FrameReadError(path, f"is a {type(chosen).__name__}, not an image", hdu=hdu)
    if chosen.header.get("NAXIS", 0) != 2:
        raise FrameReadError(
            path, f"image has NAXIS = {chosen.header.get('NAXIS', 0)}, expected 2", hdu=hdu
        )
    return hdu, chosen


def _check_complete(hdul: fits.HDUList, index: int, size: int, path: str) -> None:
    """Raise if a plain (not gzip) file ends before the chosen HDU's data does.

    astropy only warns about this at open; the pixels would fail later, in some chunk's task.
    """
    # the HDU's own fileinfo: the HDU list's also serializes every header to see if it was resized
    info = hdul[index].fileinfo()
    if info is None or getattr(info["file"], "compression", None):
        return  # a compressed stream's length is unknown without decompressing; a read will fail
    end = info["datLoc"] + info["datSpan"]
    if size < end:
        raise FrameReadError(path, f"truncated: {size} bytes, the HDU needs {end}", hdu=index)


@dataclass(frozen=True)
class PlainLayout:
    """Where an uncompressed image's pixels sit in its file, so bands are read with one ``pread``."""

    offset: int
    dtype: np.dtype
    shape: tuple[int, int]
    bscale: float
    bzero: float
    blank: int | None
    stamp: tuple[int, int]  # size and mtime when read: a rewritten file is read afresh


_BITPIX = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def _plain_layout(hdul: fits.HDUList, index: int, chosen, st) -> PlainLayout | None:
    info = chosen.fileinfo()
    if (info is None or isinstance(chosen, fits.CompImageHDU)
            or getattr(info["file"], "compression", None)):
        return None
    return _layout(chosen.header, int(info["datLoc"]), (st.st_size, st.st_mtime_ns))


def _layout(header: Mapping[str, Any], offset: int, stamp: tuple[int, int]) -> PlainLayout:
    dtype = np.dtype(_BITPIX[int(header["BITPIX"])])
    blank = header.get("BLANK") if dtype.kind in "iu" else None
    return PlainLayout(offset=offset, dtype=dtype,
                       shape=(int(header["NAXIS2"]), int(header["NAXIS1"])),
                       bscale=float(header.get("BSCALE", 1.0)), bzero=float(header.get("BZERO", 0.0)),
                       blank=None if blank is None else int(blank), stamp=stamp)


def read_layout(path: str | os.PathLike | RemotePath, *, hdu: int = 0
                ) -> tuple[int, fits.Header, PlainLayout | None]:
    """Read one image HDU's header, and where its pixels are when the file is uncompressed.

    Returns
    -------
    (int, astropy.io.fits.Header, PlainLayout or None)
        The HDU index used, its header, and its pixel layout (None for gzip or
        tile-compressed data, which astropy must decompress).

    Raises
    ------
    FrameReadError
        If the file is missing, not FITS, truncated, has a header card that cannot be parsed, or
        the HDU is not a 2-D image.
    """
    index, cards, layout = _read_hdu(path, hdu)
    return index, cards.header, layout


def read_header_text(path: str | os.PathLike | RemotePath, *, hdu: int = 0
                     ) -> tuple[int, HeaderText]:
    """Like `read_header`, the header kept as FITS text and parsed only when asked for whole.

    The text is the file's own when its primary HDU is the image of a plain file, else astropy's
    formatting of the parsed header; ``END`` and the padding are left out.

    Examples
    --------
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/raw.fits"
    >>> fits.writeto(path, np.zeros((3, 4), np.uint16), fits.Header([("EXPTIME", 30.0)]))
    >>> index, cards = read_header_text(path)
    >>> sorted(cards.values({"EXPTIME", "NAXIS2"}).items()), cards.text[:8]
    ([('EXPTIME', 30.0), ('NAXIS2', 3)], 'SIMPLE  ')
    """
    index, cards, _ = _read_hdu(path, hdu)
    return index, cards


def _read_hdu(path: str | os.PathLike | RemotePath, hdu: int
              ) -> tuple[int, HeaderText, PlainLayout | None]:
    source, path = _source(path), str(path)
    if hdu == 0 and not isinstance(source, RemotePath):
        plain = _plain_primary(source)  # None: not a plain primary image, astropy reads it below
        if plain is not None:
            return 0, *plain
    try:
        # Our own handle: astropy leaks its own when an escalated warning interrupts fits.open.
        # A remote one reads by byte ranges: the headers, never the pixels.
        with open_binary(source) as fh, fits.open(fh, memmap=False, lazy_load_hdus=True) as hdul:
            index, chosen = _image_hdu(hdul, hdu, path)
            check_cards(chosen.header, path=path, hdu=index)
            # the HDU list is closed below: its header is the caller's, no copy needed (a copy
            # costs a third of reading a header)
            header = chosen.header
            st = source.stat() if isinstance(source, RemotePath) else os.fstat(fh.fileno())
            _check_complete(hdul, index, st.st_size, path)
            layout = _plain_layout(hdul, index, chosen, st)
    except FrameReadError:
        raise
    except READ_ERRORS as err:
        raise FrameReadError(path, f"cannot read FITS: {err}", hdu=hdu) from err
    return index, HeaderText.parsed(header), layout


def _source(path: str | os.PathLike | RemotePath) -> str | RemotePath:
    """A local file as its path string (today's fast paths), a URL as a `RemotePath`."""
    where = as_location(path)
    return where if isinstance(where, RemotePath) else str(where)


def read_header(path: str | os.PathLike | RemotePath, *, hdu: int = 0) -> tuple[int, fits.Header]:
    """Read one image HDU's header without touching its pixels.

    Parameters
    ----------
    path : str or path-like
        The FITS file (plain, gzip-compressed or tile-compressed).
    hdu : int
        The HDU index; 0 on an fpack file (empty primary) selects its compressed image.

    Returns
    -------
    (int, astropy.io.fits.Header)
        The HDU index actually used and a copy of its header.

    Raises
    ------
    FrameReadError
        If the file is missing, not FITS, truncated, or the HDU is not a 2-D image.
    """
    index, header, _ = read_layout(path, hdu=hdu)
    return index, header


def read_band(path: str | RemotePath, layout: PlainLayout, rows: slice, out: np.ndarray) -> bool:
    """Read full-width rows of an uncompressed image into ``out`` (float32), with one ``pread``.

    A remote file's rows come in one ranged GET.

    The byte order conversion, the cast and the scaling happen in ``out`` (see
    `ccdflow.io.fits_scaling.scale_into`: each value rounded to float32 once); integer pixels
    equal to ``BLANK`` become NaN.

    Returns
    -------
    bool
        False, with nothing read, if the file changed since its layout was taken (the caller
        then reads it through astropy).

    Raises
    ------
    FrameReadError
        If the file vanished or ends before the rows asked for.
    """
    r0, r1, _ = rows.indices(layout.shape[0])
    row_bytes = layout.shape[1] * layout.dtype.itemsize
    size = max(0, r1 - r0) * row_bytes
    try:
        if isinstance(path, RemotePath):
            data = _remote_band(path, layout, layout.offset + r0 * row_bytes, size)
            if data is None:
                return False
        else:
            fd = os.open(path, os.O_RDONLY)
            try:
                st = os.fstat(fd)
                if (st.st_size, st.st_mtime_ns) != layout.stamp:
                    return False
                data = os.pread(fd, size, layout.offset + r0 * row_bytes)
            finally:
                os.close(fd)
    except OSError as err:
        raise FrameReadError(path, f"cannot read pixels: {err}") from err
    if len(data) < size:
        raise FrameReadError(path, f"truncated: rows {r0}-{r1} end past the end of the file")
    raw = np.frombuffer(data, layout.dtype).reshape(r1 - r0, layout.shape[1])
    scale_into(raw, out, bscale=layout.bscale, bzero=layout.bzero, blank=layout.blank)
    return True


def _remote_band(path: RemotePath, layout: PlainLayout, start: int, size: int) -> bytes | None:
    """``size`` bytes from ``start`` of an unchanged remote file (None if it changed)."""
    st = path.stat()
    if (st.st_size, st.st_mtime_ns) != layout.stamp:
        return None
    return path.fs.cat_file(path.path, start=start, end=min(start + size, st.st_size))


def read_rows(path: str | RemotePath, hdu: int, rows: slice, cols: slice = slice(None)) -> np.ndarray:
    """Read a block of one image HDU as float32 with BZERO/BSCALE applied (one open, one read).

    Parameters
    ----------
    path : str
        The FITS file.
    hdu : int
        The image HDU (already resolved by `read_header`).
    rows, cols : slice
        The block to read.

    Returns
    -------
    numpy.ndarray
        float32 block, native byte order; integer pixels equal to ``BLANK`` are NaN.

    Raises
    ------
    FrameReadError
        If the pixels cannot be read (truncated file, vanished file, corrupt compressed data) or
        a header card cannot be parsed.
    """
    return read_images(path, (hdu,), rows, cols)[hdu]


def read_images(path: str | RemotePath, hdus: Sequence[int], rows: slice = slice(None),
                cols: slice = slice(None)) -> dict[int, np.ndarray]:
    """`read_rows` of several HDUs of one file, opened once (a gzip file is inflated once).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = str(pathlib.Path(tempfile.mkdtemp()) / "two.fits")
    >>> fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((2, 3), np.int16)),
    ...               fits.ImageHDU(np.zeros((2, 3), np.int16))]).writeto(path)
    >>> {h: float(a.sum()) for h, a in read_images(path, (1, 2)).items()}
    {1: 6.0, 2: 0.0}
    """
    if tuple(hdus) == (0,) and not isinstance(path, RemotePath) and rows.step in (None, 1):
        plain = _read_plain(str(path), rows, cols)
        if plain is not None:
            return {0: plain}
    out, hdu = {}, hdus[0]
    try:
        # Scaling ourselves avoids astropy's full-frame float64 copy of every 16-bit frame.
        # a remote file is fetched whole, once, and read in memory
        with (
            io.BytesIO(path.read_bytes()) if isinstance(path, RemotePath) else open(path, "rb") as fh,
            fits.open(fh, memmap=not isinstance(path, RemotePath), do_not_scale_image_data=True,
                      lazy_load_hdus=True) as hdul,
        ):
            for hdu in hdus:
                image = hdul[hdu]
                header = image.header
                check_cards(header, path=path, hdu=hdu)
                raw = np.asarray(image.section[rows, cols])
                blank = header.get("BLANK") if raw.dtype.kind in "iu" else None
                block = np.empty(raw.shape, np.float32)  # native order, detached from the file
                scale_into(raw, block, bscale=float(header.get("BSCALE", 1.0)),
                           bzero=float(header.get("BZERO", 0.0)),
                           blank=None if blank is None else int(blank))
                out[hdu] = block
    except FrameReadError:
        raise
    except READ_ERRORS as err:
        raise FrameReadError(path, f"cannot read pixels: {err}", hdu=hdu) from err
    return out


def _plain_primary(path: str) -> tuple[HeaderText, PlainLayout] | None:
    """A plain file's primary image header, checked, and its layout (None: not such a file)."""
    plain = read_primary(path)
    if plain is None:
        return None
    check_cards(plain.cards, path=path, hdu=0)
    return plain.cards, _layout(plain.values, plain.offset, plain.stamp)


def _read_plain(path: str, rows: slice, cols: slice) -> np.ndarray | None:
    """The rows of a plain file's primary image with one ``pread`` (None: not such a file)."""
    plain = _plain_primary(path)
    if plain is None:
        return None
    layout = plain[1]
    r0, r1, _ = rows.indices(layout.shape[0])
    out = np.empty((max(0, r1 - r0), layout.shape[1]), np.float32)
    if not read_band(path, layout, slice(r0, r1), out):
        return None  # changed since its header was read: astropy reads it afresh
    return out if cols == slice(None) else np.ascontiguousarray(out[:, cols])


class _FitsBlocks:
    """Array-like over one image HDU of several files, read block by block by `dask.array`."""

    def __init__(self, paths: Sequence[str], hdus: Sequence[int], shape: tuple[int, int],
                 layouts: Sequence[PlainLayout | None] | None = None):
        self.paths = list(paths)
        self.hdus = list(hdus)
        self.layouts = list(layouts) if layouts is not None else [None] * len(self.paths)
        self.shape = (len(self.paths), *shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = 3

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        frames, rows, cols = key + (slice(None),) * (3 - len(key))
        picked = np.atleast_1d(np.arange(self.shape[0])[frames])
        # Only slices are read from disk; any other index is applied to the block read.
        read_r, keep_r = (rows, slice(None)) if isinstance(rows, slice) else (slice(None), rows)
        read_c, keep_c = (cols, slice(None)) if isinstance(cols, slice) else (slice(None), cols)
        band = np.empty(self.shape[1:], dtype=bool)[read_r, :].shape
        full_width = read_c == slice(None) or read_c.indices(self.shape[2]) == (0, self.shape[2], 1)
        contiguous = read_r.step in (None, 1)
        out = np.empty((len(picked), *np.empty(band, bool)[:, read_c].shape), np.float32)
        for k, i in enumerate(picked):
            layout = self.layouts[i] if contiguous else None
            target = out[k] if full_width else np.empty(band, np.float32)
            if layout is not None and read_band(self.paths[i], layout, read_r, target):
                if not full_width:
                    out[k] = target[:, read_c]
            else:
                out[k] = read_rows(self.paths[i], self.hdus[i], read_r, read_c)
        out = out[:, keep_r, keep_c]
        return out[0] if np.ndim(np.arange(self.shape[0])[frames]) == 0 else out


def open_frame(path: str | os.PathLike | RemotePath, *, hdu: int = 0, exptime: float | None = None,
               strict: bool = False) -> Frame:
    """Open one FITS image lazily: the header now, the pixels when the array is computed.

    Parameters
    ----------
    path : str or path-like
        The FITS file: uncompressed, gzip-compressed (``.fits.gz``) or tile-compressed (``.fz``).
    hdu : int
        The image HDU; 0 on an fpack file (empty primary) selects its compressed image.
    exptime : float, optional
        Exposure time override in seconds; by default read from the header.
    strict : bool
        Raise instead of assuming 1 s when the header has no exposure time.

    Returns
    -------
    Frame
        ``.data`` is a single-chunk (rows, columns) float32 dask array with BZERO/BSCALE applied.

    Raises
    ------
    FrameReadError
        If the file is missing, not FITS, truncated, or the HDU is not a 2-D image.
    FrameError
        If the header's exposure time is invalid, or missing with ``strict``.
    ConfigError
        If the ``exptime`` override is not a non-negative number.

    Examples
    --------
    >>> frame = open_frame("raw1.fits")  # doctest: +SKIP
    >>> frame.data.mean().compute()  # doctest: +SKIP
    """
    path = _source(path)
    index, header, layout = read_layout(path, hdu=hdu)
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    blocks = _FitsBlocks([path], [index], shape, [layout])
    stack = da.from_array(blocks, chunks=blocks.shape, asarray=False, lock=False,
                          meta=np.empty((0, 0, 0), np.float32), name=f"frame-{_token(path, index)}")
    if exptime is None:
        t = exposure_time(header, path=str(path), strict=strict)
    else:
        try:
            t = float(exptime)
        except (TypeError, ValueError):
            t = float("nan")
        if not (np.isfinite(t) and t >= 0):
            raise ConfigError("exptime", f"{exptime!r} is not a non-negative exposure time")
    return Frame(data=stack[0], header=header, path=as_location(path), hdu=index, exptime=t)


def open_stack(paths: Sequence[str | os.PathLike], *, hdu: int | Sequence[int] = 0,
               rows_per_chunk: int | None = None, budget: int = CHUNK_BUDGET) -> da.Array:
    """Open frames as one lazy ``(N, rows, columns)`` float32 stack chunked in full-width row bands.

    Every chunk holds the whole stack for a band of rows, so a reduction along the stack axis never
    crosses chunks; each chunk opens, reads and closes every file once.

    Parameters
    ----------
    paths : sequence of path-like
        The frames, all of one shape.
    hdu : int or sequence of int
        The image HDU, for all files or per file.
    rows_per_chunk : int, optional
        Rows per chunk; by default chosen so a chunk uses about ``budget`` bytes.
    budget : int
        Bytes per chunk when ``rows_per_chunk`` is not given.

    Returns
    -------
    dask.array.Array
        Chunks ``(N, rows_per_chunk, columns)``.

    Raises
    ------
    FrameReadError
        If a file cannot be opened (named).
    IncompatibleFramesError
        If a frame's shape differs from the first's (the odd file is named).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> paths = [folder / f"bias{i}.fits" for i in range(3)]
    >>> for i, path in enumerate(paths):
    ...     fits.writeto(path, np.full((40, 8), 1000 + i, np.int16))
    >>> stack = open_stack(paths, rows_per_chunk=16)
    >>> stack.shape, stack.chunks[1], float(stack[:, 0, 0].mean().compute())
    ((3, 40, 8), (16, 16, 8), 1001.0)
    """
    paths = [_source(p) for p in paths]
    if not paths:
        raise IncompatibleFramesError("<stack>", "no frames to stack")
    hdus = [hdu] * len(paths) if isinstance(hdu, int) else list(hdu)
    resolved, layouts, shape = [], [], None
    for path, h in zip(paths, hdus, strict=True):
        index, header, layout = read_layout(path, hdu=h)
        layouts.append(layout)
        this = (int(header["NAXIS2"]), int(header["NAXIS1"]))
        if shape is None:
            shape = this
        elif this != shape:
            raise IncompatibleFramesError(
                path, f"shape {this} differs from {shape} of {paths[0]}", hdu=index
            )
        resolved.append(index)
    rows = rows_per_chunk or rows_for_budget(len(paths), shape[1], shape[0], budget=budget)
    blocks = _FitsBlocks(paths, resolved, shape, layouts)
    return da.from_array(blocks, chunks=(len(paths), rows, shape[1]), asarray=False, lock=False,
                         meta=np.empty((0, 0, 0), np.float32),
                         name=f"stack-{_token(*paths, *resolved, rows)}")


def _token(*parts) -> str:
    """Return a dask key for files: names plus size and modification time, so edits change it."""
    stamp = []
    for part in parts:
        stamp.append(part)
        if isinstance(part, RemotePath):
            st = part.stat()
            stamp.extend((part.url, st.st_size, st.st_mtime_ns, st.etag))
        elif isinstance(part, str) and os.path.exists(part):
            st = os.stat(part)
            stamp.extend((st.st_size, st.st_mtime_ns))

    return tokenize(*stamp)
