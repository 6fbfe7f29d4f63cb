"""Dry runs: a backend that writes down every request instead of running a model.

``--dry-run`` puts :class:`DryRunBackend` where the real backend would be, and the stages run
as they always do: the same prompts, stop strings, seeds and batches. Each request is kept
with its exact text: the chat template's output when a tokenizer is at hand (the ``hf`` and
``vllm`` backends load the model's tokenizer and nothing else), the chat messages as a server
would get them (``openai``), or the raw transcript. Generation gets :data:`PLACEHOLDER` back,
so that the steps built on it (a critique of the answer, a revision after the critique) are
shown too; option scoring gets equal log-probabilities.

Which record a request serves is learnt by running each record (or pair) alone a second
time and matching the prompts; the whole batch is what the lines report, so seeds and order
are those of a real run with the same ``--batch-size``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from caitool.backends import registry
from caitool.backends.base import Backend, OptionScores, SamplingParams
from caitool.errors import CaitoolError
from caitool.io.stream import StepResult
from caitool.render import Prompt, has_chat_template, prompt_ids, prompt_text

PLACEHOLDER = "<model output>"
Record = dict[str, Any]
Unit = tuple[str, Callable[[], object]]


@dataclass
class Request:
    kind: str                                  # "generate" or "score"
    prompt: Prompt
    call: int                                  # which backend call of its run asked it
    params: SamplingParams | None = None       # generate
    options: tuple[str, ...] = ()              # score

    def key(self) -> tuple[Any, ...]:
        return self.kind, self.prompt, self.options


class DryRunBackend(Backend):
    """Records requests; ``tokenizer`` loads the model's tokenizer (None: render no text,
    as for a server), and ``chat`` says whether the model has a chat template when there is
    no tokenizer to ask."""

    name = "dry-run"

    def __init__(self, model: str, description: dict[str, Any],
                 tokenizer: Callable[[], Any] | None = None,
                 chat: Callable[[], bool] | None = None, real: Backend | None = None):
        super().__init__(model)
        self.description = description
        self._load_tokenizer = tokenizer
        self._tokenizer: Any = None
        self._chat = chat
        self._real = real
        self.requests: list[Request] = []
        self._calls = 0
        self._index = 0
        self._recording = False

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None and self._load_tokenizer is not None:
            self._tokenizer = self._load_tokenizer()
        return self._tokenizer

    def has_chat_template(self) -> bool:
        if self._load_tokenizer is not None:
            return has_chat_template(self.tokenizer)
        return bool(self._chat and self._chat())

    def describe(self) -> dict[str, Any]:
        return dict(self.description)

    def _called(self) -> None:
        # Outside lines() nothing writes the requests down: a command that takes the flag
        # but does not wrap its steps would otherwise write placeholders as results.
        if not self._recording:
            raise CaitoolError("this command does not support --dry-run")
        self._calls += 1

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        self._called()
        for prompt in prompts:
            self.requests.append(Request("generate", prompt, self._calls,
                                         params=dataclasses.replace(params, stop=list(params.stop))))
        return [[PLACEHOLDER] * max(1, params.n) for _ in prompts]

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        self._called()
        for prompt, opts in zip(prompts, options, strict=True):
            self.requests.append(Request("score", prompt, self._calls, options=tuple(opts)))
        return [OptionScores([0.0] * len(opts)) for opts in options]

    def close(self) -> None:
        if self._real is not None:
            self._real.close()

    # -- what the model would see ----------------------------------------------------------

    def take(self) -> list[Request]:
        taken, self.requests = self.requests, []
        return taken

    def render(self, request: Request) -> dict[str, Any]:
        prompt = request.prompt
        line: dict[str, Any] = {"format": "chat" if prompt.is_chat else "raw"}
        if prompt.is_chat:
            line["messages"] = prompt.message_dicts()
            if prompt.assistant_prefix:
                line["assistant_prefix"] = prompt.assistant_prefix
        tokenizer = self.tokenizer
        if tokenizer is not None:
            line["text"] = prompt_text(tokenizer, prompt, self.model)
            line["prompt_tokens"] = len(prompt_ids(tokenizer, prompt, self.model))
        elif not prompt.is_chat:
            line["text"] = prompt.text or ""
        if request.kind == "score":
            line["options"] = list(request.options)
        else:
            params = dataclasses.asdict(request.params)
            line["stop"] = params.pop("stop")
            line["sampling"] = params
        return line

    def lines(self, whole: Callable[[], object], units: Iterable[Unit],
              steps: Sequence[str] = ("response",), score_step: str = "judge",
              **fields: Any) -> list[dict[str, Any]]:
        """Run ``whole`` and return one line per request it made, in order. Each line names
        the id of the unit whose lone run (``units``: id, run) made the same request, and
        the step: score requests are ``score_step``; generation calls take ``steps`` from
        the last call backwards (critique's: its answers, if any, then its critiques)."""
        self.take()
        self._recording = True
        try:
            whole()
            requests = self.take()
            owners: dict[tuple[Any, ...], deque[str]] = defaultdict(deque)
            for unit_id, run in units:
                run()
                for request in self.take():
                    owners[request.key()].append(unit_id)
        finally:
            self._recording = False
        calls = sorted({r.call for r in requests if r.kind == "generate"})
        out = []
        for request in requests:
            if request.kind == "score":
                step = score_step
            else:
                back = len(calls) - calls.index(request.call)
                step = steps[max(0, len(steps) - back)]
            found = owners.get(request.key())
            out.append({"id": found.popleft() if found else None, "index": self._index,
                        "step": step, "kind": request.kind, **fields, **self.render(request)})
            self._index += 1
        return out


def per_record(process: Callable[[list[Record]], object], batch: list[Record]) -> list[Unit]:
    """Each record alone (a copy: steps change their records), named by its id."""
    return [(str(record.get("id")), lambda r=copy.deepcopy(record): process([r]))
            for record in batch]


def wrap(backend: Backend, process: Callable[[list[Record]], object], steps: Sequence[str],
         units: Callable[[list[Record]], list[Unit]] | None = None
         ) -> Callable[[list[Record]], StepResult]:
    """The batch step whose output is the requests ``process`` would make, not its records."""
    if not isinstance(backend, DryRunBackend):
        raise CaitoolError("a dry run needs the dry-run backend")

    def step(batch: list[Record]) -> StepResult:
        alone = units(batch) if units else per_record(process, batch)
        return StepResult(backend.lines(lambda: process(batch), alone, steps))

    return step


def create(name: str, model: str, **options: Any) -> DryRunBackend:
    """The dry run of backend ``name``: its options are checked as for a real run, and a
    backend that loads models itself lends the model's tokenizer (loaded on first use) and
    nothing more; any other is asked, without a request, whether it takes chats."""
    cls = registry.backend_class(name)
    registry.check_options(name, cls, options)
    description = {"backend": name, "model": model}
    if cls.loads_models:
        from caitool import models
        from caitool.backends.hf.backend import check_model_path

        cls.Options(**options)
        check_model_path(model)
        return DryRunBackend(model, description, tokenizer=lambda: models.load_tokenizer(model))
    # Construction is cheap by the Backend contract: nothing connects or loads until used.
    real = cls(model, **options)
    return DryRunBackend(model, real.describe(), chat=real.has_chat_template, real=real)
