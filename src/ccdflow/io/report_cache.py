"""What ``report.html`` shows of each FITS product, kept while the product is unchanged.

Reading a product, its robust statistics and its picture cost tens of milliseconds; a night of a
thousand lights would spend most of a rerun redrawing pictures of files it did not touch. The page
keeps them in ``report.cache.json`` beside ``report.json``, each under the product's path, size
and modification time (ns; and an object's ETag): a product written again, or replaced, is read
again.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ccdflow.io.location import RemotePath, as_location, open_fits, stat
from ccdflow.io.pictures import image_stats, png_data_uri
from ccdflow.io.write import atomic_path

__all__ = ["CACHE_NAME", "ProductSummaries", "product_stamp", "summarize_product",
           "summarize_stamped"]

logger = logging.getLogger(__name__)

#: The page's cache, in the night's output folder.
CACHE_NAME = "report.cache.json"
_FORMAT = 2  # 2: paletted pictures


def _key(path: Path | RemotePath, max_side: int) -> str:
    return f"{path.parent.name}/{path.name}@{max_side}"


def product_stamp(path: Path | RemotePath) -> list:
    """What says a product changed: size, modification time (ns) and an object's ETag.

    An object's time counts whole seconds: its ETag tells a rewrite within one.
    """
    status = stat(path)
    return [status.st_size, status.st_mtime_ns, getattr(status, "etag", "")]


def summarize_stamped(path: Path | RemotePath, *, max_side: int) -> tuple[list, dict[str, Any]]:
    """The product's stamp, then its summary (`summarize_product`): a task for a cluster's worker.

    The stamp is taken first: a product rewritten meanwhile is summarized again by the page.
    """
    stamp = product_stamp(path)
    return stamp, summarize_product(path, max_side=max_side)


def summarize_product(path: Path | RemotePath, *, max_side: int) -> dict[str, Any]:
    """What the page shows of a product: its picture, statistics and a few header cards.

    Returns
    -------
    dict
        ``picture`` (PNG ``data:`` URI), ``median``, ``std`` (1.4826 x MAD of the finite pixels),
        ``error_median`` (of its ``ERROR`` extension, NaN without), ``flagged`` (fraction of
        pixels with a ``MASK`` bit, None without), ``count_picture`` and ``count_range`` (of a
        master's ``NCOMBINE`` map, None without), ``filter`` and ``exptime`` (header cards).
    """
    with open_fits(path, memmap=False) as hdus:
        image = np.asarray(hdus[0].data, dtype=np.float32)
        names = {hdu.name for hdu in hdus}
        stats = image_stats(image)
        out: dict[str, Any] = {
            "picture": png_data_uri(image, max_side=max_side), "median": stats.median,
            "std": stats.std, "error_median": math.nan, "flagged": None, "count_picture": None,
            "count_range": None, "filter": str(hdus[0].header.get("FILTER", "")),
            "exptime": hdus[0].header.get("EXPTIME")}
        if "ERROR" in names and np.isfinite(hdus["ERROR"].data).any():
            out["error_median"] = float(np.nanmedian(hdus["ERROR"].data))
        if "MASK" in names:
            out["flagged"] = float(np.count_nonzero(hdus["MASK"].data)) / hdus["MASK"].data.size
        if "NCOMBINE" in names:
            count = np.asarray(hdus["NCOMBINE"].data)
            low, high = int(count.min()), int(count.max())
            out["count_range"] = [low, high]
            out["count_picture"] = png_data_uri(count, max_side=max_side, cmap="viridis",
                                                limits=(min(low, high - 1), high))
    if not isinstance(out["exptime"], int | float):
        out["exptime"] = None
    return out


class ProductSummaries:
    """`summarize_product` of each product of a night's output folder, cached on disk.

    Parameters
    ----------
    output_dir : Path or RemotePath
        The night's output folder (the cache is ``output_dir / CACHE_NAME``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from astropy.io import fits
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> fits.PrimaryHDU(np.arange(16.0).reshape(4, 4)).writeto(folder / "a.fits")
    >>> summaries = ProductSummaries(folder)
    >>> summaries.get(folder / "a.fits", max_side=4)["median"], summaries.read
    (7.5, 1)
    >>> summaries.save(); again = ProductSummaries(folder)
    >>> again.get(folder / "a.fits", max_side=4)["median"], again.read
    (7.5, 0)
    """

    def __init__(self, output_dir: Path | RemotePath):
        self.path = as_location(output_dir) / CACHE_NAME
        self.read = 0  # products read (not found unchanged in the cache)
        self._put = 0  # summaries made elsewhere, added with `put`
        self._used: dict[str, dict] = {}
        try:
            cache = json.loads(self.path.read_text())
            self._kept = cache["products"] if cache.get("format") == _FORMAT else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._kept = {}  # none yet, or unreadable: every product is read

    def get(self, path: Path | RemotePath, *, max_side: int) -> dict[str, Any]:
        """The product's summary: from the cache if its size and time are unchanged, else read."""
        key, stamp = _key(path, max_side), product_stamp(path)
        entry = self._kept.get(key)
        if not (isinstance(entry, dict) and entry.get("stamp") == stamp):
            entry = {"stamp": stamp, "summary": summarize_product(path, max_side=max_side)}
            self.read += 1
        self._used[key] = entry
        return entry["summary"]

    def stale(self, path: Path | RemotePath, *, max_side: int) -> bool:
        """Whether `get` would read the product (not cached as it is now)."""
        entry = self._kept.get(_key(path, max_side))
        return not (isinstance(entry, dict) and entry.get("stamp") == product_stamp(path))

    def put(self, path: Path | RemotePath, *, max_side: int, stamp: list,
            summary: dict[str, Any]) -> None:
        """Hold a summary made elsewhere (`summarize_stamped`, e.g. on a cluster's workers).

        It is written by `save` when the page used it.
        """
        self._kept[_key(path, max_side)] = {"stamp": stamp, "summary": summary}
        self._put += 1

    def save(self) -> None:
        """Write the entries used by this page (the others belonged to products now gone).

        Nothing is written when they are the cached ones, unchanged (a rerun's page).
        """
        if self.read == 0 and self._put == 0 and self._used.keys() == self._kept.keys():
            return
        try:
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps({"format": _FORMAT, "products": self._used}))
        except OSError as err:  # only a speed-up of the next page
            logger.warning("%s not written: %s", self.path, err)
