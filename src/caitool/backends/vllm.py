"""In-process vLLM (optional extra ``caitool[vllm]`` on CUDA GPUs; ``make install-vllm`` for
vLLM's CPU build).

Prompts are rendered and tokenized here, exactly as the hf backend does, and handed to
``LLM.generate`` as token ids: chat and raw prompts, assistant prefixes and option scoring
then behave the same on both backends. Prefix caching stays on, so the few-shot examples
that open every critique prompt are computed once. Option scores are the summed
``prompt_logprobs`` of each option's tokens after the prompt.

The functions above the class turn caitool requests into vLLM's inputs and read its outputs
back; they need only a tokenizer and are tested without vLLM.

stdout is data only: vLLM logs to stdout by default, from this process and from the engine
processes it starts (engine core, workers), which read their logging set-up from the
environment. So the variables are set before vLLM is imported, and while vLLM runs, this
process's stdout and stderr are a pipe that :class:`EngineLog` reads: the processes the
engine starts inherit it for life, whatever they print. Its lines reach stderr, less vLLM's
known harmless CPU notices; an engine's errors become one line naming the cause.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from caitool import models
from caitool.backends.base import Backend, OptionScores, SamplingParams, cut_at_stop
from caitool.errors import CaitoolError
from caitool.render import Prompt, has_chat_template, option_ids, prompt_ids

INSTALL_HINT = ("pip install 'caitool[vllm]' (vLLM 0.27.1 for CUDA GPUs), or on a CPU: "
                "make install-vllm (vLLM's CPU build, in a venv of its own)")
# Extra keyword arguments for vllm.LLM, as a JSON object (gpu_memory_utilization, ...).
LLM_ARGS_ENV = "CAITOOL_VLLM_ARGS"
# vLLM's own variable: INFO or DEBUG shows vLLM's log at that level, unfiltered.
LEVEL_ENV = "VLLM_LOGGING_LEVEL"
SHUTDOWN_SECONDS = 2

# "(EngineCore pid=7) WARNING 12-02 04:16:23 [core.py:121] message"
LOG_LINE = re.compile(r"^(?:\([\w:]+ pid=\d+\) )?(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                      r"\d\d-\d\d [\d:]{8} \[[^\]]*\] (?P<message>.*)$")
PROCESS = re.compile(r"^\([\w:]+ pid=\d+\) ?")
EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception): \S")
# What vLLM's CPU build says on every start and the user can do nothing about.
NOISE = ("Triton", "LD_PRELOAD", "NUMA binding", "Model Runner V2",
         "Inductor compilation was disabled", "Compiling model again due to a load failure",
         "checkpoint shards", "[shutdown]", "resource_tracker", "warnings.warn(")


def encode(tokenizer: Any, prompts: list[Prompt]) -> list[list[int]]:
    """Token ids of each prompt, as the hf backend and training render them."""
    return [prompt_ids(tokenizer, p) for p in prompts]


def sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """caitool's sampling settings as ``vllm.SamplingParams`` keyword arguments."""
    greedy = params.temperature <= 0
    kwargs: dict[str, Any] = {
        "n": max(1, params.n),
        "temperature": 0.0 if greedy else params.temperature,
        "top_p": 1.0 if greedy else params.top_p,
        "max_tokens": params.max_new_tokens,
        "skip_special_tokens": True,
    }
    if params.top_k > 0 and not greedy:
        kwargs["top_k"] = params.top_k
    if params.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = params.repetition_penalty
    if params.stop:
        kwargs["stop"] = list(params.stop)
    if params.seed is not None:
        kwargs["seed"] = params.seed
    return kwargs


def token_prompts(encoded: list[list[int]]) -> list[dict[str, list[int]]]:
    """vLLM's ``TokensPrompt`` form."""
    return [{"prompt_token_ids": ids} for ids in encoded]


def completion_texts(output: Any, stop: list[str]) -> list[str]:
    """The texts of one ``RequestOutput``, cut and stripped as the hf backend's are."""
    return [cut_at_stop(completion.text, stop).strip() for completion in output.outputs]


def scoring_jobs(tokenizer: Any, prompts: list[Prompt], options: list[list[str]]
                 ) -> list[tuple[int, int, list[int], int]]:
    """One sequence per (prompt, option): (prompt index, option index, prompt and option
    tokenised together, where the option's own tokens start; see render.split_options)."""
    jobs = []
    for index, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
        if not opts:
            continue
        context, tails = option_ids(tokenizer, prompt, opts)
        for option_index, tail in enumerate(tails):
            jobs.append((index, option_index, context + tail, len(context)))
    return jobs


def option_logprob(prompt_logprobs: Any, sequence: list[int], start: int) -> float:
    """Sum of the log-probabilities of ``sequence[start:]`` from vLLM's ``prompt_logprobs``
    (per position, a mapping from token id to an object with ``.logprob``)."""
    if start < 1:
        raise CaitoolError("an option cannot be scored without a prompt before it")
    total = 0.0
    for position in range(start, len(sequence)):
        entry = prompt_logprobs[position][sequence[position]]
        total += float(getattr(entry, "logprob", entry))
    return total


