"""Dry runs: a backend that writes down every request instead of running a model, and the
executor that writes those requests where the records would go.

``--dry-run`` puts :class:`DryRunBackend` where the real backend would be, and the stages run
as they always do: the same prompts, stop strings, seeds and batches. Each request is kept
with its exact text: the chat template's output when a tokenizer is at hand (the ``hf`` and
``vllm`` backends load the model's tokenizer and nothing else), the chat messages as a server
would get them (``openai``), or the raw transcript. Generation gets :data:`PLACEHOLDER` back,
so that the steps built on it (a critique of the answer, a revision after the critique) are
shown too; option scoring gets equal log-probabilities. The stages tag every request with
the record (or pair) it serves and the step that asks it (``Prompt.serves``), so each line
names both, in one pass over the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from caitool.backends import registry
from caitool.backends.base import Backend, OptionScores, SamplingParams
from caitool.errors import CaitoolError
from caitool.io.stream import Batch, Bind, Executor, StepResult
from caitool.render import Prompt, has_chat_template, prompt_ids, prompt_text

PLACEHOLDER = "<model output>"


@dataclass
class Request:
    kind: str                                  # "generate" or "score"
    prompt: Prompt
    params: SamplingParams | None = None       # generate
    options: tuple[str, ...] = ()              # score


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
        self._index = 0

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

    @staticmethod
    def _check_tagged(prompts: list[Prompt]) -> None:
        # An untagged request comes from a step that was not written for dry runs: writing
        # its placeholders down as if they were results would mislead.
        if any(prompt.serves is None for prompt in prompts):
            raise CaitoolError("this command does not support --dry-run")

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        self._check_tagged(prompts)
        for prompt in prompts:
            self.requests.append(Request("generate", prompt,
                                         params=dataclasses.replace(params, stop=list(params.stop))))
        return [[PLACEHOLDER] * max(1, params.n) for _ in prompts]

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        self._check_tagged(prompts)
        for prompt, opts in zip(prompts, options, strict=True):
            self.requests.append(Request("score", prompt, options=tuple(opts)))
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

    def lines(self, **fields: Any) -> list[dict[str, Any]]:
        """One line per request made since the last call, in order, each naming the id and
        step it serves (``fields`` are added to every line: eval's dimension)."""
        out = []
        for request in self.take():
            owner, step = request.prompt.serves or (None, None)
            out.append({"id": owner, "index": self._index, "step": step, "kind": request.kind,
                        **fields, **self.render(request)})
            self._index += 1
        return out


class DryRun(Executor):
    """Runs each batch's step on the dry-run backend, once, and gives back the requests it
    made as the records to write."""

    def __init__(self, create: Callable[[], DryRunBackend], bind: Bind):
        self._create, self._bind = create, bind
        self._backend: DryRunBackend | None = None

    def __enter__(self) -> DryRun:
        backend = self._create()
        if not isinstance(backend, DryRunBackend):
            raise CaitoolError("a dry run needs the dry-run backend")
        self._backend = backend
        return self

    def __exit__(self, *exc: object) -> None:
        if self._backend is not None:
            self._backend.close()

    def map(self, batches: Iterable[Batch]) -> Iterator[StepResult]:
        assert self._backend is not None, "map() runs inside the executor's with block"
        step = self._bind(self._backend)
        for batch in batches:
            self._backend.take()
            step(batch)
            yield StepResult(self._backend.lines())


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
