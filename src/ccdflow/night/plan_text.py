"""A night's plan as text for the terminal: the masters to build and what each light will use."""

from __future__ import annotations

from ccdflow.night.plan import Plan

__all__ = ["plan_lines"]

# ccdflow's master dark is a rate (EXPTIME = 1 s): a frame's dark scale is its exposure over 1 s
_MASTER_DARK_SECONDS = 1.0


def plan_lines(plan: Plan) -> list[str]:
    """Describe a plan without computing anything: masters, then one row per light or arc.

    Parameters
    ----------
    plan : Plan
        From `ccdflow.night.run.plan_night`.

    Returns
    -------
    list of str
        A line of masters (with their frame counts), a header row, then per frame (in plan order):
        file name, filter, exposure, the bias, the dark with its scale ``s = t_frame / t_dark``
        (``-`` where the step is skipped), the flat and the output file; then the plan's warnings.

    Examples
    --------
    >>> plan_lines(Plan())[:2]
    ['masters to build: none', 'frames to calibrate: 0']
    """
    masters = ", ".join(f"{m.name} ({len(m.frames)} frames)" for m in plan.masters) or "none"
    lines = [f"masters to build: {masters}", f"frames to calibrate: {len(plan.frames)}"]
    if plan.frames:
        width = max(len(fp.frame.path.name) for fp in plan.frames)
        lines.append(f"{'frame':<{width}}  {'filter':<6} {'exptime':>8}  {'bias':<6} "
                     f"{'dark x scale':<16} {'flat':<12} output")
    for fp in plan.frames:
        dark = (f"{fp.dark} x {fp.params.exptime / _MASTER_DARK_SECONDS:g}" if fp.dark else "-")
        lines.append(f"{fp.frame.path.name:<{width}}  {fp.frame.filter or '-':<6} "
                     f"{fp.params.exptime:>8g}  {fp.bias or '-':<6} {dark:<16} {fp.flat or '-':<12} "
                     f"{fp.output.parent.name}/{fp.output.name}")
    lines.extend(f"warning: {message}" for message in plan.warnings)
    return lines
