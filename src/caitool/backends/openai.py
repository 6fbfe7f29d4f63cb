"""Any OpenAI-compatible server: ``vllm serve``, ``transformers serve``, TGI, SGLang, hosted APIs.

Every stage of a pipeline can share one server, so the model loads once. Requests go out
``concurrency`` at a time; 429s, 5xx answers, timeouts and dropped connections are retried
with exponential backoff. A prompt that still fails is reported by its index
(:class:`RequestsFailed`) while the rest of the batch is kept.

Servers differ in what they honour, so the backend finds out as it goes and remembers:
whether ``n`` returns several choices (else it asks once per sample), whether the chat
endpoint continues a final assistant message (vLLM's ``continue_final_message``; else an
assistant prefix such as an answer cue is dropped, with a warning), and whether log-
probabilities come back (else option scores are estimated from sampled answers and their
method is ``sampled``).
"""

from __future__ import annotations

import math
import os
import random
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from caitool import console
from caitool.backends.base import Backend, OptionScores, Prompt, RequestsFailed, SamplingParams
from caitool.backends.hf import cut_at_stop
from caitool.errors import CaitoolError

# Tuning a user rarely needs, read from the environment so the shared flags stay few.
TIMEOUT_ENV = "CAITOOL_REQUEST_TIMEOUT"  # seconds per request (default 600)
RETRIES_ENV = "CAITOOL_RETRIES"  # retries after the first attempt (default 5)
BACKOFF_ENV = "CAITOOL_RETRY_BACKOFF"  # first backoff in seconds, doubling (default 1)
MAX_BACKOFF = 60.0
# Hosted APIs accept at most four stop strings; the rest are cut client-side anyway.
MAX_STOP = 4
TOP_LOGPROBS = 20
SCORE_SAMPLES = 8
SCORE_MAX_TOKENS = 16
# Added to every count when turning sampled answers into probabilities, so an option that
# was never sampled keeps a finite log-probability.
SMOOTHING = 0.5


class Transient(Exception):
    """Worth retrying: 429, 5xx, a timeout, a dropped connection."""

    def __init__(self, reason: str, retry_after: float | None = None, connect: bool = False):
        super().__init__(reason)
        self.retry_after = retry_after
        self.connect = connect


class Rejected(Exception):
    """The server refused this request (4xx): retrying the same request will not help."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class Unsupported(Exception):
    """The server answered without the log-probabilities that were asked for."""


class NoChoice(Exception):
    """Log-probabilities came back, but the answer never reached an option."""


# -- pure helpers (unit-tested) ------------------------------------------------------------


def safe_url(url: str) -> str:
    """The URL without user:password, for provenance and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def error_detail(body: Any, text: str) -> str:
    """One line from an error response: OpenAI's error.message, FastAPI's detail, or text."""
    detail: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            detail = error.get("message")
        elif isinstance(error, str):
            detail = error
        if detail is None:
            detail = body.get("detail") or body.get("message")
    if detail is None:
        detail = text
    line = " ".join(str(detail).split())
    return line[:300]


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date; the exponential backoff serves as well


