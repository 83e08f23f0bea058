"""``report.html``: a self-contained page of a reduced night, built from its output folder alone.

The page reads ``report.json`` and the FITS products (masters, calibrated lights, stacks), so it can be
rebuilt at any time (``ccdflow report OUTPUT``); what it shows of each product is kept in
``report.cache.json`` while the product is unchanged (`ccdflow.io.report_cache`). Pictures are
inlined as base64 PNG: the page needs no network and no other file. matplotlib draws them.
"""

from __future__ import annotations

import json
import logging
import math
import os
from html import escape
from pathlib import Path
from typing import Any

from ccdflow.errors import CcdflowError, ConfigError
from ccdflow.io.filelist import read_filelist
from ccdflow.io.location import as_location
from ccdflow.io.report_cache import ProductSummaries
from ccdflow.io.report_style import PAGE_CSS
from ccdflow.io.write import atomic_path

__all__ = ["page_products", "render_report_page", "write_report_page", "write_report_page_or_warn"]

logger = logging.getLogger(__name__)

# "finished by an earlier run"; "skipped" is how report.json files of earlier versions said it
_REUSED = ("reused", "skipped")


def _local(output_dir: Path, recorded: str | None) -> Path | None:
    """The product's file in this output folder (the report's absolute paths may predate a move)."""
    if not recorded:
        return None
    path = output_dir / Path(recorded).parent.name / Path(recorded).name
    return path if path.is_file() else None


