"""The openai SDK's client as caitool uses it, and what its errors mean for a request.

The SDK retries (honouring Retry-After) and times out by itself; this module sets it up with
caitool's first backoff and retry count, and classifies what still fails: a refusal no retry
changes, a server that was never reached, an answer that is no completion.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from caitool.errors import CaitoolError

# Statuses the SDK retries although they are 4xx: not a verdict on the request itself.
TRANSIENT_4XX = (408, 409, 429)

# The SDK's own first backoff (openai._constants.INITIAL_RETRY_DELAY); ours scales it.
SDK_FIRST_BACKOFF = 0.5

# What a server, a proxy or the HTTP layer may echo of a request's credentials: bearer and
# basic tokens, header-like "authorization: ..." pairs, and OpenAI-style keys.
SECRETS = (
    (re.compile(r"(?i)\b((?:proxy-)?authorization|(?:x-)?api[-_]?key|cookie)([\"']?\s*[:=]\s*[\"']?)"
                r"[^\"',;}\]\n]+"), r"\1\2***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;}\]]+"), r"\1 ***"),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-***"),
)


class BadAnswer(Exception):
    """The server answered 200 with something that is not a completion."""


def short(value: Any) -> str:
    """A value from a server's answer, for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def answer_choices(payload: Any) -> list[dict[str, Any]]:
    """A completion's choices, each checked for what caitool reads of it (its index and its
    text), so that an odd answer is a failed request with the reason, not a crash."""
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list) or not choices:
        raise BadAnswer("the server's answer has no 'choices'")
    for number, choice in enumerate(choices):
        if not isinstance(choice, dict):
            raise BadAnswer(f"choice {number} is not an object: {short(choice)}")
        index = choice.get("index")
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise BadAnswer(f"choice {number}'s index is not a whole number: {short(index)}")
        message = choice.get("message")
        if message is not None and not isinstance(message, dict):
            raise BadAnswer(f"choice {number}'s message is not an object: {short(message)}")
        text = message.get("content") if message is not None else choice.get("text")
        if text is not None and not isinstance(text, str):
            raise BadAnswer(f"choice {number}'s text is not a string: {short(text)}")
    return choices


def split_url(url: str, key_env: str = "OPENAI_API_KEY") -> Any:
    """The parts of an http(s) URL, or one line saying what is wrong with it (never the
    credentials it may hold, so not the parser's message, which can quote them)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise CaitoolError("--base-url is not a valid URL (check its host and port)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CaitoolError(f"--base-url must be an http(s) URL, not '{safe_url(url)}'")
    if parts.username is not None or parts.password is not None:
        # The SDK would send them as the key, silently replacing $OPENAI_API_KEY.
        raise CaitoolError(f"--base-url must not hold credentials (user:password@): give "
                           f"{safe_url(url)} and put the API key in ${key_env}")
    return parts


def safe_url(url: str) -> str:
    """The URL without user:password, query or fragment, for provenance and messages."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port:
        host += f":{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact(text: str, secret: str | None) -> str:
    """``text`` with the API key and anything that looks like a credential masked."""
    if secret:
        text = text.replace(secret, "***")
    for pattern, masked in SECRETS:
        text = pattern.sub(masked, text)
    return text


def read_key(variable: str) -> str | None:
    """The API key from ``$variable`` (surrounding whitespace dropped), or None. A key that an
    HTTP header cannot carry is refused here: the HTTP layer would echo it in its error."""
    key = (os.environ.get(variable) or "").strip()
    if any(not " " <= char <= "~" for char in key):
        raise CaitoolError(f"the API key in ${variable} holds characters an HTTP header cannot "
                           "carry (a line break, a control or non-ASCII character)")
    return key or None


def error_detail(body: Any, text: str, secret: str | None = None) -> str:
    """One line from an error response: OpenAI's error.message, FastAPI's detail, or text;
    redacted before it is cut short, so that no part of a credential is left."""
    detail = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("detail")
    return redact(" ".join(str(detail or text).split()), secret)[:300]


def env_number(name: str, default: float, cast: Callable[[str], float]) -> float:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        number = cast(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise CaitoolError(f"{name} must be a number, not '{value}'")
    return number


def is_refusal(exc: BaseException) -> bool:
    """A 4xx that no retry changes: the server will not take this request as it is."""
    import openai

    return (isinstance(exc, openai.APIStatusError) and 400 <= exc.status_code < 500
            and exc.status_code not in TRANSIENT_4XX)


def is_unreachable(exc: BaseException) -> bool:
    """The connection was never made (as opposed to one that dropped or timed out). Matched
    by name so that either of the SDK's transports (httpx, httpx2) counts."""
    import openai

    if not isinstance(exc, openai.APIConnectionError) or isinstance(exc, openai.APITimeoutError):
        return False
    return any(k.__name__ == "ConnectError" for k in type(exc.__cause__).__mro__)


def cancel_pending(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def sdk_client(base_url: str, api_key: str, timeout: float, retries: int, backoff: float,
               on_retry: Callable[[], None]) -> Any:
    """The SDK's async client, with our first backoff instead of its 0.5 s and a callback on
    each retry (the SDK exposes neither, so its backoff hook is overridden)."""
    import openai

    class Client(openai.AsyncOpenAI):
        def _calculate_retry_timeout(self, remaining_retries, options, response_headers=None):
            on_retry()
            wait = super()._calculate_retry_timeout(remaining_retries, options, response_headers)
            # A server's Retry-After comes back unchanged and is kept; only backoff scales.
            if wait == self._parse_retry_after_header(response_headers):
                return wait
            return wait * backoff / SDK_FIRST_BACKOFF

    return Client(base_url=base_url, api_key=api_key, max_retries=retries,
                  timeout=openai.Timeout(timeout, connect=min(timeout, 30.0)))
