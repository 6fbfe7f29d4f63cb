"""Is the evaluator independent of what it grades? Each system's chain, and the marks.

The paper's systems were graded by people; caitool's by a model. A system whose training
preferences that same model labelled is graded by a judge that is partly grading itself: the
gain it reports over a system the judge had no hand in is overstated. Weaker, and marked
apart: a system fine-tuned on text the evaluator wrote, or whose answers it wrote (``eval
--revisions`` grades the model's own revisions), may win on the evaluator's taste for its
own text. :func:`check` follows each system's
chain (:mod:`caitool.lineage`) and says so, per system, in the summary and on stderr.
"""

from __future__ import annotations

from typing import Any

from caitool import lineage
from caitool.stages.evaluate.systems import System

# Which provenance step wrote the responses of a --revisions system.
STEPS = {"initial": ("generate",), "revised": ("revise",)}


def check(systems: list[System], evaluator: str, revisions: bool = False) -> dict[str, Any]:
    """``{"evaluator", "independent", "systems": {name: chain and marks}}``."""
    judge = lineage.identity(evaluator)
    report: dict[str, Any] = {}
    for index, system in enumerate(systems):
        steps = STEPS[("initial", "revised")[index]] if revisions else ("revise", "generate")
        writers = lineage.generators(system.records.values(), steps)
        chain = lineage.follow(writers)
        report[system.name] = {
            "generated_by": sorted(writers), **chain.to_dict(),
            "evaluator_labelled_training_data": judge in chain.labelled_by,
            "evaluator_wrote_training_data": judge in chain.written_by,
            "evaluator_wrote_responses": judge in {lineage.identity(w) for w in writers}}
    independent = not any(value for s in report.values() for key, value in s.items()
                          if key.startswith("evaluator_"))
    return {"evaluator": evaluator, "independent": independent, "systems": report}


def warnings(report: dict[str, Any]) -> list[str]:
    """One plain sentence per kind of mark, naming the systems."""
    systems = report["systems"]
    def marked(key: str) -> list[str]:
        return [name for name, s in systems.items() if s[key]]

    labelled, taught = marked("evaluator_labelled_training_data"), marked("evaluator_wrote_training_data")
    wrote = marked("evaluator_wrote_responses")
    out = []
    if labelled:
        out.append(f"{', '.join(labelled)}: trained on preference labels from the evaluator "
                   f"({report['evaluator']}) itself, so their win rates and Elo partly measure the "
                   "judge agreeing with its own labels and overstate the gain; grade with a model "
                   "that did not label (make all EVALUATOR=...)")
    if taught:
        out.append(f"{', '.join(taught)}: trained on text the evaluator ({report['evaluator']}) "
                   "wrote (its answers or revisions), so it may prefer them as its own style")
    if wrote:
        out.append(f"{', '.join(wrote)}: answers written by the evaluator ({report['evaluator']}) "
                   "itself, which it now grades; a model tends to prefer its own text")
    return out
