"""The reward server: a FastAPI app served by uvicorn.

* ``POST /get_reward``: OpenRLHF's remote reward protocol (:mod:`protocol`);
* ``POST /score``: caitool's plain records, the rewards back with the records' ids;
* ``GET /health``: 200 once the models are loaded, with the counts served so far.

A request is refused before any scoring with a 4xx and ``{"error": "<one line>"}``: 413 for a
body over ``--max-request-mb`` (read no further than that) or more than ``--max-items``
responses, 400 for a body that is not JSON, 422 for the wrong shape; 503 when the queue is
full, 408 for a body that has not arrived within ``--timeout`` seconds, 504 when its batch has
not been scored by then; a fault while scoring is a 500 with one line, and only the request
at fault gets it (see :mod:`batching`). On SIGTERM uvicorn
stops taking connections and finishes the requests in flight (up to ``--timeout``) before the
process ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from dataclasses import dataclass
from typing import Any

# At the top, not in create_app: FastAPI resolves the endpoints' annotations in this module's
# namespace. Only the serve-reward command imports this module.
from fastapi import Request

from caitool import console
from caitool.serving.batching import Batcher, Busy
from caitool.serving.protocol import PayloadError, PromptReader, openrlhf_items, plain_items

NAME = "serve-reward"


@dataclass
class Limits:
    max_request_bytes: int = 4 * 1024 * 1024
    max_items: int = 2048
    timeout: float = 300.0
    max_batch: int = 64
    max_wait: float = 0.01
    max_queue: int = 8192


def _error(status: int, reason: str):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": reason}, status_code=status)


async def _read_json(request, limit: int) -> Any:
    """The body as JSON, read no further than ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadError(413, f"the body is {int(length)} bytes; this server takes at most "
                                f"{limit} (--max-request-mb)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadError(413, f"the body is over {limit} bytes (--max-request-mb)")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise PayloadError(400, "the body is empty: send a JSON object")
    try:
        data = json.loads(body)
        # A lone surrogate ("\ud800") is valid JSON but no text a tokenizer can read.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeDecodeError:
        raise PayloadError(400, "the body is not UTF-8 text") from None
    except UnicodeEncodeError:
        raise PayloadError(400, "the body holds a lone surrogate (\\ud800-\\udfff): not text") from None
    except RecursionError:
        raise PayloadError(400, "the body's JSON is nested too deeply") from None
    except ValueError as exc:
        raise PayloadError(400, f"the body is not JSON: {exc}") from None
    return data


def create_app(scorer, limits: Limits, reader: PromptReader, describe: str = ""):
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    batcher = Batcher(scorer, limits.max_batch, limits.max_wait, limits.max_queue)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="caitool serve-reward", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):  # 404, 405: one line, as every other refusal
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc):
        return _error(422, "the request does not have the expected shape")

    async def body(request) -> Any:
        from starlette.requests import ClientDisconnect

        try:
            return await asyncio.wait_for(_read_json(request, limits.max_request_bytes),
                                          limits.timeout)
        except TimeoutError:
            raise PayloadError(408, f"the body did not arrive within {limits.timeout:g} s "
                                    "(--timeout)") from None
        except ClientDisconnect:
            raise PayloadError(400, "the client hung up before the body ended") from None

    async def scores(items: list) -> list:
        try:
            return await asyncio.wait_for(batcher.submit(items), limits.timeout)
        except TimeoutError:
            raise PayloadError(504, f"not scored within {limits.timeout:g} s (--timeout)") from None
        except Busy as exc:
            raise PayloadError(503, str(exc)) from None

    async def answer(request, read, reply):
        """``reply(items, scores, extra)`` for the request's items, or its one-line refusal.
        Caught here rather than by an exception handler: Starlette re-raises what reaches
        its handlers, and uvicorn then logs a traceback."""
        try:
            items, extra = read(await body(request))
            return reply(await scores(items), extra)
        except PayloadError as exc:
            return _error(exc.status, exc.reason)
        except Exception as exc:  # noqa: BLE001 - one line for the client and the log
            why = (f"{type(exc).__name__}: {exc}".splitlines() or [""])[0][:300]
            console.warn(NAME, f"{request.url.path}: {why}")
            return _error(500, f"the reward could not be computed: {why}")

    def openrlhf_reply(scored: list, _: Any) -> dict:
        rewards = [s.reward for s in scored]
        logs = {}
        for name in ("rm", "judge"):
            values = [getattr(s, name) for s in scored]
            if any(v is not None for v in values):
                logs[name] = [0.0 if v is None else v for v in values]
        return {"rewards": rewards, "scores": rewards, "extra_logs": logs}

    def plain_reply(scored: list, ids: list) -> dict:
        return {"ids": ids, "rewards": [s.reward for s in scored],
                "rm": [s.rm for s in scored], "judge": [s.judge for s in scored]}

    @app.post("/get_reward")
    async def get_reward(request: Request):
        return await answer(request, lambda data: (openrlhf_items(data, reader, limits.max_items),
                                                   None), openrlhf_reply)

    @app.post("/score")
    async def score(request: Request):
        return await answer(request, lambda data: plain_items(data, limits.max_items), plain_reply)

    @app.get("/health")
    async def health():
        return {"status": "ok", "reward": describe, "pid": os.getpid(), **batcher.stats.as_dict()}

    return app


def serve(app, host: str, port: int, limits: Limits) -> None:
    """Run until SIGTERM or Ctrl-C; requests in flight are finished first."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=int(limits.timeout) + 1, lifespan="on")
    server = uvicorn.Server(config)
    # uvicorn hands the signal that stopped it back to the handler it found once it has
    # drained; a clean drain then ends the command with status 0 rather than "terminated".
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    stats = app.state.batcher.stats
    console.info(NAME, f"stopped: {stats.requests} request(s), {stats.responses} response(s) "
                       f"scored in {stats.batches} batch(es)")
    if not server.started:
        from caitool.errors import CaitoolError

        raise CaitoolError(f"could not serve on {host}:{port} (is the port in use?)")
