"""In-process transformers backend: CPU or GPU, left-padded length-sorted batches."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from caitool.backends.base import Backend, OptionScores, Prompt, SamplingParams
from caitool.errors import CaitoolError


def check_model_path(model: str) -> None:
    """Fail early, in one line, for a local path that does not exist."""
    if os.path.exists(model):
        if os.path.isdir(model) and not os.path.exists(os.path.join(model, "config.json")):
            raise CaitoolError(f"model '{model}' is a directory without config.json")
        return
    if model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep + os.sep in model:
        raise CaitoolError(f"model path '{model}' does not exist")


def cut_at_stop(text: str, stop: list[str]) -> str:
    """Generation halts on the token that completes a stop string; drop it and what follows."""
    cut = len(text)
    for marker in stop:
        index = text.find(marker)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


class HFBackend(Backend):
    name = "hf"

    def __init__(self, model: str, device: str = "auto", dtype: str = "auto",
                 max_batch_size: int = 64, **options: Any):
        super().__init__(model, **options)
        check_model_path(model)
        self.device_name = device
        self.dtype_name = dtype
        self.max_batch_size = max_batch_size
        self._model = None
        self._tokenizer = None

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # caitool draws its own progress on stderr; the library's bars would interleave.
        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        device = self.device_name
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype: Any = self.dtype_name
        if dtype == "auto":
            dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
            if not isinstance(dtype, torch.dtype):
                raise CaitoolError(f"unknown dtype '{self.dtype_name}' (use auto, float32, bfloat16, float16)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model)
            model = AutoModelForCausalLM.from_pretrained(self.model, dtype=dtype)
        except OSError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CaitoolError(
                f"cannot load model '{self.model}': {first} (offline? build one with "
                "'caitool tiny-model DIR')"
            ) from None
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.to(device)
        model.eval()
        self.device = device
        self._tokenizer = tokenizer
        self._model = model

    @property
    def tokenizer(self):
        self._load()
        return self._tokenizer

    @property
    def hf_model(self):
        self._load()
        return self._model

    def default_format(self) -> str:
        return "chat" if getattr(self.tokenizer, "chat_template", None) else "raw"

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    # -- rendering -------------------------------------------------------------------------

    def render(self, prompt: Prompt) -> str:
        if not prompt.is_chat:
            return prompt.text or ""
        if not getattr(self.tokenizer, "chat_template", None):
            raise CaitoolError(f"model '{self.model}' has no chat template; use --format raw")
        text = self.tokenizer.apply_chat_template(
            prompt.message_dicts(), add_generation_prompt=True, tokenize=False
        )
        return text + prompt.assistant_prefix

    def encode(self, prompts: list[Prompt]) -> list[list[int]]:
        texts = [self.render(p) for p in prompts]
        # A chat template writes its own special tokens; a raw transcript takes the defaults.
        chat = [p.is_chat for p in prompts]
        if all(chat) or not any(chat):
            return self.tokenizer(texts, add_special_tokens=not chat[0])["input_ids"] if texts else []
        return [self.tokenizer(t, add_special_tokens=not c)["input_ids"] for t, c in zip(texts, chat)]

    # -- generation ------------------------------------------------------------------------

    def _sorted_batches(self, lengths: list[int], size: int) -> Iterator[list[int]]:
        order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
        for start in range(0, len(order), size):
            yield order[start:start + size]

    def _pad_left(self, sequences: list[list[int]]):
        import torch

        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(sequences), width), pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        return ids.to(self.device), mask.to(self.device)

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[str]]:
        if not prompts:
            return []
        import torch

        encoded = self.encode(prompts)
        results: list[list[str]] = [[] for _ in prompts]
        if params.seed is not None:
            torch.manual_seed(params.seed)
        size = max(1, self.max_batch_size // max(1, params.n))
        pending = list(self._sorted_batches([len(e) for e in encoded], size))
        while pending:
            batch = pending.pop(0)
            try:
                texts = self._generate_batch([encoded[i] for i in batch], params)
            except torch.OutOfMemoryError:
                if len(batch) == 1:
                    raise CaitoolError("out of memory on a single prompt; lower --max-new-tokens") from None
                torch.cuda.empty_cache() if torch.cuda.is_available() else None
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
                self.max_batch_size = max(1, self.max_batch_size // 2)
                continue
            for row, index in enumerate(batch):
                results[index] = texts[row * params.n:(row + 1) * params.n]
        return results

    def _generate_batch(self, sequences: list[list[int]], params: SamplingParams) -> list[str]:
        import torch

        ids, mask = self._pad_left(sequences)
        sample = params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sample,
            "num_return_sequences": params.n,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            output = self.hf_model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new_tokens = output[:, ids.shape[1]:]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [cut_at_stop(text, params.stop).strip() for text in texts]

    # -- option scoring --------------------------------------------------------------------

    def score(self, prompts: list[Prompt], options: list[list[str]]) -> list[OptionScores]:
        """Sum of token log-probabilities of each option after its prompt.

        Options that share all tokens but their last (the usual case for answer letters)
        are scored from a single forward pass over the prompt and the shared part; other
        options get a sequence each. All sequences of all prompts go through in batches.
        """
        if not prompts:
            return []
        import torch

        encoded = self.encode(prompts)
        jobs: list[tuple[int, list[int], list[tuple[int, list[int]]]]] = []
        # Each job: (prompt index, sequence, [(option index, option token ids)]).
        for index, (prompt_ids, opts) in enumerate(zip(encoded, options)):
            option_ids = [self.tokenizer(o, add_special_tokens=False)["input_ids"] for o in opts]
            if any(not ids for ids in option_ids):
                raise CaitoolError("cannot score an empty option")
            shared = _common_prefix(option_ids)
            if all(len(ids) == len(shared) + 1 for ids in option_ids):
                jobs.append((index, prompt_ids + shared, list(enumerate(option_ids))))
            else:
                for option_index, ids in enumerate(option_ids):
                    jobs.append((index, prompt_ids + ids, [(option_index, ids)]))
        scores = [[0.0] * len(opts) for opts in options]
        size = max(1, self.max_batch_size)
        for batch in self._sorted_batches([len(j[1]) for j in jobs], size):
            sequences = [jobs[i][1] for i in batch]
            ids, mask = self._pad_left(sequences)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.hf_model(input_ids=ids, attention_mask=mask,
                                       position_ids=positions).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            width = ids.shape[1]
            for row, job_index in enumerate(batch):
                prompt_index, sequence, option_list = jobs[job_index]
                for option_index, option_ids in option_list:
                    # The option's tokens sit at the end of the sequence, or (shared-prefix
                    # path) all but its last, which is read from the final position.
                    in_sequence = len(option_ids) if len(option_list) == 1 else len(option_ids) - 1
                    start = width - in_sequence
                    total = 0.0
                    for offset, token in enumerate(option_ids):
                        position = start + offset - 1
                        total += float(logprobs[row, position, token])
                    scores[prompt_index][option_index] = total
        return [OptionScores(s) for s in scores]

    def close(self) -> None:
        self._model = None


def _common_prefix(sequences: list[list[int]]) -> list[int]:
    prefix: list[int] = []
    for column in zip(*sequences):
        if any(token != column[0] for token in column):
            break
        prefix.append(column[0])
    return prefix