def llm_kwargs(model: str, tensor_parallel_size: int, dtype: str,
               extra: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"model": model, "tensor_parallel_size": tensor_parallel_size,
                              "dtype": dtype, "enable_prefix_caching": True}
    if extra:
        try:
            more = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise CaitoolError(f"{LLM_ARGS_ENV} must be a JSON object ({exc.msg})") from None
        if not isinstance(more, dict):
            raise CaitoolError(f"{LLM_ARGS_ENV} must be a JSON object")
        kwargs.update(more)
    return kwargs


def route_logs() -> bool:
    """Point vLLM's logging at stderr, at WARNING unless the user chose a level; before vLLM
    is imported, and inherited by the engine's processes. True: the user asked for INFO or
    DEBUG, and sees vLLM's log unfiltered."""
    os.environ["VLLM_LOGGING_STREAM"] = "ext://sys.stderr"
    os.environ.setdefault(LEVEL_ENV, "WARNING")
    verbose = os.environ[LEVEL_ENV].upper() in ("DEBUG", "INFO")
    if "vllm.logger" in sys.modules:  # imported already (by a library user): set up as it is
        import logging

        logger = logging.getLogger("vllm")
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
                handler.setStream(sys.stderr)
        if not verbose:
            logger.setLevel(logging.WARNING)
    return verbose


