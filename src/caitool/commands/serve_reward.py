from __future__ import annotations

import math
from typing import Annotated

import typer

from caitool import console
from caitool.commands._flags import command
from caitool.errors import CaitoolError

NAME = "serve-reward"
EXAMPLE = """    caitool serve-reward -r ./rm --port 8000
    caitool serve-reward --judge ./judge -c harmless --principles 2 --policy ./sft
    caitool serve-reward -r ./rm --judge Qwen/Qwen2.5-7B-Instruct --judge-backend vllm --judge-weight 0.5"""

Text = str | None


@command
def command(
    reward_model: Annotated[Text, typer.Option(
        "-r", "--reward-model", metavar="RM",
        help="Reward with this reward model's score (from train-rm), on its own tokenizer and "
             "template.")] = None,
    judge: Annotated[Text, typer.Option(
        "--judge", metavar="MODEL",
        help="Reward with this feedback model's verdict (in [-1, 1]) against the request's "
             "reference answer, or else against the other samples of the same prompt.")] = None,
    judge_backend: Annotated[str, typer.Option(
        "--judge-backend", help="Where the judge runs: hf (in-process), vllm, or openai (any "
                                "compatible server, with --judge-base-url).")] = "hf",
    judge_base_url: Annotated[Text, typer.Option(
        "--judge-base-url", help="openai judge backend: the server's URL.")] = None,
    constitution: Annotated[str, typer.Option(
        "-c", "--constitution", envvar="CAITOOL_CONSTITUTION",
        help="The judge's comparison principles: a built-in name or a file/directory.")] = "harmless",
    principles: Annotated[int, typer.Option(
        "--principles", help="Comparison principles sampled per response and averaged (0: all).")] = 1,
    rm_weight: Annotated[float, typer.Option(
        "--rm-weight", help="Weight of the reward model's score when both are given.")] = 1.0,
    judge_weight: Annotated[float, typer.Option(
        "--judge-weight", help="Weight of the judge's reward when both are given.")] = 1.0,
    policy: Annotated[Text, typer.Option(
        "--policy", metavar="MODEL",
        help="The policy being trained (its tokenizer is enough): OpenRLHF's prompts are read "
             "back through its chat template and its end-of-turn tokens are taken off "
             "responses.")] = None,
    format: Annotated[str, typer.Option(
        "--format", help="How the reward model reads prompts: chat (its template), raw "
                         "(Human:/Assistant: transcript), or auto (chat if it has a template).")] = "auto",
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    device: Annotated[Text, typer.Option(
        "--device", help="The reward model's device: cpu, cuda, cuda:1 ... (default: cuda if "
                         "there is one).")] = None,
    dtype: Annotated[str, typer.Option(
        "--dtype", help="The reward model's weights: float32, bfloat16 or float16.")] = "float32",
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Responses per reward-model forward pass.")] = 16,
    max_batch: Annotated[int, typer.Option(
        "--max-batch", help="Most responses scored together, gathered from concurrent requests.")] = 64,
    max_wait_ms: Annotated[float, typer.Option(
        "--max-wait-ms", help="How long the first request of a batch waits for others to join it.")] = 10.0,
    max_request_mb: Annotated[float, typer.Option(
        "--max-request-mb", help="Largest request body taken (413 beyond).")] = 4.0,
    max_items: Annotated[int, typer.Option(
        "--max-items", help="Most responses in one request (413 beyond).")] = 2048,
    max_queue: Annotated[int, typer.Option(
        "--max-queue", help="Most responses waiting at once (503 beyond).")] = 8192,
    timeout: Annotated[float, typer.Option(
        "--timeout", help="Seconds a request may wait for its reward (504 beyond); also how "
                          "long SIGTERM waits for requests in flight.")] = 300.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the judge's principle sampling.")] = 0,
    max_peers: Annotated[int, typer.Option(
        "--max-peers", help="Without a reference answer: the most other samples of its prompt "
                            "each response is judged against.")] = 8,
) -> None:
    """Serve the RL reward over HTTP for OpenRLHF, verl or any client (see docs/scaling.md).

    The reward is train-rloo/train-grpo's: the reward model's score, the judge's verdict, or
    their weighted sum. POST /get_reward takes OpenRLHF's remote reward requests
    (--reward.remote_url, before 0.10.2 --remote_rm_url, http://HOST:PORT/get_reward);
    POST /score takes a JSON list of {prompt, response} records (or messages; an optional
    reference) and returns their rewards; GET /health says it is ready. caitool.serving.verl.compute_score is verl's
    reward function for it. Logs go to stderr; SIGTERM finishes the requests in flight.
    """
    from caitool.serving.reward_server import Limits
    from caitool.training.critic_free import RLOptions
    from caitool.training.judge_reward import JudgeOptions

    if not reward_model and not judge:
        raise CaitoolError("nothing to reward with: pass -r/--reward-model, --judge, or both")
    for name, value, least in (("--batch-size", batch_size, 1), ("--max-batch", max_batch, 1),
                               ("--max-items", max_items, 1), ("--max-queue", max_queue, 1),
                               ("--max-peers", max_peers, 1),
                               ("--port", port, 0)):
        if value < least:
            raise CaitoolError(f"{name} must be at least {least}, not {value}")
    if port > 65535:
        raise CaitoolError(f"--port must be at most 65535, not {port}")
    for name, value in (("--max-wait-ms", max_wait_ms), ("--max-request-mb", max_request_mb),
                        ("--timeout", timeout)):
        if not math.isfinite(value) or value < 0 or (value == 0 and name != "--max-wait-ms"):
            raise CaitoolError(f"{name} must be a number above 0, not {value}")
    if not judge and (judge_base_url or principles != 1 or judge_backend != "hf"):
        raise CaitoolError("--judge-backend, --judge-base-url and --principles need --judge")
    reward = "+".join(name for name, given in (("rm", reward_model), ("judge", judge)) if given)
    options = RLOptions(
        reward=reward, reward_model=reward_model, rm_weight=rm_weight, judge_weight=judge_weight,
        judge=JudgeOptions(model=judge, backend=judge_backend, base_url=judge_base_url,
                           constitution=constitution, principles=principles),
        missing_eos_penalty=0.0)
    options.check()
    if judge:
        options.judge.load()  # a bad constitution costs no model
    limits = Limits(max_request_bytes=int(max_request_mb * 1024 * 1024), max_items=max_items,
                    timeout=timeout, max_batch=max_batch, max_wait=max_wait_ms / 1000,
                    max_queue=max_queue)
    _check_port(host, port)
    _serve(options, limits, policy, format, host, port, device, dtype, batch_size, seed,
           max_peers)


def _check_port(host: str, port: int) -> None:
    """A port that cannot be had is one line before any model loads."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CaitoolError(f"--host {host}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise CaitoolError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _serve(options, limits, policy, fmt, host, port, device, dtype, batch_size, seed,
           max_peers) -> None:
    from caitool.serving.protocol import PromptReader
    from caitool.serving.reward_server import create_app, serve
    from caitool.serving.scorer import Scorer

    reader = PromptReader(_policy_tokenizer(policy) if policy else None)
    scorer = Scorer(options, fmt, device, dtype, batch_size, seed, max_peers)
    try:
        describe = scorer.describe()
        console.info(NAME, f"serving {describe} on http://{host}:{port}: POST /get_reward "
                           "(OpenRLHF), POST /score, GET /health")
        serve(create_app(scorer, limits, reader, describe), host, port, limits)
    finally:
        scorer.close()


def _policy_tokenizer(policy: str):
    from caitool.models import local_model
    from caitool.training import fit

    return fit.load_tokenizer(local_model(policy), "policy")
