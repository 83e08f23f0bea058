"""Names that come from files and headers, made safe to be a file name, a zarr key or a FITS card.

A raw file name, a ``FILTER`` or an ``OBJECT`` value can hold anything: accents, ``/``, ``..``,
spaces, control characters. Every product path, cube name and stack name is built through
`safe_name`, and every such text written into a header goes through `header_text`, so the
original stays readable in the product while no output ever lands outside its folder.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["header_text", "safe_name"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")
_PATH_LIKE = re.compile(r"[/\\\x00-\x1f\x7f]|\.\.")
_MAX_LENGTH = 100  # leaves room for suffixes under the 255-byte limit of common file systems


def safe_name(text: str, *, fallback: str = "unnamed") -> str:
    """A name made of ``A-Z a-z 0-9 _ . + -`` only, never ``.``/``..`` nor starting with a dot.

    Accented letters lose their accent (``lumière`` -> ``lumiere``); every other run of unsafe
    characters (spaces, ``/``, ``*``, control characters) becomes one ``-``, and dots are not
    kept at either end. Unless the only change was a space made ``-`` (or an accent dropped),
    a short hash of the original is appended, so that a path-like or symbol-laden original
    (``../V``, ``V*``) can never take the name of a plain one (``V``).

    Parameters
    ----------
    text : str
        The original name (a file stem, a ``FILTER`` or ``OBJECT`` value).
    fallback : str
        Used when nothing safe is left (an empty or all-symbol name), with the hash appended.

    Returns
    -------
    str
        A name usable as one path component and one zarr key.

    Examples
    --------
    >>> safe_name("light_V_001"), safe_name("lumière_V_001"), safe_name("V_SYNTH FIELD")
    ('light_V_001', 'lumiere_V_001', 'V_SYNTH-FIELD')
    >>> safe_name("../../etc/passwd")
    'etc-passwd-936d7c'
    >>> safe_name("..")
    'unnamed-9d891e'
    """
    text = str(text)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE.sub("-", ascii_text).strip("-.")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)
    # a path-like original could be made to collide with a plain one: those carry a hash
    path_like = _PATH_LIKE.search(text) or text.startswith(".")
    only_spaces = cleaned == ascii_text.replace(" ", "-")  # "SYNTH FIELD": common, kept readable
    if cleaned and len(cleaned) <= _MAX_LENGTH and not path_like and only_spaces:
        return cleaned
    digest = hashlib.sha1(text.encode("utf-8", "surrogateescape"), usedforsecurity=False)
    return f"{(cleaned or fallback)[:_MAX_LENGTH]}-{digest.hexdigest()[:6]}"


def header_text(text: str) -> str:
    r"""A text a FITS card can hold (printable ASCII) that still shows the original.

    Characters outside printable ASCII are written as Python escapes (``è`` -> ``\xe8``), so
    the original name can be read back from the product's header.

    Examples
    --------
    >>> print(header_text("lumière_V_001.fits"))
    lumi\xe8re_V_001.fits
    >>> print(header_text("tab" + chr(9) + "here"))
    tab\there
    """
    escaped = str(text).encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii")
                   for c in escaped)