def backoff_delay(attempt: int, base: float, retry_after: float | None = None,
                  jitter: float | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): the server's Retry-After when
    given, else ``base`` doubling each time with +-50% jitter, capped."""
    if retry_after is not None:
        return min(retry_after, MAX_BACKOFF)
    factor = random.uniform(0.5, 1.5) if jitter is None else jitter
    return min(base * 2 ** (attempt - 1) * factor, MAX_BACKOFF)


def option_keys(options: list[str]) -> tuple[str, list[str]]:
    """The text all options share at the start, and what tells each apart (stripped):
    ``[" (A)", " (B)"]`` -> ``(" (", ["A)", "B)"])``."""
    shared = os.path.commonprefix(options)
    return shared, [option[len(shared):].strip() for option in options]


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def top_logprob_scores(candidates: dict[str, float], keys: list[str]) -> list[float]:
    """Log-probability of each option from one position's top tokens: every candidate token
    that starts an option's distinguishing text counts for it (" A" and "A" both count for
    "A)"). An option missing from the candidates gets the most it can have: what the list
    leaves over, and no more than the least likely token listed."""
    scores: list[float | None] = []
    for key in keys:
        matches = [lp for token, lp in candidates.items()
                   if token.strip() and key and (key.startswith(token.strip())
                                                 or token.strip().startswith(key))]
        scores.append(_logsumexp(matches) if matches else None)
    left = 1.0 - sum(math.exp(lp) for lp in candidates.values())
    floor = min(min(candidates.values()), math.log(max(left, 1e-12)))
    return [floor if s is None else s for s in scores]


def chat_logprob_scores(positions: list[dict[str, Any]], shared: str, keys: list[str],
                        prefilled: bool) -> list[float] | None:
    """Option scores from a chat answer's per-token ``logprobs.content``.

    With the shared option text already written (``prefilled``), the first generated
    position decides. Otherwise the answer is scanned for the first token that starts an
    option right after the shared text (``(`` then ``A``), and that position's top tokens
    decide. None when no position qualifies."""
    written = ""
    anchor = shared.strip()
    for index, position in enumerate(positions):
        token = position.get("token") or ""
        candidates = {c["token"]: c["logprob"] for c in position.get("top_logprobs") or []
                      if isinstance(c, dict) and "token" in c and c.get("logprob") is not None}
        if position.get("logprob") is not None:
            candidates.setdefault(token, position["logprob"])
        if prefilled and index == 0:
            return top_logprob_scores(candidates, keys) if candidates else None
        starts_option = token.strip() and any(
            k.startswith(token.strip()) or token.strip().startswith(k) for k in keys if k)
        if starts_option and written.rstrip().endswith(anchor) and candidates:
            return top_logprob_scores(candidates, keys)
        written += token
    return None


def echo_option_logprob(logprobs: dict[str, Any], prompt_chars: int, option_chars: int) -> float:
    """Sum of the option's token log-probabilities from a completions ``echo`` answer: the
    tokens that overlap characters [prompt_chars, prompt_chars + option_chars)."""
    tokens = logprobs.get("tokens")
    values = logprobs.get("token_logprobs")
    offsets = logprobs.get("text_offset")
    if not tokens or not values or not offsets or not len(tokens) == len(values) == len(offsets):
        raise Unsupported("no echoed prompt log-probabilities")
    end = prompt_chars + option_chars
    total = 0.0
    counted = 0
    for token, value, offset in zip(tokens, values, offsets, strict=True):
        if offset < end and offset + max(len(token), 1) > prompt_chars:
            if value is None:
                raise Unsupported("no log-probability for an option token")
            total += value
            counted += 1
    if not counted:
        raise Unsupported("the option's tokens are missing from the echo")
    return total


def pick_option(text: str, options: list[str]) -> int | None:
    """Which option a sampled answer chose: the earliest option text in it (" (A)" is found
    as "(A)"), else a bare letter as its first word. None if neither."""
    best: tuple[int, int] | None = None
    for index, option in enumerate(options):
        key = option.strip()
        at = text.find(key) if key else -1
        if at != -1 and (best is None or at < best[0]):
            best = (at, index)
    if best is not None:
        return best[1]
    first = re.match(r"\W*(\w+)", text)
    if first:
        for index, option in enumerate(options):
            if re.sub(r"\W", "", option) == first.group(1):
                return index
    return None


def sampled_scores(texts: list[str], options: list[str]) -> list[float]:
    """Pseudo log-probabilities from how often each option was chosen (smoothed)."""
    counts = [0] * len(options)
    for text in texts:
        choice = pick_option(text, options)
        if choice is not None:
            counts[choice] += 1
    total = sum(counts) + SMOOTHING * len(options)
    return [math.log((c + SMOOTHING) / total) for c in counts]


def _env_number(name: str, default: float, cast: Callable[[str], float]) -> float:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return cast(value)
    except ValueError:
        raise CaitoolError(f"{name} must be a number, not '{value}'") from None


# -- the backend ---------------------------------------------------------------------------


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, model: str, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8,
                 timeout: float | None = None, retries: int | None = None,
                 backoff: float | None = None, score_samples: int = SCORE_SAMPLES,
                 **options: Any):
        super().__init__(model, **options)
        if not base_url:
            raise CaitoolError("the openai backend needs --base-url (e.g. "
                               "http://127.0.0.1:8000/v1) or CAITOOL_BASE_URL")
        if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).hostname:
            raise CaitoolError(f"--base-url must be an http(s) URL, not '{safe_url(base_url)}'")
        if concurrency < 1:
            raise CaitoolError("--concurrency must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout if timeout is not None else _env_number(TIMEOUT_ENV, 600.0, float)
        self.retries = int(retries if retries is not None else _env_number(RETRIES_ENV, 5, int))
        self.backoff = backoff if backoff is not None else _env_number(BACKOFF_ENV, 1.0, float)
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise CaitoolError(f"{TIMEOUT_ENV} must be > 0, {RETRIES_ENV} and {BACKOFF_ENV} >= 0")
        self.score_samples = max(1, score_samples)
        self._client = None
        self._secret: str | None = None
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        # What the server turned out to honour: None until known.
        self.honours_n: bool | None = None
        self.prefill: bool | None = None
        self.logprobs: dict[str, bool | None] = {"chat": None, "raw": None}
        self.retried = 0

    # -- plumbing --------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            import httpx

            headers = {"Content-Type": "application/json"}
            self._secret = os.environ.get(self.api_key_env) or None
            if self._secret:
                headers["Authorization"] = f"Bearer {self._secret}"
            self._client = httpx.Client(
                base_url=self.base_url + "/", headers=headers,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 30.0)),
                limits=httpx.Limits(max_connections=self.concurrency,
                                    max_keepalive_connections=self.concurrency),
            )
        return self._client

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        console.notice(message)

    def default_format(self) -> str:
        # The server applies the model's chat template; raw transcripts need --format raw.
        return "chat"

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "base_url": safe_url(self.base_url)}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _attempt(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = self.client.post(path, json=body)
        except httpx.TimeoutException:
            raise Transient(f"no answer within {self.timeout:g}s") from None
        except httpx.TransportError as exc:
            reason = self._redact(str(exc) or type(exc).__name__)
            raise Transient(f"cannot reach {safe_url(self.base_url)}: {reason}",
                            connect=isinstance(exc, httpx.ConnectError)) from None
        status = response.status_code
        if status >= 400:
            try:
                payload = response.json()
            except ValueError:
                payload = None
            detail = self._redact(error_detail(payload, response.text))
            reason = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
            if status in (408, 409, 429) or status >= 500:
                raise Transient(reason, retry_after_seconds(response.headers.get("retry-after")))
            if status in (401, 403):
                raise CaitoolError(f"{safe_url(self.base_url)} refused the request ({reason}); "
                                   f"check the API key in ${self.api_key_env}")
            if status == 404:
                raise CaitoolError(f"{safe_url(self.base_url)}/{path}: {reason} (check -m and "
                                   "--base-url, which usually ends in /v1)")
            raise Rejected(status, reason)
        try:
            payload = response.json()
        except ValueError:
            raise Transient("the server answered with invalid JSON") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
            raise Transient("the server's answer has no 'choices'")
        return payload

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request, retried with backoff while the failure is transient."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

        def wait(state) -> float:
            error = state.outcome.exception()
            return backoff_delay(state.attempt_number, self.backoff,
                                 getattr(error, "retry_after", None))

        def note(state) -> None:
            with self._lock:
                self.retried += 1
            self._warn_once("retry", f"{state.outcome.exception()}; retrying with backoff "
                            "(further retries are not reported)")

        retrying = Retrying(stop=stop_after_attempt(self.retries + 1), wait=wait,
                            retry=retry_if_exception_type(Transient), before_sleep=note,
                            reraise=True)
        return retrying(self._attempt, path, body)

    def _run_all(self, jobs: list[Callable[[], Any]]) -> tuple[list[Any], dict[int, str]]:
        """Run jobs ``concurrency`` at a time; a job that fails for good is a failure at its
        index. When every job fails in a way that is not about one request (connection
        refused, the same 4xx everywhere), the whole batch fails with that reason.

        The workers are daemon threads: a run that is interrupted, or stops on an error that
        no retry fixes, exits at once instead of waiting for requests still in flight."""
        results: list[Any] = [None] * len(jobs)
        failures: dict[int, str] = {}
        errors: list[Exception] = []
        fatal: list[BaseException] = []
        if not jobs:
            return results, failures
        pending = iter(enumerate(jobs))
        lock = threading.Lock()
        left = [len(jobs)]
        finished = threading.Event()

        def worker() -> None:
            while not finished.is_set():
                with lock:
                    item = next(pending, None)
                if item is None:
                    return
                index, job = item
                try:
                    results[index] = job()
                except (Transient, Rejected) as exc:
                    with lock:
                        failures[index] = str(exc)
                        errors.append(exc)
                except BaseException as exc:  # handed to the calling thread
                    fatal.append(exc)
                    finished.set()
                    return
                with lock:
                    left[0] -= 1
                    if not left[0]:
                        finished.set()

        for _ in range(min(self.concurrency, len(jobs))):
            threading.Thread(target=worker, daemon=True).start()
        try:
            finished.wait()
        except BaseException:
            finished.set()
            raise
        if fatal:
            raise fatal[0]
        if len(failures) == len(jobs):
            unreachable = all(isinstance(e, Transient) and e.connect for e in errors)
            refused = (len(errors) > 1 and all(isinstance(e, Rejected) for e in errors)
                       and len({str(e) for e in errors}) == 1)
            if unreachable or refused:
                raise CaitoolError(f"every request failed: {errors[0]}")
        return results, failures

    # -- generation ------------------------------------------------------------------------

    def _request(self, prompt: Prompt, params: SamplingParams, n: int, seed: int | None,
                 extra: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Send one generation request; the choices, and whether the assistant prefix was
        continued (False when the server cannot, and the prefix was dropped)."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_new_tokens,
                                "temperature": params.temperature}
        if params.temperature > 0 and params.top_p < 1:
            body["top_p"] = params.top_p
        if n > 1:
            body["n"] = n
        if seed is not None:
            body["seed"] = seed
        if params.stop:
            body["stop"] = list(params.stop)[:MAX_STOP]
        body.update(extra or {})
        if not prompt.is_chat:
            body["prompt"] = prompt.text or ""
            return self.post("completions", body)["choices"], True
        body["messages"] = prompt.message_dicts()
        if prompt.assistant_prefix and self.prefill is not False:
            prefixed = dict(body, messages=body["messages"] + [
                {"role": "assistant", "content": prompt.assistant_prefix}],
                continue_final_message=True, add_generation_prompt=False)
            try:
                choices = self.post("chat/completions", prefixed)["choices"]
                self.prefill = True
                return choices, True
            except Rejected as exc:
                if self.prefill:
                    raise
                # Refused with the prefix: if it passes without, the server cannot continue
                # a message; if not, the request itself is at fault.
                choices = self.post("chat/completions", body)["choices"]
                self.prefill = False
                self._warn_once("prefill", "the server cannot continue an assistant message "
                                f"({exc}); assistant prefixes such as answer cues are dropped")
                return choices, False
        return self.post("chat/completions", body)["choices"], not prompt.assistant_prefix

    @staticmethod
    def _texts(choices: list[dict[str, Any]], stop: list[str]) -> list[str]:
        ordered = sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
        texts = []
        for choice in ordered:
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else choice.get("text")
            texts.append(cut_at_stop(text or "", stop).strip())
        return texts

    def _samples(self, prompt: Prompt, params: SamplingParams, n: int,
                 seed: int | None) -> list[str]:
        """``n`` completions; a server that ignores ``n`` is asked again, one seed each."""
        choices, _ = self._request(prompt, params, n, seed)
        texts = self._texts(choices, params.stop)
        if n > 1:
            self.honours_n = len(texts) >= n
        while len(texts) < n:
            more_seed = None if seed is None else seed + len(texts)
            choices, _ = self._request(prompt, params, 1, more_seed)
            got = self._texts(choices, params.stop)
            if not got:
                raise Transient("the server returned no choices")
            texts += got
        return texts[:n]

    def _generate(self, prompts: list[Prompt], params: SamplingParams
                  ) -> tuple[list[list[str] | None], dict[int, str]]:
        n = max(1, params.n)
        if n > 1 and self.honours_n is None and len(prompts) > 1:
            # Learn from one prompt whether the server honours n before sending the rest.
            head, head_failed = self._generate(prompts[:1], params)
            tail, tail_failed = self._generate(prompts[1:], params)
            return head + tail, {**head_failed, **{i + 1: r for i, r in tail_failed.items()}}
        # A server known to ignore n gets one request per sample, all side by side.
        split = n > 1 and self.honours_n is False
        units = [(i, j) for i in range(len(prompts)) for j in range(n if split else 1)]

        def job(unit: tuple[int, int]) -> list[str]:
            index, sample = unit
            seed = None if params.seed is None else params.seed + sample
            return self._samples(prompts[index], params, 1 if split else n, seed)

        results, failures = self._run_all([lambda u=u: job(u) for u in units])
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
        outputs, failed = self._generate(prompts, params)
        if failed:
            raise RequestsFailed(failed, outputs)
        return outputs  # type: ignore[return-value]

    # -- option scoring --------------------------------------------------------------------

    def _logprob_scores(self, prompt: Prompt, options: list[str]) -> list[float]:
        """Log-probabilities from the server, or Unsupported when it sends none."""
        if not prompt.is_chat:
            # Prompt log-probabilities of prompt+option, echoed back by the completions API.
            text = prompt.text or ""
            scores = []
            for option in options:
                body = {"model": self.model, "prompt": text + option, "max_tokens": 1,
                        "temperature": 0, "echo": True, "logprobs": 1}
                choice = self.post("completions", body)["choices"][0]
                logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
                if not isinstance(logprobs, dict):
                    raise Unsupported("no log-probabilities in the answer")
                if not str(choice.get("text", "")).startswith(text + option):
                    raise Unsupported("the prompt was not echoed")
                scores.append(echo_option_logprob(logprobs, len(text), len(option)))
            return scores
        # Chat: the top tokens where the answer picks an option. The prompt's assistant
        # prefix plus the options' shared start ("The answer is: (") is written for the
        # model when the server can continue a message, so the first token decides.
        shared, keys = option_keys(options)
        lead = Prompt(messages=prompt.messages,
                      assistant_prefix=(prompt.assistant_prefix + shared).rstrip())
        params = SamplingParams(max_new_tokens=1 if self.prefill is not False else
                                SCORE_MAX_TOKENS, temperature=0)
        extra = {"logprobs": True, "top_logprobs": TOP_LOGPROBS}
        choices, prefilled = self._request(lead, params, 1, None, extra)
        if not prefilled and params.max_new_tokens == 1:
            # The prefix was just found to be unsupported: ask for a whole short answer.
            params.max_new_tokens = SCORE_MAX_TOKENS
            choices, prefilled = self._request(lead, params, 1, None, extra)
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        logprobs = choice.get("logprobs")
        positions = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not positions:
            raise Unsupported("no log-probabilities in the answer")
        scores = chat_logprob_scores(positions, "" if prefilled else shared, keys, prefilled)
        if scores is None:
            raise NoChoice("the answer picked no option")
        return scores

    def _try_logprobs(self, prompt: Prompt, options: list[str]) -> OptionScores | None:
        """Scores from log-probabilities, or None where the server gives none."""
        kind = "chat" if prompt.is_chat else "raw"
        if self.logprobs[kind] is False:
            return None
        try:
            scores = self._logprob_scores(prompt, options)
        except NoChoice:
            return None  # this prompt alone is sampled
        except Unsupported as exc:
            if self.logprobs[kind] is None:
                self.logprobs[kind] = False
                self._warn_once(f"sampled-{kind}", "the server returned no usable log-"
                                f"probabilities ({exc}); option scores are estimated from "
                                f"{self.score_samples} sampled answers (method 'sampled')")
            return None
        self.logprobs[kind] = True
        return OptionScores(scores, "logprobs")

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        """Log-probabilities where the server returns them (method ``logprobs``), else the
        frequency of each option among sampled answers (method ``sampled``)."""
        if not prompts:
            return []
        for opts in options:
            if len(opts) < 2 or any(not o for o in opts):
                raise CaitoolError("option scoring needs at least two non-empty options")
        results: list[OptionScores | None] = [None] * len(prompts)
        failures: dict[int, str] = {}
        # The first prompt of each kind goes alone, so that the rest know whether the server
        # gives log-probabilities before they are sent.
        first: dict[str, int] = {}
        for index, prompt in enumerate(prompts):
            first.setdefault("chat" if prompt.is_chat else "raw", index)
        probes = sorted(first.values())
        for group in (probes, [i for i in range(len(prompts)) if i not in probes]):
            done, failed = self._run_all(
                [lambda i=i: self._try_logprobs(prompts[i], options[i]) for i in group])
            for position, index in enumerate(group):
                if position in failed:
                    failures[index] = failed[position]
                else:
                    results[index] = done[position]
        sample = [i for i, r in enumerate(results) if r is None and i not in failures]
        if sample:
            params = SamplingParams(max_new_tokens=SCORE_MAX_TOKENS, temperature=1.0,
                                    n=self.score_samples)
            answers, failed = self._generate([prompts[i] for i in sample], params)
            for position, index in enumerate(sample):
                if position in failed:
                    failures[index] = failed[position]
                else:
                    results[index] = OptionScores(
                        sampled_scores(answers[position] or [], options[index]), "sampled")
        if failures:
            raise RequestsFailed(failures, results)
        return results  # type: ignore[return-value]
