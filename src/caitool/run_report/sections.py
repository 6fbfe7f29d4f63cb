"""Each section's HTML from the numbers :mod:`caitool.run_report.gather` found; an empty
string where there is nothing to show."""

from __future__ import annotations

from html import escape
from typing import Any

from caitool.run_report import numbers, svg
from caitool.run_report.gather import Section
from caitool.run_report.markup import (
    Raw,
    answer_pair,
    interval,
    number,
    percent,
    supervised_record,
    table,
)
from caitool.stages.evaluate import independence
from caitool.stages.evaluate.multiple_choice import at_chance


def _figure(plot: str, caption: str) -> str:
    return f"<figure>{plot}<figcaption>{escape(caption)}</figcaption></figure>"


def _plots(*figures: str) -> str:
    shown = [f for f in figures if f]
    return f'<div class="plots">{"".join(shown)}</div>' if shown else ""


def _key_values(pairs: dict[str, Any]) -> str:
    return table(["", ""], [[k, v] for k, v in pairs.items()], numeric_from=99)


def run(section: Section) -> str:
    data = section.data
    out = []
    if data["roles"]:
        out.append("<h3>Models</h3>" + table(["role", "model"], list(data["roles"].items()),
                                             numeric_from=99))
    if data["settings"]:
        rows = [[stage, ", ".join(f"{k}={v}" for k, v in values.items())]
                for stage, values in data["settings"].items()]
        out.append("<h3>Settings</h3>" + table(["stage", "settings"], rows, numeric_from=99))
    chain = data["chain"]
    if chain:
        rows = [["trained here", ", ".join(chain["trained"]) or "–"],
                ["wrote the training text", ", ".join(chain["written_by"]) or "–"],
                ["labelled the preferences", ", ".join(chain["labelled_by"]) or "–"]]
        if chain["unknown_data"]:
            rows.append(["training files with no provenance", ", ".join(chain["unknown_data"])])
        out.append("<h3>Provenance chain</h3><p>Behind the last model trained here, followed "
                   "back through its base models and data:</p>" + table(["", ""], rows, numeric_from=99))
    if data["timeline"]:
        rows = [[name, when, "–" if gap is None else f"{gap:.0f} s",
                 number(data["runtimes"].get(name)) if name in data["runtimes"] else ""]
                for name, when, gap in data["timeline"]]
        day = f" on {data['day']}" if data.get("day") else ""
        out.append("<h3>Timings</h3><p class=\"note\">When each stage's output was finished "
                   f"(file times{day}), the time since the one before, and the trainers' own "
                   "runtime.</p>"
                   + table(["output", "finished (UTC)", "after the previous", "train runtime (s)"],
                           rows, numeric_from=2))
    return "".join(out)


def supervised(section: Section) -> str:
    stats: numbers.Supervised = section.data["stats"]
    rounds = sorted(stats.rounds.items())
    rows = [[f"round {k}", r.records, r.changed, percent(r.changed / r.records if r.records else None),
             r.words_before / r.records if r.records else None,
             r.words_after / r.records if r.records else None] for k, r in rounds]
    out = [f"<p>{stats.records:,} records in <code>{escape(section.data['file'])}</code>.</p>",
           table(["round", "responses", "changed", "share changed", "mean words before",
                  "mean words after"], rows, "Responses changed per round")]
    if rounds:
        series = {"before": [(float(k), r.words_before / r.records) for k, r in rounds],
                  "after": [(float(k), r.words_after / r.records) for k, r in rounds]}
        changed = {"changed": [(float(k), r.changed / r.records) for k, r in rounds]}
        out.append(_plots(
            _figure(svg.lines("Mean length before and after each round", series, "round",
                              "words"), "Mean length in words, before and after each round"),
            _figure(svg.lines("Share of responses changed per round", changed, "round", "share"),
                    "Share of responses each round's revision changed")))
    principles = sorted(stats.principles.items(), key=lambda kv: (-kv[1].drawn, kv[0]))
    out.append(table(["principle", "drawn", "changed the answer", "share changed",
                      "mean length change (words)"],
                     [[Raw(f"<code>{escape(p)}</code>"), s.drawn, s.changed,
                       percent(s.changed / s.drawn if s.drawn else None), s.mean_length_change]
                      for p, s in principles], "Per principle, over every record and round"))
    sample = stats.sample.items
    options = "".join(f'<option value="{escape(p, quote=True)}">{escape(p)}</option>'
                      for p, _ in principles)
    out.append(f"<h3>Sample of records</h3><p class=\"note\">{len(sample)} of {stats.records:,} "
               "records, drawn at random (seed 0). Removed words are struck out, added words "
               "marked, as <code>caitool show</code> marks them.</p>"
               f'<p class="filter hidden"><label>Principle: <select id="principle-filter">'
               f'<option value="">all</option>{options}</select></label></p>'
               + "".join(supervised_record(r) for r in sample))
    return "".join(out)


