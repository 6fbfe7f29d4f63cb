"""The openai SDK's client as caitool uses it, and what its errors mean for a request.

The SDK retries (honouring Retry-After) and times out by itself; this module sets it up with
caitool's first backoff and retry count, and classifies what still fails: a refusal no retry
changes, a server that was never reached, an answer that is no completion.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from caitool.errors import CaitoolError

# Statuses the SDK retries although they are 4xx: not a verdict on the request itself.
TRANSIENT_4XX = (408, 409, 429)

# The SDK's own first backoff (openai._constants.INITIAL_RETRY_DELAY); ours scales it.
SDK_FIRST_BACKOFF = 0.5

class BadAnswer(Exception):
    """The server answered 200 with something that is not a completion."""


def safe_url(url: str) -> str:
    """The URL without user:password, for provenance and messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def error_detail(body: Any, text: str) -> str:
    """One line from an error response: OpenAI's error.message, FastAPI's detail, or text."""
    detail = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("detail")
    return " ".join(str(detail or text).split())[:300]


def env_number(name: str, default: float, cast: Callable[[str], float]) -> float:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return cast(value)
    except ValueError:
        raise CaitoolError(f"{name} must be a number, not '{value}'") from None


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