def _number(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    return escape(format(value, fmt))


def _img(uri: str, alt: str, css: str) -> str:
    return f'<img class="{css}" src="{uri}" alt="{escape(alt)}">'


def _status(word: str) -> str:
    kind = "bad" if word == "failed" else "old" if word in _REUSED else "good"
    return f'<span class="status {kind}">{escape(word)}</span>'


def _failures(report: dict) -> str:
    failures = report.get("failures") or {}
    if not failures:
        return ('<section class="ok-box"><h2>No failures</h2>'
                "<p>Every frame and master succeeded.</p></section>")
    items = "".join(f"<li><b>{escape(Path(str(what)).name)}</b> <code>{escape(str(what))}</code>"
                    f"<div class=reason>{escape(str(why))}</div></li>" for what, why in failures.items())
    return (f'<section class="fail-box" id="failures"><h2>{len(failures)} failure(s)</h2>'
            f"<ul>{items}</ul></section>")


def _summary(report: dict) -> str:
    frames = list((report.get("frames") or {}).values())
    masters = list((report.get("masters") or {}).values())

    def tally(items: list[dict], words: tuple[str, ...]) -> int:
        return sum(1 for item in items if item.get("status") in words)

    cards = [("lights done", tally(frames, ("done",)), "good"),
             ("lights reused", tally(frames, _REUSED), "old"),
             ("lights failed", tally(frames, ("failed",)), "bad"),
             ("masters built", tally(masters, ("built",)), "good"),
             ("masters reused", tally(masters, _REUSED), "old"),
             ("masters failed", tally(masters, ("failed",)), "bad")]
    html = '<section><h2>Summary</h2><div class="cards">' + "".join(
        f'<div class="card {kind if n else ""}"><div class="n">{n}</div><div>{label}</div></div>'
        for label, n, kind in cards) + "</div>"
    warnings = report.get("warnings") or []
    if warnings:
        html += ('<div class="warn-box"><h3>Warnings</h3><ul>'
                 + "".join(f"<li>{escape(str(w))}</li>" for w in warnings) + "</ul></div>")
    return html + "</section>"


def _timings(report: dict) -> str:
    seconds = {k: v for k, v in (report.get("seconds") or {}).items() if isinstance(v, int | float)}
    if not seconds:
        return ""
    longest = max(seconds.values()) or 1.0
    rows = "".join(
        f"<tr><td>{escape(stage)}</td><td class=num>{_number(value, '.2f')} s</td>"
        f'<td class="barcell"><div class="bar" style="width:{100 * value / longest:.1f}%"></div></td></tr>'
        for stage, value in seconds.items())
    return f"<section><h2>Time per stage</h2><table class=timings>{rows}</table></section>"


def _master_card(output_dir: Path, name: str, entry: dict, *, max_side: int,
                 summaries: ProductSummaries) -> str:
    path = _local(output_dir, entry.get("output")) or _local(output_dir, f"masters/{name}.fits")
    numbers = [("status", _status(str(entry.get("status", "?")))),
               ("frames", _number(len(entry.get("inputs") or []) or None, "d")),
               ("rejected", _number(entry.get("rejected_fraction"), ".3%")),
               ("time", _number(entry.get("seconds"), ".2f") + " s")]
    pictures = ""
    if path is not None:
        product = summaries.get(path, max_side=max_side)
        numbers[2:2] = [("median", _number(product["median"], ".5g")),
                        ("robust std", _number(product["std"], ".4g")),
                        ("median error", _number(product["error_median"], ".3g"))]
        pictures = _img(product["picture"], f"master {name}", "pic")
        if product["count_range"] is not None:
            low, high = product["count_range"]
            numbers.append(("frames kept per pixel", f"{low}&ndash;{high}"))
            pictures += _img(product["count_picture"], f"master {name} count map", "pic")
    if entry.get("error"):
        numbers.append(("error", f'<span class="reason">{escape(str(entry["error"]))}</span>'))
    table = "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in numbers)
    caption = ('<div class="caption">image (zscale) &middot; frames kept per pixel '
               "(darker: more rejected)</div>" if pictures else "")
    return (f'<div class="master"><h3>{escape(name)}</h3><div class="pics">{pictures}</div>'
            f"{caption}<table class=kv>{table}</table></div>")


def _masters(output_dir: Path, report: dict, *, max_side: int, summaries: ProductSummaries) -> str:
    entries = dict(report.get("masters") or {})
    for path in sorted((output_dir / "masters").glob("*.fits")):  # products the report does not list
        entries.setdefault(path.stem, {"status": "built", "output": str(path)})
    if not entries:
        return ""
    cards = "".join(_master_card(output_dir, name, entry, max_side=max_side, summaries=summaries)
                    for name, entry in entries.items())
    return f'<section><h2>Masters</h2><div class="masters">{cards}</div></section>'


def _input_order(report: dict, paths: list[str], *, options: dict | None = None) -> list[str]:
    """The frames in the order of the night's file list when it is still readable, else by name.

    ``options``: the storage options of a list named by URL (a night has one set for all).
    """
    listed = (report.get("config") or {}).get("input", {}).get("filelist")
    rank: dict[str, int] = {}
    if listed:
        try:
            rank = {str(f.path): i for i, f in enumerate(read_filelist(listed, storage_options=options))}
        except (CcdflowError, OSError) as err:
            logger.info("lights listed by name: the file list is not readable (%s)", err)
    return sorted(paths, key=lambda p: (rank.get(p, len(rank)), p))


def _light_row(output_dir: Path, number: int, raw: str, entry: dict, *, max_side: int,
               summaries: ProductSummaries) -> str:
    path = _local(output_dir, entry.get("output"))
    product = summaries.get(path, max_side=max_side) if path is not None else {}
    timings = (entry.get("stats") or {}).get("timings") or {}
    steps = "<br>".join(f"{escape(str(k))} {_number(v, '.2f')}" for k, v in timings.items())
    cells = [
        str(number),
        _img(product["picture"], Path(raw).name, "thumb") if product else "",
        f"<b>{escape(Path(raw).name)}</b><div class=path>{escape(raw)}</div>"
        + (f'<div class="reason">{escape(str(entry["error"]))}</div>' if entry.get("error") else ""),
        escape(product.get("filter", "")),
        _status(str(entry.get("status", "?"))),
        _number(product.get("exptime"), ".4g"),
        _number(product.get("median"), ".5g"),
        _number(product.get("std"), ".4g"),
        _number(product.get("flagged"), ".3%"),
        _number(entry.get("seconds"), ".2f") + (f"<div class=steps>{steps}</div>" if steps else ""),
    ]
    css = ' class="failed"' if entry.get("status") == "failed" else ""
    return f"<tr{css}>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _lights(output_dir: Path, report: dict, *, max_side: int, summaries: ProductSummaries) -> str:
    frames = report.get("frames") or {}
    if not frames:
        return "<section><h2>Lights</h2><p>No frame was calibrated.</p></section>"
    heads = ("#", "picture", "frame", "filter", "status", "exposure [s]", "sky (median)",
             "noise (robust std)", "flagged", "time [s]")
    rows = "".join(_light_row(output_dir, i + 1, raw, frames[raw], max_side=max_side,
                              summaries=summaries)
                   for i, raw in enumerate(_input_order(
                       report, list(frames), options=getattr(output_dir, "storage_options", None))))
    return (f"<section><h2>Lights ({len(frames)})</h2><table class=lights><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in heads) + f"</tr></thead><tbody>{rows}</tbody></table>"
            "<p class=note>Sky and noise are the median and 1.4826&times;MAD of the calibrated image "
            "(ADU); flagged is the fraction of pixels with a MASK bit set.</p></section>")


def _stacks(output_dir: Path, report: dict, *, max_side: int, summaries: ProductSummaries) -> str:
    cards = []
    for name, entry in (report.get("stacks") or {}).items():
        path = _local(output_dir, entry.get("output"))
        picture, numbers = "", _status(str(entry.get("status", "?")))
        if path is not None:
            product = summaries.get(path, max_side=max_side)
            picture = _img(product["picture"], f"stack {name}", "pic")
            numbers += (f" median {_number(product['median'], '.5g')}, robust std "
                        f"{_number(product['std'], '.4g')}")
        cards.append(f'<div class="master"><h3>{escape(name)}</h3><div class="pics">{picture}</div>'
                     f"<p>{numbers}; {len(entry.get('inputs') or [])} frames</p></div>")
    return f'<section><h2>Stacks</h2><div class="masters">{"".join(cards)}</div></section>' if cards else ""


def _thumb_side(max_side: int) -> int:
    """The side of a light's picture: half a master's."""
    return max(32, max_side // 2)


def page_products(output_dir: str | os.PathLike, report: dict, *,
                  max_side: int = 256) -> list[tuple[Path, int]]:
    """The products the page pictures (masters, lights, stacks of ``report``), each with its side.

    They can be summarized beforehand, in parallel (`ProductSummaries.put`), so that writing the
    page reads none of them.
    """
    output_dir = as_location(output_dir)
    listed = [*((entry, max_side) for entry in (report.get("masters") or {}).values()),
              *((entry, _thumb_side(max_side)) for entry in (report.get("frames") or {}).values()),
              *((entry, max_side) for entry in (report.get("stacks") or {}).values())]
    return [(path, side) for entry, side in listed
            if (path := _local(output_dir, entry.get("output"))) is not None]


def render_report_page(output_dir: str | os.PathLike, *, max_side: int = 256) -> str:
    """The HTML text of the night's page (see `write_report_page`)."""
    location = as_location(output_dir)
    return _render(location, max_side=max_side, summaries=ProductSummaries(location))


def _render(output_dir, *, max_side: int, summaries: ProductSummaries) -> str:
    try:
        report = json.loads((output_dir / "report.json").read_text())
    except OSError as err:
        raise ConfigError(str(output_dir), f"no readable report.json: {err.strerror}") from err
    except json.JSONDecodeError as err:
        raise ConfigError(str(output_dir / "report.json"), f"not valid JSON: {err}") from err
    thumb = _thumb_side(max_side)
    title = f"ccdflow night: {output_dir.resolve().name}"
    meta = (f"output <code>{escape(str(report.get('output', output_dir)))}</code> &middot; started "
            f"{escape(str(report.get('started', '?')))} &middot; "
            f"ccdflow {escape(str(report.get('version', '?')))}")
    body = "".join([_failures(report), _summary(report), _timings(report),
                    _masters(output_dir, report, max_side=max_side, summaries=summaries),
                    _lights(output_dir, report, max_side=thumb, summaries=summaries),
                    _stacks(output_dir, report, max_side=max_side, summaries=summaries)])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{PAGE_CSS}</style></head>"
            f'<body><header><h1>{escape(title)}</h1><p class="meta">{meta}</p></header>'
            f"<main>{body}</main></body></html>\n")


def write_report_page(output_dir: str | os.PathLike, *, max_side: int = 256,
                      summaries: ProductSummaries | None = None) -> Path:
    """Write ``report.html`` beside ``report.json`` in a night's output folder, atomically.

    The page shows failures first with their reasons, then the counts of frames done, reused and
    failed, the warnings, the time per stage, each master (image and count map, median, robust
    standard deviation, rejected fraction), a table of the lights in input order (picture,
    exposure, sky level, noise, flagged fraction, timings) and the stacks. Everything is inline: it
    opens from disk with no network. Text from files and headers is HTML-escaped.

    Parameters
    ----------
    output_dir : str or path-like
        The night's output folder (holding ``report.json``, ``masters/``, ``lights/``...).
    max_side : int
        Longest side of a master's picture in pixels (the lights' pictures are half that); large
        images are shrunk by block means, which keeps the page small.
    summaries : ProductSummaries, optional
        The folder's page cache when the caller has it loaded already.

    Returns
    -------
    pathlib.Path
        ``<output_dir>/report.html``.

    Raises
    ------
    ConfigError
        If ``report.json`` is missing or not valid JSON.
    ImportError
        If matplotlib is not installed.

    Examples
    --------
    >>> write_report_page("reduced/")  # doctest: +SKIP
    PosixPath('reduced/report.html')
    """
    location = as_location(output_dir)
    summaries = summaries if summaries is not None else ProductSummaries(location)
    text = _render(location, max_side=max_side, summaries=summaries)
    path = location / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    summaries.save()
    return path


def write_report_page_or_warn(output_dir: str | os.PathLike, *,
                              summaries: ProductSummaries | None = None) -> Path | None:
    """Write ``report.html`` as `write_report_page` does; without matplotlib, log a warning instead.

    The page is an extra of a night: a missing plotting library or an unreadable product skips it
    (``ccdflow report OUTPUT`` rebuilds it later) and never fails the night.

    Parameters
    ----------
    output_dir : str or path-like
        The night's output folder.
    summaries : ProductSummaries, optional
        Its page cache, when loaded already.

    Returns
    -------
    pathlib.Path or None
        The page, or ``None`` when it was skipped.

    Examples
    --------
    >>> write_report_page_or_warn("reduced/")  # doctest: +SKIP
    PosixPath('reduced/report.html')
    """
    try:
        return write_report_page(output_dir, summaries=summaries)
    except ImportError as err:
        logger.warning("report.html skipped: %s", err)
    except OSError as err:  # a product removed or truncated since the night wrote it
        logger.warning("report.html skipped: a product could not be read: %s", err)
    return None