def judge(section: Section) -> str:
    data, out = section.data, []
    judged: dict[str, numbers.Judge] = data["judged"]
    if judged:
        labels = list(judged)
        rows = [["pairs", *(j.pairs for j in judged.values())],
                ["mean p_chosen", *(j.mean_p for j in judged.values())],
                ["both orders agree", *(percent(j.agreement) for j in judged.values())],
                ["first position's mean probability", *(j.first_position for j in judged.values())],
                ["ties", *(j.ties for j in judged.values())]]
        out.append(table(["", *labels], rows, "The judge's labels per preference file"))
        out.append('<p class="note">An unbiased judge gives the first position 0.5 on average; '
                   "more means it favours whichever answer it reads first.</p>")
        edges = [0.5 + i * 0.5 / numbers.HISTOGRAM_BINS for i in range(numbers.HISTOGRAM_BINS + 1)]
        out.append(_plots(_figure(svg.bars("Distribution of p_chosen", edges,
                                           {k: j.histogram for k, j in judged.items()}, "p_chosen"),
                                  "p_chosen near 0.5: the judge barely decides; near 1: it is sure")))
        rows = []
        for label, j in judged.items():
            rows += [[label, Raw(f"<code>{escape(p)}</code>"), a.pairs, percent(a.share)]
                     for p, a in sorted(j.principles.items(), key=lambda kv: (-kv[1].pairs, kv[0]))]
        if rows:
            out.append(table(["file", "principle", "pairs", "both orders agree"], rows,
                             "Per principle: agreement of the two orders", numeric_from=2))
    out.append(_multiple_choice(data["accuracy"], data["calibration"]))
    return "".join(out)


def _multiple_choice(summary: dict[str, Any] | None, calibration: numbers.Calibration | None) -> str:
    out = ["<h3>Accuracy on questions with known answers</h3>"]
    entry = None
    if summary:
        files = [f for f in summary["files"] if isinstance(f, dict)]
        entry = summary.get("overall") if isinstance(summary.get("overall"), dict) else (files or [None])[0]
        out.append(table(["file", "rows", "accuracy", "interval", "chance"],
                         [[str(f.get("file")), f.get("rows"), percent(f.get("accuracy")),
                           interval(f.get("ci")), percent(f.get("chance"))] for f in files]))
    if entry and all(isinstance(entry.get(k), (int, float)) for k in ("accuracy", "chance")):
        if at_chance(entry):
            out.append(f'<p class="plain">The judge is at chance: it answered '
                       f'{percent(entry["accuracy"])} right where guessing gets '
                       f'{percent(entry["chance"])}. Its labels are close to coin flips; read '
                       "the preference labels and the evaluation with that in mind.</p>")
        else:
            out.append(f'<p class="plain">The judge answered {percent(entry["accuracy"])} right, '
                       f'against {percent(entry["chance"])} for guessing.</p>')
    if calibration and calibration.rows:
        chance = entry.get("chance") if entry else 0.0
        out.append(_plots(_figure(svg.reliability(calibration.points(), chance or 0.0),
                                  "Each dot is a bin of questions: how sure the judge was of its "
                                  "top option, and how often that option was right. A calibrated "
                                  "judge lies on the diagonal.")))
        out.append(f"<p>Expected calibration error: <strong>{number(calibration.ece)}</strong> "
                   f"over {calibration.rows} questions ({numbers.CALIBRATION_BINS} bins; 0 is "
                   "perfectly calibrated).</p>")
    elif summary:
        out.append('<p class="note">No per-question scores (eval-mc --rows judge-rows.jsonl), '
                   "so no reliability diagram.</p>")
    return "".join(out) if len(out) > 1 else ""


def reward(section: Section) -> str:
    heldout = section.data["heldout"]
    if heldout is None:
        return '<p class="incomplete">train-rm left no held-out report.</p>'
    rows = [[name, report.get("heldout_pairs"), percent(report.get("heldout_accuracy")),
             report.get("heldout_mean_margin")]
            for name, report in heldout["heldout_by_file"].items() if isinstance(report, dict)]
    rows.append(["all files", heldout.get("heldout_pairs"), percent(heldout.get("heldout_accuracy")),
                 heldout.get("heldout_mean_margin")])
    out = [table(["file", "held-out pairs", "accuracy", "mean margin"], rows,
                 "Held-out pairwise accuracy per file")]
    chosen, rejected = section.data["scores"]
    if chosen:
        low, high = min(chosen + rejected), max(chosen + rejected)
        high = high if high > low else low + 1.0
        step = (high - low) / numbers.HISTOGRAM_BINS
        edges = [low + i * step for i in range(numbers.HISTOGRAM_BINS + 1)]

        def counts(values: list[float]) -> list[int]:
            bins = [0] * numbers.HISTOGRAM_BINS
            for v in values:
                bins[min(numbers.HISTOGRAM_BINS - 1, int((v - low) / step))] += 1
            return bins

        out.append(_plots(_figure(svg.bars("Scores of chosen and rejected answers", edges,
                                           {"chosen": counts(chosen), "rejected": counts(rejected)},
                                           "reward-model score", "answers"),
                                  "Held-out pairs: a reward model that learned puts chosen "
                                  "answers to the right of rejected ones")))
    return "".join(out)


