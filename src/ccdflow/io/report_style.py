"""The style sheet of the night page (``report.html``), inlined so the page needs no other file."""

__all__ = ["PAGE_CSS"]

PAGE_CSS = """
:root { --ink: #1d2430; --muted: #5d6778; --line: #d9dee7; --bg: #f4f6f9; --card: #ffffff;
        --good: #1f7a3d; --bad: #b3261e; --old: #55657f; --warn: #8a5a00; --accent: #2f6fb3; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
header { background: #1d2f4a; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header .meta { margin: 0; color: #c9d4e4; font-size: 13px; }
header code { color: #fff; }
main { max-width: 1220px; margin: 0 auto; padding: 18px 24px 40px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
          padding: 14px 18px; margin: 0 0 16px; }
h2 { margin: 0 0 10px; font-size: 17px; }
h3 { margin: 0 0 8px; font-size: 15px; }
code, .path { font: 12px/1.3 ui-monospace, SFMono-Regular, Menlo, monospace; color: var(--muted);
              word-break: break-all; }
.fail-box { border: 2px solid var(--bad); background: #fdf0ef; }
.fail-box h2 { color: var(--bad); }
.fail-box ul { margin: 0; padding-left: 20px; }
.fail-box li { margin: 0 0 8px; }
.ok-box { border-left: 5px solid var(--good); }
.ok-box h2 { color: var(--good); margin-bottom: 2px; }
.ok-box p { margin: 0; color: var(--muted); }
.reason { color: var(--bad); font-size: 13px; white-space: pre-wrap; word-break: break-word; }
.warn-box { margin-top: 12px; border-left: 4px solid var(--warn); background: #fff8e8; padding: 8px 14px; }
.warn-box h3 { color: var(--warn); margin-bottom: 4px; }
.warn-box ul { margin: 0; padding-left: 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { flex: 1 1 120px; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
        color: var(--muted); }
.card .n { font-size: 26px; font-weight: 600; color: var(--ink); }
.card.good .n { color: var(--good); } .card.bad .n { color: var(--bad); } .card.old .n { color: var(--old); }
.card.bad { border-color: var(--bad); background: #fdf0ef; }
table { border-collapse: collapse; }
td, th { padding: 4px 8px; text-align: left; vertical-align: middle; }
.timings td { border-bottom: 1px solid var(--line); }
.timings .num { text-align: right; white-space: nowrap; }
.barcell { width: 420px; }
.bar { height: 12px; min-width: 2px; border-radius: 3px; background: var(--accent); }
.masters { display: grid; grid-template-columns: repeat(auto-fill, minmax(540px, 1fr)); gap: 14px; }
.master { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; }
.pics { display: flex; gap: 8px; flex-wrap: wrap; }
.pic { width: 256px; height: auto; border: 1px solid var(--line); image-rendering: pixelated;
       background: repeating-conic-gradient(#eee 0 25%, #fff 0 50%) 0 0 / 12px 12px; }
.thumb { width: 96px; height: auto; border: 1px solid var(--line); image-rendering: pixelated;
         display: block; }
.caption { color: var(--muted); font-size: 12px; margin: 4px 0 6px; }
.kv th { color: var(--muted); font-weight: normal; padding-left: 0; }
.kv td, .kv th { padding-top: 2px; padding-bottom: 2px; }
.lights { width: 100%; }
.lights thead th { border-bottom: 2px solid var(--line); color: var(--muted); font-weight: 600;
                   font-size: 12px; white-space: nowrap; }
.lights td { border-bottom: 1px solid var(--line); }
.lights tr.failed td { background: #fdf0ef; }
.lights td:nth-child(n+6) { text-align: right; white-space: nowrap; }
.lights td:last-child { white-space: normal; max-width: 190px; }
.steps { color: var(--muted); font-size: 11px; line-height: 1.3; }
.status { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; color: #fff; }
.status.good { background: var(--good); } .status.bad { background: var(--bad); }
.status.old { background: var(--old); }
.note { color: var(--muted); font-size: 12px; margin: 8px 0 0; }
"""
