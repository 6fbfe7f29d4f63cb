"""The page: one self-contained HTML file (styles, plots and a small script inline; nothing
fetched), readable without the script, in a narrow window and on paper."""

from __future__ import annotations

import datetime
import json
from html import escape

from caitool import __version__
from caitool.run_report import sections
from caitool.run_report.gather import Section

TITLES = {"run": "Run", "supervised": "Supervised stage", "judge": "Judge diagnostics",
          "reward": "Reward model", "rl": "RL", "evaluation": "Evaluation"}

STYLE = """
:root { color-scheme: light; --ink: #1a202c; --faint: #4a5568; --line: #cbd5e0; --bg: #fff; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
  background: var(--bg); margin: 0 auto; padding: 1rem; max-width: 72rem; }
h1 { font-size: 1.6rem; margin: 0 0 .2rem; } h2 { border-bottom: 2px solid var(--line);
  padding-bottom: .2rem; margin-top: 2rem; } h3 { margin-bottom: .3rem; } h4 { margin: .6rem 0 .2rem; }
nav ul { display: flex; flex-wrap: wrap; gap: .4rem 1rem; list-style: none; padding: 0; }
.note, .label, caption { color: var(--faint); } .label { font-size: .8rem; margin: .4rem 0 0;
  text-transform: uppercase; letter-spacing: .03em; } caption { text-align: left; }
.scroll { overflow-x: auto; } table { border-collapse: collapse; margin: .4rem 0 1rem; }
th, td { border-bottom: 1px solid var(--line); padding: .2rem .6rem; text-align: left;
  vertical-align: top; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1rem; }
figure { margin: 0; } figcaption { color: var(--faint); font-size: .85rem; }
svg.plot { width: 100%; height: auto; max-width: 40rem; display: block; }
svg .axis { stroke: var(--ink); } svg .grid { stroke: #edf2f7; } svg .tick { font-size: 11px; fill: var(--faint); }
svg .label { font-size: 12px; fill: var(--ink); text-transform: none;
  letter-spacing: 0; } svg .diagonal { stroke: var(--faint); stroke-dasharray: 4 3; }
svg .chance { stroke: #c53030; stroke-dasharray: 2 3; }
.incomplete, .warnings { border-left: 4px solid #dd6b20; background: #fffaf0; padding: .4rem .8rem; }
.plain { border-left: 4px solid #3182ce; background: #ebf8ff; padding: .4rem .8rem; }
details.record { border: 1px solid var(--line); border-radius: 4px; margin: .3rem 0; padding: .3rem .6rem; }
details.record > summary { cursor: pointer; overflow-wrap: anywhere; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; margin: .1rem 0 .4rem; }
.round { border-left: 3px solid #d69e2e; padding-left: .6rem; margin: .6rem 0; }
del { background: #fed7d7; color: #742a2a; }
ins { background: #c6f6d5; color: #22543d; text-decoration: none; font-weight: 600; }
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 1rem; }
code { overflow-wrap: anywhere; } .filter { margin: .4rem 0; } .hidden { display: none; }
@media print { nav, .filter { display: none; } details.record { break-inside: avoid; }
  body { max-width: none; font-size: 11pt; } h2 { break-after: avoid; } }
"""

# Filters the sample by principle; without it (scripts off, printing) every record shows.
SCRIPT = """
(function () {
  var select = document.getElementById("principle-filter");
  if (select) {
    select.parentNode.classList.remove("hidden");
    select.addEventListener("change", function () {
      var wanted = select.value;
      document.querySelectorAll("details.record[data-principles]").forEach(function (el) {
        var show = !wanted || el.getAttribute("data-principles").indexOf("|" + wanted + "|") >= 0;
        el.classList.toggle("hidden", !show);
      });
    });
  }
  // The plots' drawn sizes, for a browser test to read from the page.
  var sizes = [];
  document.querySelectorAll("svg.plot").forEach(function (el) {
    var box = el.getBoundingClientRect();
    sizes.push(Math.round(box.width) + "x" + Math.round(box.height));
  });
  document.body.setAttribute("data-plot-sizes", sizes.join(" "));
  document.body.setAttribute("data-script", "ran");
})();
"""

RENDERERS = {"run": sections.run, "supervised": sections.supervised, "judge": sections.judge,
             "reward": sections.reward, "rl": sections.rl, "evaluation": sections.evaluation}


def render(path: str, found: dict[str, Section | None], problems: list[str],
           incomplete: dict[str, list[str]]) -> str:
    """The whole page; ``incomplete`` maps a section to its files that had problems."""
    parts, shown = [], []
    for key, section in found.items():
        if section is None:
            continue
        body = RENDERERS[key](section)
        if not body:
            continue
        shown.append(key)
        note = ""
        if incomplete.get(key):
            note = (f'<p class="incomplete">Incomplete: {escape(", ".join(incomplete[key]))} '
                    "had problems (listed at the top); the numbers here leave those parts out.</p>")
        parts.append(f'<section id="{key}"><h2>{TITLES[key]}</h2>{note}{body}</section>')
    missing = [TITLES[k] for k in TITLES if k not in shown]
    nav = "".join(f'<li><a href="#{k}">{TITLES[k]}</a></li>' for k in shown)
    head = (f'<p class="note">{escape(path)} · caitool {escape(__version__)} · written '
            f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC</p>')
    if missing:
        head += (f'<p class="note">Not in this run (no data for them): '
                 f'{escape(", ".join(missing))}.</p>')
    if problems:
        listed = "".join(f"<li><code>{escape(p)}</code></li>" for p in problems[:200])
        more = f"<li>… and {len(problems) - 200} more</li>" if len(problems) > 200 else ""
        head += (f'<div class="warnings" id="warnings"><strong>{len(problems)} problem(s) while '
                 f"reading the run</strong><ul>{listed}{more}</ul></div>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>caitool run report: {escape(path)}</title><style>{STYLE}</style></head>'
            f'<body data-sections="{escape(json.dumps(shown), quote=True)}"><header>'
            f'<h1>Run report</h1>{head}</header><nav aria-label="sections"><ul>{nav}</ul></nav>'
            f'<main>{"".join(parts)}</main><script>{SCRIPT}</script></body></html>\n')
