"""The harmlessness-helpfulness frontier over training, as the paper's Figure 2 draws it.

Systems named ``METHOD@STEP`` are snapshots of one training run (``make all SNAPSHOTS=N``
names them ``rl-cai@50``, ``rl-cai@100``; the run's final model is ``METHOD`` itself). Each
method becomes one line through its snapshots in step order, then its final model, starting
from the system the runs started from (``--frontier-from``, e.g. ``sl-cai``). The lines are
data in the summary (``frontier``), and what ``--plot`` draws.
"""

from __future__ import annotations

import re
from typing import Any

from caitool.errors import CaitoolError

_SNAPSHOT = re.compile(r"^(?P<method>.+)@(?P<step>\d+)$")


def lines(names: list[str], start: str | None = None) -> dict[str, list[str]]:
    """Method -> its systems in order (a method with no snapshot is a line only when it
    has a start to go from)."""
    steps: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        found = _SNAPSHOT.match(name)
        if found:
            steps.setdefault(found["method"], []).append((int(found["step"]), name))
    out: dict[str, list[str]] = {}
    for method, snapshots in steps.items():
        path = [name for _, name in sorted(snapshots)]
        if method in names:
            path.append(method)
        out[method] = ([start] if start else []) + path
    return out


def summarize(summary: dict[str, Any], start: str | None = None) -> dict[str, Any]:
    """``{method: [{system, harmlessness, helpfulness}, ...]}`` from the summary's Elo."""
    names = list(summary["systems"])
    if start is not None and start not in names:
        raise CaitoolError(f"--frontier-from '{start}' is not one of: {', '.join(names)}")
    elo = summary.get("elo") or {}
    if not {"harmlessness", "helpfulness"} <= set(elo):
        return {}
    return {method: [{"system": name,
                      "harmlessness": elo["harmlessness"][name]["elo"],
                      "helpfulness": elo["helpfulness"][name]["elo"]} for name in path]
            for method, path in lines(names, start).items()}
