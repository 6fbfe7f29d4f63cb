"""Any OpenAI-compatible server: ``vllm serve``, ``transformers serve``, TGI, SGLang, hosted APIs.

Every stage of a pipeline can share one server, so the model loads once. Requests go through
the ``openai`` SDK's async client, ``concurrency`` at a time, retried by the SDK. A prompt that
still fails is reported by its index (:class:`RequestsFailed`); the rest of the batch is kept.

Servers differ, so the backend finds out as it goes and remembers whether ``n`` returns several
choices (else it asks once per sample), whether the chat endpoint continues a final assistant
message (vLLM's ``continue_final_message``; else an answer cue is dropped, with a warning), and
whether log-probabilities come back (see :mod:`.scoring`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from caitool.backends.base import Backend, OptionScores, RequestsFailed, SamplingParams, cut_at_stop
from caitool.backends.openai import scoring
from caitool.backends.openai.client import (
    BadAnswer,
    answer_choices,
    cancel_pending,
    env_number,
    error_detail,
    is_refusal,
    is_unreachable,
    read_key,
    redact,
    safe_url,
    sdk_client,
    split_url,
)
from caitool.errors import CaitoolError
from caitool.render import Prompt

log = logging.getLogger(__name__)

# Tuning a user rarely needs, read from the environment so the shared flags stay few.
TIMEOUT_ENV = "CAITOOL_REQUEST_TIMEOUT"  # seconds per request (default 600)
RETRIES_ENV = "CAITOOL_RETRIES"  # retries after the first attempt (default 5)
BACKOFF_ENV = "CAITOOL_RETRY_BACKOFF"  # first backoff in seconds, doubling (default 1)
# Hosted APIs accept at most four stop strings; the rest are cut client-side anyway.
MAX_STOP = 4


@dataclass
class OpenAIOptions:
    base_url: str | None = field(default_factory=lambda: os.environ.get("CAITOOL_BASE_URL") or None)
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float | None = None
    retries: int | None = None
    backoff: float | None = None
    score_samples: int = scoring.SCORE_SAMPLES

    def __post_init__(self) -> None:
        if not self.base_url:
            raise CaitoolError("the openai backend needs --base-url (e.g. "
                               "http://127.0.0.1:8000/v1) or CAITOOL_BASE_URL")
        split_url(self.base_url, self.api_key_env)
        if self.concurrency < 1:
            raise CaitoolError("--concurrency must be at least 1")
        self.timeout = env_number(TIMEOUT_ENV, 600.0, float) if self.timeout is None else self.timeout
        self.retries = int(env_number(RETRIES_ENV, 5, int)) if self.retries is None else self.retries
        self.backoff = env_number(BACKOFF_ENV, 1.0, float) if self.backoff is None else self.backoff
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise CaitoolError(f"{TIMEOUT_ENV} must be > 0, {RETRIES_ENV} and {BACKOFF_ENV} >= 0")


class OpenAIBackend(Backend):
    name = "openai"
    Options = OpenAIOptions

    @classmethod
    def for_replica(cls, options: dict[str, Any], gpus: float) -> tuple[dict[str, Any], tuple[str, ...]]:
        return options, (options.get("api_key_env") or OpenAIOptions.api_key_env,)

    def __init__(self, model: str, **options: Any):
        super().__init__(model, **options)
        self.base_url = self.options.base_url.rstrip("/")
        self.score_samples = max(1, self.options.score_samples)
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._secret = read_key(self.options.api_key_env)
        self._headers: dict[str, Any] = {}
        self._warned: set[str] = set()
        # What the server turned out to honour: None until known.
        self.honours_n: bool | None = None
        self.prefill: bool | None = None
        self.logprobs: dict[str, bool | None] = {"chat": None, "raw": None}
        self.retried = 0

    # -- plumbing --------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            # Local servers need no key, but the SDK insists on one: a placeholder that is
            # never sent, because every request then omits the Authorization header.
            self._headers = {} if self._secret else {"Authorization": openai.omit}
            self._client = sdk_client(self.base_url, self._secret or "unused", self.options.timeout,
                                      self.options.retries, self.options.backoff, self._note_retry)
        return self._client

    def _note_retry(self) -> None:
        self.retried += 1
        self.warn_once("retry", "a request failed and is retried with backoff (up to "
                       f"{self.options.retries} times; further retries are not reported)")

    def _redact(self, text: str) -> str:
        return redact(text, self._secret)

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def has_chat_template(self) -> bool:
        # The server applies the model's chat template; raw transcripts need --format raw.
        return True

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "base_url": safe_url(self.base_url)}

    def _run(self, work: Coroutine[Any, Any, Any]) -> Any:
        """Run ``work`` on this backend's event loop, which lives as long as the client so
        that connections are reused from batch to batch."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        try:
            return self._loop.run_until_complete(work)
        except BaseException:
            # Ctrl-C or a fatal error: drop the requests in flight rather than wait for them.
            cancel_pending(self._loop)
            raise

    def close(self) -> None:
        loop, client = self._loop, self._client
        self._loop = self._client = None
        if loop is None and client is None:
            return
        loop = loop or asyncio.new_event_loop()
        try:
            cancel_pending(loop)
            if client is not None:
                loop.run_until_complete(client.close())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def _backoff(self, attempt: int) -> float:
        """The SDK's schedule: doubling from the first backoff, at most 16 times it, less up
        to 25% for jitter."""
        return self.options.backoff * min(2.0 ** attempt, 16.0) * (1 - 0.25 * random.random())

    def _reason(self, exc: BaseException) -> str:
        """One line for a request that failed for good."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return f"no answer within {self.options.timeout:g}s"
        if isinstance(exc, openai.APIConnectionError):
            why = str(exc.__cause__ or exc) or type(exc.__cause__).__name__
            return self._redact(f"cannot reach {safe_url(self.base_url)}: {why}")
        if isinstance(exc, openai.APIStatusError):
            detail = error_detail(exc.body, exc.response.text, self._secret)
            return f"HTTP {exc.status_code}: {detail}" if detail else f"HTTP {exc.status_code}"
        return self._redact(str(exc))

    async def post(self, endpoint: str, **body: Any) -> dict[str, Any]:
        """One request (retried by the SDK) as a plain dict; a refused key or a wrong URL or
        model stops the command, since no other request would fare better."""
        import openai

        api = self.client.chat.completions if endpoint == "chat" else self.client.completions
        try:
            response = await api.create(model=self.model, extra_headers=self._headers, **body)
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise CaitoolError(f"{safe_url(self.base_url)} refused the request ({self._reason(exc)}); "
                               f"check the API key in ${self.options.api_key_env}") from None
        except openai.NotFoundError as exc:
            raise CaitoolError(f"{safe_url(str(exc.request.url))}: {self._reason(exc)} (check -m "
                               "and --base-url, which usually ends in /v1)") from None
        except ValueError:  # a 200 whose body is not JSON, as the SDK parses it
            raise BadAnswer("the server answered with invalid JSON") from None
        payload = response.to_dict(warnings=False) if hasattr(response, "to_dict") else None
        answer_choices(payload)
        return payload

    async def run_all(self, jobs: list[Callable[[], Awaitable[Any]]]
                      ) -> tuple[list[Any], dict[int, str]]:
        """Run jobs ``concurrency`` at a time; a job whose request fails for good is a
        failure at its index. An answer that is no completion (:class:`BadAnswer`) is
        retried as the SDK retries a 5xx (the SDK takes any 200 as it is). When every job
        fails in a way that is not about one request (connection refused, the same 4xx
        everywhere), the whole batch fails with that reason."""
        import openai

        results: list[Any] = [None] * len(jobs)
        failures: dict[int, str] = {}
        errors: list[BaseException] = []
        slots = asyncio.Semaphore(self.options.concurrency)

        async def run(index: int, job: Callable[[], Awaitable[Any]]) -> None:
            async with slots:
                for attempt in range(self.options.retries + 1):
                    try:
                        results[index] = await job()
                        return
                    except BadAnswer as exc:
                        failure: BaseException = exc
                        if attempt < self.options.retries:
                            self._note_retry()
                            await asyncio.sleep(self._backoff(attempt))
                            continue
                    except openai.APIError as exc:
                        failure = exc
                    failures[index] = self._reason(failure)
                    errors.append(failure)
                    return

        # A fatal error ends the gather; _run then cancels the jobs still in flight.
        await asyncio.gather(*(run(i, job) for i, job in enumerate(jobs)))
        if jobs and len(failures) == len(jobs):
            unreachable = all(is_unreachable(e) for e in errors)
            refused = (len(errors) > 1 and all(is_refusal(e) for e in errors)
                       and len(set(failures.values())) == 1)
            if unreachable or refused:
                raise CaitoolError(f"every request failed: {failures[0]}")
        return results, failures

    # -- generation ------------------------------------------------------------------------

    async def request(self, prompt: Prompt, params: SamplingParams, n: int, seed: int | None,
                      extra: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Send one generation request; the choices, and whether the assistant prefix was
        continued (False when the server cannot, and the prefix was dropped)."""
        import openai

        sampled = params.temperature > 0 and params.top_p < 1
        body = {"max_tokens": params.max_new_tokens, "temperature": params.temperature,
                "top_p": params.top_p if sampled else None, "n": n if n > 1 else None,
                "seed": seed, "stop": list(params.stop)[:MAX_STOP] or None, **(extra or {})}
        body = {key: value for key, value in body.items() if value is not None}
        # Not in OpenAI's API, but vLLM, SGLang and transformers serve take them; sent only
        # when asked for, so that a server without them is not refused every request.
        beyond = {"top_k": params.top_k if params.top_k > 0 and params.temperature > 0 else None,
                  "repetition_penalty": (params.repetition_penalty
                                         if params.repetition_penalty != 1.0 else None)}
        beyond = {key: value for key, value in beyond.items() if value is not None}
        if beyond:
            body["extra_body"] = {**body.get("extra_body", {}), **beyond}
        if not prompt.is_chat:
            return (await self.post("completions", prompt=prompt.text or "", **body))["choices"], True
        messages = prompt.message_dicts()
        if prompt.assistant_prefix and self.prefill is not False:
            prefixed = [*messages, {"role": "assistant", "content": prompt.assistant_prefix}]
            try:
                payload = await self.post("chat", messages=prefixed, **{**body, "extra_body": {
                    **body.get("extra_body", {}), "continue_final_message": True,
                    "add_generation_prompt": False}})
            except openai.APIStatusError as exc:
                if self.prefill or not is_refusal(exc):
                    raise
                # Refused with the prefix: if it passes without, the server cannot continue
                # a message; if not, the request itself is at fault.
                payload = await self.post("chat", messages=messages, **body)
                self.prefill = False
                self.warn_once("prefill", "the server cannot continue an assistant message "
                               f"({self._reason(exc)}); assistant prefixes such as answer "
                               "cues are dropped")
                return payload["choices"], False
            self.prefill = True
            return payload["choices"], True
        payload = await self.post("chat", messages=messages, **body)
        return payload["choices"], not prompt.assistant_prefix

    @staticmethod
    def _texts(choices: list[dict[str, Any]], stop: list[str]) -> list[str]:
        texts = []
        # Checked by answer_choices: objects with whole-number indices and text or None.
        for choice in sorted(choices, key=lambda c: c.get("index") or 0):
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else choice.get("text")
            texts.append(cut_at_stop(text or "", stop).strip())
        return texts

    async def _samples(self, prompt: Prompt, params: SamplingParams, n: int,
                       seed: int | None) -> list[str]:
        """``n`` completions; a server that ignores ``n`` is asked again, one seed each."""
        choices, _ = await self.request(prompt, params, n, seed)
        texts = self._texts(choices, params.stop)
        if n > 1:
            self.honours_n = len(texts) >= n
        while len(texts) < n:
            more_seed = None if seed is None else seed + len(texts)
            choices, _ = await self.request(prompt, params, 1, more_seed)
            got = self._texts(choices, params.stop)
            if not got:
                raise BadAnswer("the server returned no choices")
            texts += got
        return texts[:n]

    async def generate_each(self, prompts: list[Prompt], params: SamplingParams
                            ) -> tuple[list[list[str] | None], dict[int, str]]:
        n = max(1, params.n)
        if n > 1 and self.honours_n is None and len(prompts) > 1:
            # Learn from one prompt whether the server honours n before sending the rest.
            head, head_failed = await self.generate_each(prompts[:1], params)
            tail, tail_failed = await self.generate_each(prompts[1:], params)
            return head + tail, {**head_failed, **{i + 1: r for i, r in tail_failed.items()}}
        # A server known to ignore n gets one request per sample, all side by side.
        split = n > 1 and self.honours_n is False
        units = [(i, j) for i in range(len(prompts)) for j in range(n if split else 1)]

        def job(index: int, sample: int) -> Callable[[], Awaitable[list[str]]]:
            seed = None if params.seed is None else params.seed + sample
            return lambda: self._samples(prompts[index], params, 1 if split else n, seed)

        results, failures = await self.run_all([job(i, j) for i, j in units])
        outputs: list[list[str] | None] = [[] for _ in prompts]
        failed: dict[int, str] = {}
        for position, ((index, _), result) in enumerate(zip(units, results, strict=True)):
            if position in failures:
                failed.setdefault(index, failures[position])
            else:
                outputs[index].extend(result)  # type: ignore[union-attr]
        for index in failed:
            outputs[index] = None
        return outputs, failed

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        if not prompts:
            return []
        outputs, failed = self._run(self.generate_each(prompts, params))
        if failed:
            raise RequestsFailed(failed, outputs)
        return outputs  # type: ignore[return-value]

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        """Log-probabilities where the server returns them (method ``logprobs``), else the
        frequency of each option among sampled answers (method ``sampled``)."""
        if not prompts:
            return []
        if any(len(opts) < 2 or not all(opts) for opts in options):
            raise CaitoolError("option scoring needs at least two non-empty options")
        results, failures = self._run(scoring.score_all(self, prompts, options))
        if failures:
            raise RequestsFailed(failures, results)
        return results  # type: ignore[return-value]
