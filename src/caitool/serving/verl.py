"""The reward function verl calls, asking a running ``caitool serve-reward`` for the reward.

Point verl's config at this file::

    custom_reward_function.path=<site-packages>/caitool/serving/verl.py
    custom_reward_function.name=compute_score          # one response per call
    # or name=compute_score_batch with reward_model.reward_manager=batch

verl hands a reward function the response text, the data source, the ground truth and the
row's ``extra_info``, but not the prompt: the prompt must travel in ``extra_info`` as
``prompt`` (text or chat messages) or ``question`` (verl's own preprocessing scripts write
``question``). The ground truth goes to the judge as the reference answer unless
``use_reference`` is false (then the judge compares the samples of a prompt with each other).
The server's URL comes from ``url`` (verl's ``custom_reward_function.reward_kwargs``) or the
environment variable ``CAITOOL_REWARD_URL`` (default http://127.0.0.1:8000).

Only the standard library: verl's workers need nothing of caitool's installed beyond this file.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


def _record(solution: str, ground_truth: Any, extra_info: Any, use_reference: bool) -> dict:
    info = extra_info if isinstance(extra_info, dict) else {}
    prompt = info.get("prompt", info.get("question"))
    if prompt is None:
        raise ValueError("caitool's reward needs the prompt: put it in each row's extra_info as "
                         "'prompt' (text or chat messages) or 'question'")
    if not isinstance(prompt, str):
        prompt = [{"role": m["role"], "content": m["content"]} for m in prompt]
    record: dict[str, Any] = {"prompt": prompt, "response": solution}
    if use_reference and isinstance(ground_truth, str) and ground_truth:
        record["reference"] = ground_truth
    return record


def _post(records: list[dict], url: str | None, timeout: float) -> list[float]:
    base = (url or os.environ.get("CAITOOL_REWARD_URL") or DEFAULT_URL).rstrip("/")
    request = urllib.request.Request(f"{base}/score", data=json.dumps(records).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())["rewards"]
    except urllib.error.HTTPError as exc:
        reason = exc.read().decode(errors="replace")[:500]
        raise RuntimeError(f"caitool serve-reward at {base} answered {exc.code}: {reason}") from None
    except urllib.error.URLError as exc:
        raise RuntimeError(f"caitool serve-reward at {base} cannot be reached: {exc.reason}") from None


def compute_score(data_source: Any = None, solution_str: str = "", ground_truth: Any = None,
                  extra_info: Any = None, url: str | None = None, use_reference: bool = True,
                  timeout: float = 600.0, **_: Any) -> float:
    """verl's per-response reward function."""
    record = _record(solution_str, ground_truth, extra_info, use_reference)
    return float(_post([record], url, timeout)[0])


def compute_score_batch(data_sources: list | None = None, solution_strs: list | None = None,
                        ground_truths: list | None = None, extra_infos: list | None = None,
                        url: str | None = None, use_reference: bool = True,
                        timeout: float = 600.0, **_: Any) -> list[float]:
    """verl's batched reward function (``reward_manager=batch``): one request for the batch,
    so the judge sees each prompt's samples together."""
    solutions = list(solution_strs or [])
    truths = list(ground_truths) if ground_truths is not None else [None] * len(solutions)
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solutions)
    records = [_record(s, g, e, use_reference) for s, g, e in zip(solutions, truths, infos, strict=True)]
    return [float(r) for r in _post(records, url, timeout)] if records else []