def rl(section: Section) -> str:
    series, out = section.data["series"], [f"<p>Method: <code>{section.data['method']}</code>.</p>"]
    figures = [_figure(svg.lines(name, {name: points}, "step", name.split(" (")[0]), name)
               for name, points in series.items()]
    out.append(_plots(*figures))
    if section.data["ended"] is not None:
        out.append(f"<p>Ended responses (stopped before the length limit): "
                   f"<strong>{percent(section.data['ended'])}</strong> over the logged steps.</p>")
    last = {name: points[-1][1] for name, points in series.items()}
    if last:
        out.append(table(["series", "last value"], list(last.items()), "At the last logged step"))
    return "".join(out)


def evaluation(section: Section) -> str:
    summary = section.data["summary"]
    if summary is None:
        return '<p class="incomplete">eval.json could not be read.</p>'
    out = _independence_marks(summary)
    rows = []
    for pair in summary["pairs"]:
        if not isinstance(pair, dict):
            continue
        for dimension, result in pair.items():
            if isinstance(result, dict) and "win_rate" in result:
                rows.append([f"{pair.get('a')} vs {pair.get('b')}", dimension, result.get("n"),
                             percent(result.get("win_rate")), interval(result.get("ci")),
                             percent(result.get("order_agreement"))])
    if rows:
        out.append(table(["pair", "dimension", "prompts", "win rate of the first", "interval",
                          "orders agree"], rows, "Win rates (soft), with bootstrap intervals",
                         numeric_from=2))
    flipping = [f"{r[0]}, {r[1]}" for r in rows if r[-1] == percent(0.0)]
    if flipping:
        out.append(f'<p class="plain">The evaluator\'s two orders never agree for '
                   f'{escape("; ".join(flipping))}: every pair there flips with the order it is '
                   'shown in, so those win rates measure its position bias, not a preference. '
                   'Grade with a stronger evaluator.</p>')
    elo = summary.get("elo") if isinstance(summary.get("elo"), dict) else {}
    dimensions = [d for d, v in elo.items() if isinstance(v, dict)]
    if dimensions:
        rows = [[system, *(Raw(f"{number(elo[d].get(system, {}).get('elo'), 1)} "
                               f"<span class=\"note\">({interval(elo[d].get(system, {}).get('ci'), False)})</span>")
                           for d in dimensions)] for system in summary["systems"]]
        out.append(table(["system", *dimensions], rows, f"Elo per dimension ({elo.get('reference')} at 0)"))
    if {"harmlessness", "helpfulness"} <= set(dimensions):
        points = {s: (elo["helpfulness"][s]["elo"], elo["harmlessness"][s]["elo"])
                  for s in summary["systems"]
                  if all(isinstance(elo[d].get(s, {}).get("elo"), (int, float))
                         for d in ("harmlessness", "helpfulness"))}
        paths = {m: [p["system"] for p in line] for m, line in (summary.get("frontier") or {}).items()}
        if points:
            out.append(_plots(_figure(svg.scatter("Harmlessness against helpfulness", points,
                                                  "helpfulness Elo", "harmlessness Elo", paths),
                                      "The frontier: up is more harmless, right more helpful")))
    examples = section.data["examples"]
    if examples:
        out.append("<h3>Where the systems differ most</h3>")
        out += [answer_pair(e["prompt"], (e["a"], e["answer_a"]), (e["b"], e["answer_b"]),
                            f"{e.get('dimension')}: {e['id']} · P({e['a']} better) = {e['p_a']:.3f}")
                for e in examples]
    return "".join(out)


def _independence_marks(summary: dict[str, Any]) -> list[str]:
    """eval's own marks (stages/evaluate/independence.py), above the numbers they qualify."""
    report = summary.get("independence")
    if not isinstance(report, dict) or report.get("independent") is not False:
        return []
    try:
        marks = independence.warnings(report)
    except (KeyError, TypeError, AttributeError):
        marks = [f"the evaluator ({report.get('evaluator')}) is not independent of what it grades"]
    items = "".join(f"<li>{escape(mark)}.</li>" for mark in marks)
    return [f'<div class="incomplete" id="not-independent"><strong>Not an independent '
            f'measurement.</strong><ul>{items}</ul></div>']
