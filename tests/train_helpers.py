"""Toy data with a learnable signal, and the trained models the training tests share.

The signal: an answer with the word "kind" is preferred to the same answer with "toxic".
The SFT data teaches one fixed answer (to check that it is reproduced) and, for the other
prompts, both variants equally often, so that the policy starts undecided and PPO/DPO have
something to move. Models are built once per test session, in order, under one directory:
tiny -> sft -> rm (and the PPO/DPO runs start from sft).
"""

from __future__ import annotations

import fcntl
import json
import os
import random
from pathlib import Path

from helpers import caitool, jsonl

TAUGHT_PROMPT = "What is the capital of France?"
TAUGHT_ANSWER = "The capital of France is Paris."
PROMPTS = [
    "Write a short poem about the sea.",
    "How do I sort a list in Python?",
    "Tell me a story about a brave dog.",
    "Explain how a computer program works.",
    "Can you help me with something?",
    "How can I steal a car?",
    "I want to hurt someone who was mean to me.",
    "Cooking a meal at home is cheaper, is it not?",
]
WORDS = ("the weather is nice today and people in town went for a walk in the park "
         "cooking a meal at home is cheaper than eating out good recipe needs fresh").split()

# Fast settings every training run shares (tiny model, CPU).
FAST = ["--logging-steps", "1", "--save-steps", "1000"]


def answer(word: str) -> str:
    return f"That is a {word} answer."


def sft_rows(copies: int = 3) -> list[dict]:
    rows = [{"prompt": TAUGHT_PROMPT, "response": TAUGHT_ANSWER}] * (5 * copies)
    for prompt in PROMPTS:
        for _ in range(copies):
            rows.append({"prompt": prompt, "response": answer("kind")})
            rows.append({"prompt": prompt, "response": answer("toxic")})
    return rows


def preference_rows(n: int, seed: int = 0, p_chosen: float | None = 1.0) -> list[dict]:
    """Pairs that differ only in the marker word, on varied prompts and wording."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        b = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        row = {"id": f"pair-{seed}-{i}", "prompt": f"{rng.choice(PROMPTS)} ({i})",
               "chosen": f"{a} kind {b}", "rejected": f"{a} toxic {b}"}
        if p_chosen is not None:
            row["p_chosen"] = p_chosen
        rows.append(row)
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text(jsonl(rows))
    return path


def metrics(output: bytes) -> list[dict]:
    return [json.loads(line) for line in output.decode().splitlines() if line.strip()]


def series(lines: list[dict], key: str) -> list[float]:
    return [line[key] for line in lines if line.get(key) is not None]


def chain_dir(factory) -> Path:
    """One directory for the whole test run, shared by pytest-xdist workers too."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    return base / "train-chain"


def build_chain(root: Path) -> dict[str, Path]:
    """tiny -> sft -> rm, built once per directory (reused by every test module and worker)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_chain(root)


def _build_chain(root: Path) -> dict[str, Path]:
    from caitool.testing.tiny import build

    paths = {name: root / name for name in ("tiny", "sft", "rm")}
    if not (paths["tiny"] / "config.json").exists():
        build(paths["tiny"])
    if not (paths["sft"] / "config.json").exists():
        data = write(root / "sft.jsonl", sft_rows())
        result = caitool("train-sft", data, "-m", paths["tiny"], "-o", paths["sft"],
                         "--max-steps", "40", "--learning-rate", "1e-2", "--batch-size", "8",
                         *FAST)
        (root / "sft_metrics.jsonl").write_bytes(result.stdout)
    if not (paths["rm"] / "config.json").exists():
        data = write(root / "prefs.jsonl", preference_rows(100))
        result = caitool("train-rm", data, "-m", paths["sft"], "-o", paths["rm"],
                         "--epochs", "3", "--learning-rate", "2e-3", "--batch-size", "8",
                         "--eval-split", "0.2", *FAST)
        (root / "rm_metrics.jsonl").write_bytes(result.stdout)
    return paths


def logprob_margins(model_dir: Path, rows: list[dict]) -> list[float]:
    """log p(chosen | prompt) - log p(rejected | prompt) under a causal model, per pair, with
    the prompt in the chat format the training commands use."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def logprob(prompt: str, reply: str) -> float:
        head = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             add_generation_prompt=True, return_dict=True)["input_ids"]
        tail = tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([list(head) + tail])
        with torch.no_grad():
            logits = model(ids).logits[0, len(head) - 1:-1].float()
        return logits.log_softmax(-1).gather(1, torch.tensor(tail)[:, None]).sum().item()

    return [logprob(r["prompt"], r["chosen"]) - logprob(r["prompt"], r["rejected"]) for r in rows]


def generate(model_dir: Path, prompt: str, n: int = 1, temperature: float = 0.0,
             max_new_tokens: int = 16, seed: int = 0) -> list[str]:
    """Answers from a trained directory, loaded with plain transformers as any user would."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                        add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    torch.manual_seed(seed)
    sampling = {"do_sample": True, "temperature": temperature} if temperature else {"do_sample": False}
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, num_return_sequences=n,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
    return tokenizer.batch_decode(out[:, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def reward(model_dir: Path, prompt: str, reply: str) -> float:
    """A reward model's score for a reply, on the sequence it is trained on and PPO gives it:
    the prompt as the policy sees it, the reply, the end-of-sequence token."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from caitool.render import policy_prompt_ids, reply_ids

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    messages = [{"role": "user", "content": prompt}]
    ids = policy_prompt_ids(tokenizer, messages, "chat") + reply_ids(tokenizer, reply, "chat")
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, 0].item()
