"""The exit statuses of ``ccdflow run``: one place, so the command, its help and the README agree."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitStatus"]


class ExitStatus(IntEnum):
    """What a night's exit status says happened.

    Examples
    --------
    >>> int(ExitStatus.frames_failed), ExitStatus(130).name
    (1, 'interrupted')
    """

    ok = 0
    """Every frame and product done (or reused from an earlier run)."""
    frames_failed = 1
    """Some frames or masters failed (named in the report); the rest is done."""
    config_error = 2
    """Configuration or input error found before any work (including an unreachable cluster,
    or a product that would overwrite an input); nothing was computed."""
    aborted = 3
    """The environment stopped the run (disk full, unwritable output, lost cluster); the report
    says why and a rerun resumes."""
    interrupted = 130
    """Ctrl-C; a rerun resumes."""

    @property
    def meaning(self) -> str:
        """One line saying what the status means (``ccdflow run --help``, README)."""
        return _MEANING[self]


_MEANING = {
    ExitStatus.ok: "all done",
    ExitStatus.frames_failed: "some frames or masters failed, the rest done",
    ExitStatus.config_error: "configuration or input error, found before any work",
    ExitStatus.aborted: "aborted by the environment (disk full, unwritable output, lost cluster)",
    ExitStatus.interrupted: "interrupted (Ctrl-C); a rerun resumes",
}