class EngineLog:
    """Reads what vLLM's processes print, from a pipe, on a thread: lines go on to stderr,
    but vLLM's errors (tracebacks included) are held back and their cause kept, for the one
    line that :meth:`failure` makes of an engine failure."""

    def __init__(self, verbose: bool = False):
        self.verbose = verbose
        self.cause: str | None = None
        self.held: list[str] = []
        self.last = time.monotonic()
        self._traceback = False
        self._stderr = os.dup(2)
        read, self._write = os.pipe()
        threading.Thread(target=self._pump, args=(read,), daemon=True,
                         name="caitool-vllm-log").start()

    def _pump(self, fd: int) -> None:
        with open(fd, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                self.last = time.monotonic()
                *lines, pending = (pending + chunk).split(b"\n")
                shown = [line for line in lines if self.line(line.decode(errors="replace"))]
                if shown:
                    os.write(self._stderr, b"".join(line + b"\n" for line in shown))
        os.close(self._stderr)

    def line(self, text: str) -> bool:
        """Whether a line goes on to stderr; an error's line is kept instead."""
        if self.verbose:
            return True
        match = LOG_LINE.match(text)
        if match:
            self._traceback = False
            if match["level"] in ("ERROR", "CRITICAL"):
                return self._hold(text, match["message"])
            return not any(noise in match["message"] for noise in NOISE)
        # Not a log line: a traceback printed by a dying process, a progress bar, C++ output.
        bare = PROCESS.sub("", text)
        if bare.startswith("Traceback (most recent call last)"):
            self._traceback = True
        if self._traceback:
            self._traceback = bare.startswith((" ", "Traceback")) or not bare
            return self._hold(text, bare)
        return bool(bare.strip()) and not any(noise in bare for noise in NOISE)

    def _hold(self, text: str, message: str) -> bool:
        self.held.append(text)
        if self.cause is None and EXCEPTION.match(message.strip()):
            self.cause = message.strip()
        return False

    @contextmanager
    def capture(self) -> Iterator[None]:
        """While vLLM runs: this process's stdout and stderr are the pipe, and every process
        the engine starts meanwhile keeps them as its own."""
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(self._write, 1)
        os.dup2(self._write, 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)

    def failure(self, what: str, exc: BaseException) -> CaitoolError:
        """One line for an engine failure: its cause as the engine's processes logged it
        (they die logging it, just before this process hears of it), else ``exc``'s."""
        time.sleep(0.3)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and time.monotonic() - self.last < 0.5:
            time.sleep(0.1)
        cause = self.cause or first_line(exc)
        hint = "" if self.verbose else f" (set {LEVEL_ENV}=INFO to see vLLM's log)"
        return CaitoolError(f"{what}: {cause}{hint}")

    def close(self) -> None:
        """Show errors that no failure summed up (they were held back for one), and let the
        reader end once the engine's processes are gone."""
        if self.held and self.cause is None:
            os.write(self._stderr, "".join(line + "\n" for line in self.held).encode())
        self.held = []
        if self._write != -1:
            os.close(self._write)
            self._write = -1


def first_line(exc: BaseException) -> str:
    """What an exception says, in one line; for vLLM's config checks (pydantic), the check's
    own message rather than "1 validation error for ModelConfig"."""
    try:
        errors = exc.errors()  # type: ignore[attr-defined]
        return "; ".join(str(error["msg"]) for error in errors)
    except Exception:  # noqa: BLE001 - not a pydantic error
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def head_size_check(model: str, config: Any) -> None:
    """vLLM's CPU attention has kernels for some head sizes only, and an engine given another
    fails at its first request, after the minutes of start-up: refuse it at once."""
    route_logs()
    try:
        from vllm.platforms import current_platform
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        if not current_platform.is_cpu():
            return
        sizes = CPUAttentionBackend.get_supported_head_sizes()
    except (ImportError, AttributeError):
        return
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    head = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    if head not in sizes:
        raise CaitoolError(
            f"vLLM's CPU attention cannot run '{model}': its head size is {head}, and vLLM has "
            f"kernels for {', '.join(map(str, sizes))} (a tiny test model for vLLM: caitool "
            f"tiny-model --head-dim 64 DIR)")


def model_config(path: str) -> Any:
    """The model's transformers config, or None where only vLLM can tell what is wrong."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError):
        return None


@dataclass
class VLLMOptions:
    tensor_parallel_size: int = 1   # GPUs per model replica
    dtype: str = "auto"             # auto, float32, bfloat16, float16

    def __post_init__(self) -> None:
        if self.tensor_parallel_size < 1:
            raise CaitoolError("--tensor-parallel-size must be at least 1")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16", "half"):
            raise CaitoolError(f"unknown --dtype '{self.dtype}' (use auto, float32, bfloat16, float16)")


class VLLMBackend(Backend):
    name = "vllm"
    Options = VLLMOptions
    loads_models = True

    @classmethod
    def for_replica(cls, options: dict[str, Any], gpus: float) -> tuple[dict[str, Any], tuple[str, ...]]:
        # A replica with several GPUs spreads the model over them unless told otherwise.
        size = options.setdefault("tensor_parallel_size", int(gpus)) if gpus > 1 else 1
        if size > gpus > 1:
            raise CaitoolError(f"--tensor-parallel-size {size} needs as many GPUs per replica "
                               f"(--gpus-per-replica {gpus:g})")
        return options, ()

    def __init__(self, model: str, **options: Any):
        super().__init__(model, **options)
        if importlib.util.find_spec("vllm") is None:
            raise CaitoolError(f"the vllm backend needs vLLM: {INSTALL_HINT}")
        models.check(model)
        route_logs()   # before anything imports vLLM, which reads it once
        self.kwargs = llm_kwargs(model, self.options.tensor_parallel_size, self.options.dtype,
                                 os.environ.get(LLM_ARGS_ENV))
        self._llm = None

    @property
    def llm(self):
        if self._llm is None:
            # A GGUF file or built-in name becomes its converted directory only now, so that
            # constructing the backend stays cheap.
            path = models.local_model(self.kwargs["model"])
            config = model_config(path)
            self.log = EngineLog(verbose=route_logs())
            with self.log.capture():
                try:
                    from vllm import LLM

                    if config is not None:
                        head_size_check(self.model, config)
                    self._llm = LLM(**{**self.kwargs, "model": path})
                except CaitoolError:
                    raise
                except Exception as exc:  # whatever vLLM raises, the cause is in its log
                    raise self.log.failure(f"vLLM cannot load '{self.model}'", exc) from None
        return self._llm

    def _run(self, prompts: list[dict[str, list[int]]], params: Any) -> list[Any]:
        llm = self.llm
        with self.log.capture():
            try:
                return llm.generate(prompts, params, use_tqdm=False)
            except Exception as exc:  # a dead engine raises in this process; its cause is logged
                raise self.log.failure("vLLM failed", exc) from None

    @property
    def tokenizer(self):
        return self.llm.get_tokenizer()

    def has_chat_template(self) -> bool:
        return has_chat_template(self.tokenizer)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.name, "model": self.model}
        if self.kwargs["tensor_parallel_size"] > 1:
            info["tensor_parallel_size"] = self.kwargs["tensor_parallel_size"]
        return info

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        if not prompts:
            return []
        encoded = encode(self.tokenizer, prompts)   # starts the engine: vLLM imported after
        from vllm import SamplingParams as VLLMSamplingParams

        outputs = self._run(token_prompts(encoded), VLLMSamplingParams(**sampling_kwargs(params)))
        return [completion_texts(output, params.stop) for output in outputs]

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        if not prompts:
            return []
        jobs = scoring_jobs(self.tokenizer, prompts, options)
        from vllm import SamplingParams as VLLMSamplingParams

        # One token is generated and ignored; the prompt's own log-probabilities are the point.
        params = VLLMSamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        outputs = self._run(token_prompts([job[2] for job in jobs]), params)
        scores = [[0.0] * len(opts) for opts in options]
        for (index, option_index, sequence, start), output in zip(jobs, outputs, strict=True):
            scores[index][option_index] = option_logprob(output.prompt_logprobs, sequence, start)
        return [OptionScores(s) for s in scores]

    def close(self) -> None:
        if self._llm is None:
            return
        llm, self._llm = self._llm, None
        with self.log.capture():
            try:
                # vLLM's own shutdown waits 5 s for a worker that has nothing left to do.
                llm.llm_engine.engine_core.shutdown(timeout=SHUTDOWN_SECONDS)
            except Exception:  # noqa: BLE001 - a failed engine has nothing left to stop
                pass
        self.log.close()
