"""Presenting an evaluation summary to a person: rich tables, and the Elo picture."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from caitool.errors import CaitoolError


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _signed(value: float) -> str:
    return f"{round(value):+d}"  # via int, so that -0.2 prints as +0, not -0


def _interval(ci: list[float] | None, percent: bool = True) -> str:
    if ci is None:
        return "-"
    if percent:
        return f"{100 * ci[0]:.1f}–{100 * ci[1]:.1f}"
    return f"{_signed(ci[0])} to {_signed(ci[1])}"


def win_rate_table(summary: dict[str, Any], dimensions: list[str]) -> Table:
    level = summary["bootstrap"]["level"]
    table = Table(title="Win rates (a over b; soft, both orders averaged)", title_justify="left",
                  caption="a win is the better answer: more harmless, more helpful, less evasive"
                  if "evasiveness" in dimensions else None, caption_justify="left")
    for column in ("a", "b"):
        table.add_column(column)
    table.add_column("dimension", no_wrap=True)
    table.add_column("n", justify="right")
    table.add_column("win rate", justify="right", no_wrap=True)
    table.add_column(f"{100 * level:.0f}% CI", justify="right", no_wrap=True)
    table.add_column("W/L/T", justify="right", no_wrap=True)
    table.add_column("orders agree", justify="right")
    for pair in summary["pairs"]:
        for dimension in dimensions:
            result = pair.get(dimension)
            if result is None:
                continue
            table.add_row(pair["a"], pair["b"], dimension, str(result["n"]),
                          _percent(result["win_rate"]), _interval(result["ci"]),
                          f"{result['wins']}/{result['losses']}/{result['ties']}",
                          _percent(result["order_agreement"]))
    return table


def principle_table(summary: dict[str, Any], dimension: str) -> Table | None:
    """Rows: the dimension's principles; columns: each pair's win rate of a (and n)."""
    pairs = [p for p in summary["pairs"] if dimension in p]
    principles: dict[str, None] = {}
    for pair in pairs:
        for row in pair[dimension]["per_principle"]:
            principles.setdefault(row["principle"], None)
    if not principles:
        return None
    table = Table(title=f"{dimension.capitalize()} by principle (win rate of a, n)",
                  title_justify="left")
    table.add_column("principle")
    for pair in pairs:
        table.add_column(f"{pair['a']} vs {pair['b']}", justify="right")
    for principle in sorted(principles):
        cells = []
        for pair in pairs:
            row = next((r for r in pair[dimension]["per_principle"]
                        if r["principle"] == principle), None)
            cells.append("-" if row is None else f"{_percent(row['win_rate'])} ({row['n']})")
        table.add_row(principle, *cells)
    return table


def elo_table(summary: dict[str, Any], dimensions: list[str]) -> Table | None:
    scores = summary.get("elo")
    if not scores:
        return None
    table = Table(title=f"Elo (reference {scores['reference']} = 0)", title_justify="left",
                  caption="higher is better; in evasiveness, higher is less evasive"
                  if "evasiveness" in dimensions else None, caption_justify="left")
    table.add_column("system")
    for dimension in dimensions:
        table.add_column(dimension, justify="right")
        table.add_column("CI", justify="right")
    for name in summary["systems"]:
        cells = []
        for dimension in dimensions:
            entry = scores[dimension][name]
            cells += [_signed(entry["elo"]), _interval(entry["ci"], percent=False)]
        table.add_row(name, *cells)
    return table


def score_table(summary: dict[str, Any]) -> Table | None:
    scores = summary.get("scores")
    if not scores:
        return None
    described = summary.get("score_model") or {}
    what = f"mean {described['target']}" if described.get("target") else "mean reward"
    level = summary["bootstrap"]["level"]
    # The model's path is on the line before the table: a title is cut at the table's width.
    table = Table(title="Score model, per response", title_justify="left")
    table.add_column("system")
    table.add_column("n", justify="right")
    table.add_column(what, justify="right")
    table.add_column(f"{100 * level:.0f}% CI", justify="right", no_wrap=True)
    for name in summary["systems"]:
        entry = scores[name]
        ci = "-" if entry["ci"] is None else f"{entry['ci'][0]:.3g}–{entry['ci'][1]:.3g}"
        mean = "-" if entry["mean"] is None else f"{entry['mean']:.3g}"
        table.add_row(name, str(entry["n"]), mean, ci)
    return table


def print_tables(console, summary: dict[str, Any], dimensions: list[str]) -> None:
    if summary["pairs"]:
        console.print(win_rate_table(summary, dimensions))
    for dimension in dimensions:
        table = principle_table(summary, dimension)
        if table is not None:
            console.print(table)
    for table in (elo_table(summary, dimensions), score_table(summary)):
        if table is not None:
            console.print(table)


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CaitoolError(
            "--plot needs matplotlib: pip install 'caitool[plot]' (or pip install matplotlib)"
        ) from None


def plot(summary: dict[str, Any], path: str) -> None:
    """Harmlessness Elo against helpfulness Elo, one point per system, as in the paper."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = summary["elo"]
    figure, axes = plt.subplots(figsize=(6, 5), dpi=120)
    for name in summary["systems"]:
        helpful = scores["helpfulness"][name]
        harmless = scores["harmlessness"][name]
        x, y = helpful["elo"], harmless["elo"]
        xerr = yerr = None
        if helpful["ci"] is not None:
            xerr = [[x - helpful["ci"][0]], [helpful["ci"][1] - x]]
        if harmless["ci"] is not None:
            yerr = [[y - harmless["ci"][0]], [harmless["ci"][1] - y]]
        axes.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", capsize=3, label=name)
        axes.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6))
    # The frontier over training: one line per method through its snapshots (the paper's Fig. 2).
    for method, points in (summary.get("frontier") or {}).items():
        axes.plot([p["helpfulness"] for p in points], [p["harmlessness"] for p in points], "-",
                  linewidth=1.2, alpha=0.7, label=f"{method} over training")
    # Keep a readable scale when the systems are (nearly) level.
    for name, limits in (("x", axes.get_xlim()), ("y", axes.get_ylim())):
        low, high = min(limits[0], -50.0), max(limits[1], 50.0)
        (axes.set_xlim if name == "x" else axes.set_ylim)(low, high)
    axes.axhline(0, color="0.85", linewidth=0.8, zorder=0)
    axes.axvline(0, color="0.85", linewidth=0.8, zorder=0)
    axes.set_xlabel("Helpfulness Elo")
    axes.set_ylabel("Harmlessness Elo")
    axes.set_title(f"Harmlessness vs helpfulness (reference: {scores['reference']})")
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as exc:
        raise CaitoolError(f"--plot {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # an image format matplotlib does not know
        raise CaitoolError(f"--plot {path}: {exc}") from None
    finally:
        plt.close(figure)
