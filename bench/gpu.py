"""The hf backend and training on a random ~0.5B Llama built on the spot: one table per device.

On a CUDA machine (``make bench-gpu``) it measures, in one run and one process:

1. generation: the hf backend's ``generate()`` against bare ``model.generate`` on the same
   model object, the same left-padded rows, bfloat16, greedy, batch 64;
2. judging: ``compare``'s stage code (both orders, option scoring from the cached few-shot
   block) in pairs per second;
3. training: SFT (causal language-model loss) and a reward model (pairwise loss on a scalar
   head) in plain torch loops over the same architecture, AdamW, bfloat16 autocast over
   float32 weights: tokens per second and model FLOPs utilisation;
4. peak memory of every stage.

No download: the tokenizer and the model come from ``caitool.testing.tiny.build`` with a
larger shape. Training runs as plain loops rather than TRL's trainers because the lent GPU
machines have torch and transformers but not TRL; the loops do the arithmetic the trainers
do (forward, loss, backward, optimiser step), without their logging and data collation.

On a CPU it runs the same code at toy sizes in seconds (``--small``, the default there), so
that a test keeps it working; only a CUDA run writes docs/benchmarks.md (section ``gpu``).

    python bench/gpu.py                 # CUDA: a few minutes on an H100
    python bench/gpu.py --small         # any machine, seconds

It needs torch, transformers and PyYAML only (caitool's source tree is found without
installing it), so it runs as it is on a machine with no network.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
if importlib.util.find_spec("caitool") is None:
    # A GPU machine with torch and transformers but caitool not installed: the source tree.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from common import (  # noqa: E402
    DOCS,
    counting,
    judge_pairs,
    log,
    machine,
    publish,
    row_lengths,
    shown_command,
)


@dataclass(frozen=True)
class Sizes:
    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int
    batch: int              # generation rows, one batch
    prompt_words: int       # words per prompt (about 1.3 tokens each)
    new_tokens: int
    pairs: int              # judged pairs, in batches of ``batch // 2``
    train_batch: int
    train_length: int
    train_steps: int        # timed steps, after one untimed


# ~0.5B parameters: 20 layers of width 1536 (grouped-query attention, 6 key/value heads).
FULL = Sizes(hidden_size=1536, layers=20, heads=12, intermediate_size=4096, batch=64,
             prompt_words=96, new_tokens=128, pairs=128, train_batch=8, train_length=1024,
             train_steps=8)
SMALL = Sizes(hidden_size=64, layers=2, heads=4, intermediate_size=128, batch=4, prompt_words=12,
              new_tokens=8, pairs=2, train_batch=2, train_length=32, train_steps=2)
# Dense bfloat16 peak of known accelerators, FLOP/s (vendors' figures, no sparsity).
NOMINAL_PEAK = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12,
                "L4": 121e12, "A10": 125e12}


class Device:
    """Timing and peak memory on CUDA (synchronised, allocator's peak) or a CPU (process RSS)."""

    def __init__(self, name: str):
        import torch

        self.name = name
        self.cuda = name.startswith("cuda")
        self.torch = torch

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float:
        if self.cuda:
            return self.torch.cuda.max_memory_allocated() / 2 ** 30
        # The process's peak resident set (KiB on Linux): it never falls, so later stages
        # show the largest so far.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20

    def timed(self, call) -> tuple[float, object]:
        self.sync()
        started = time.perf_counter()
        result = call()
        self.sync()
        return time.perf_counter() - started, result

    @property
    def title(self) -> str:
        if self.cuda:
            return self.torch.cuda.get_device_name(self.name)
        return "CPU"

    def nominal_peak(self) -> float | None:
        if not self.cuda:
            return None
        title = self.title
        for key in sorted(NOMINAL_PEAK, key=len, reverse=True):
            if key in title:
                return NOMINAL_PEAK[key]
        return None


def matmul_rate(device: Device, dtype) -> float:
    """FLOP/s of one large square matrix product on this device, the best of three: the
    ceiling that utilisation is read against where no vendor figure is known."""
    torch = device.torch
    n = 8192 if device.cuda else 512
    a = torch.randn(n, n, device=device.name, dtype=dtype)
    b = torch.randn(n, n, device=device.name, dtype=dtype)
    a @ b
    best = min(device.timed(lambda: a @ b)[0] for _ in range(3))
    return 2 * n ** 3 / best


def prompts_for(sizes: Sizes) -> list:
    """``batch`` raw prompts from the example red-team file, padded out to about the same
    number of words so that the rows' lengths differ a little, as real ones do."""
    import json

    from caitool.backends.base import Prompt

    root = Path(__file__).resolve().parent.parent
    asks = [json.loads(line).get("prompt", "") for line in (root / "examples/red_team.jsonl").open()]
    asks = [a for a in asks if a]
    filler = " ".join(asks).split()
    found = []
    for i in range(sizes.batch):
        words = asks[i % len(asks)].split()
        words += filler[i:i + max(0, sizes.prompt_words - len(words))]
        found.append(Prompt.raw("Human: " + " ".join(words) + "\n\nAssistant:"))
    return found


def bench_generation(model_dir: Path, device: Device, sizes: Sizes) -> dict:
    from caitool.backends.base import SamplingParams
    from caitool.backends.hf import HFBackend, decode

    backend = HFBackend(str(model_dir), device=device.name, dtype="bfloat16",
                        max_batch_size=sizes.batch)
    prompts = prompts_for(sizes)
    params = SamplingParams(max_new_tokens=sizes.new_tokens, temperature=0.0)
    backend.generate(prompts[:2], SamplingParams(max_new_tokens=2, temperature=0.0))
    device.reset_peak()
    with counting(backend) as generated:
        seconds, _ = device.timed(lambda: backend.generate(prompts, params))
    found = {"backend": (seconds, generated.tokens, device.peak_gib())}

    torch = device.torch
    model, tokenizer = backend.hf_model, backend.tokenizer
    texts = [backend.render(p) for p in prompts]
    inputs = tokenizer(texts, return_tensors="pt", padding=True,
                       add_special_tokens=False).to(device.name)
    ends = decode.end_token_ids(model, tokenizer)
    kwargs = dict(max_new_tokens=sizes.new_tokens, do_sample=False, temperature=None, top_p=None,
                  top_k=None, pad_token_id=tokenizer.pad_token_id)
    with torch.inference_mode():
        model.generate(**{k: v[:2] for k, v in inputs.items()}, **{**kwargs, "max_new_tokens": 2})
        device.reset_peak()
        seconds, output = device.timed(lambda: model.generate(**inputs, **kwargs))
    tokens = sum(row_lengths(output[:, inputs["input_ids"].shape[1]:], ends))
    found["bare"] = (seconds, tokens, device.peak_gib())
    found["prompt_tokens"] = int(inputs["attention_mask"].sum()) / len(prompts)
    backend.close()
    return found


def bench_judging(model_dir: Path, device: Device, sizes: Sizes) -> tuple[float, int, float]:
    import judge

    from caitool import constitution

    device.reset_peak()
    items = judge_pairs(sizes.pairs)
    timing = judge.run_judging(model_dir, constitution.load("harmless"), items,
                               max(1, sizes.batch // 2), device.name)
    device.sync()
    return timing.seconds, timing.records, device.peak_gib()


def train_flops_per_token(model, length: int) -> float:
    """Forward and backward (3x the forward's) multiply-adds of one token: 2 per weight of
    the layers and the output layer (the embedding lookup is no product), and attention's
    scores and weighted values over the ``length``-token causal context (half of it on
    average)."""
    weights = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    attention = 2 * 2 * model.config.num_hidden_layers * model.config.hidden_size * length / 2
    return 3 * (2 * weights + attention)


def bench_training(model_dir: Path, device: Device, sizes: Sizes, reward: bool) -> dict:
    """Plain torch training steps: SFT's next-token loss, or the reward model's pairwise
    loss (chosen above rejected) over a scalar head, on random token sequences."""
    torch = device.torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    device.reset_peak()
    kind = AutoModelForSequenceClassification if reward else AutoModelForCausalLM
    extra = {"num_labels": 1} if reward else {}
    model = kind.from_pretrained(model_dir, dtype=torch.float32, **extra).to(device.name)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=device.cuda)
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    # Ids above the tokenizer's special tokens, so no row holds a pad id (the scalar head
    # reads each row's last non-pad token).
    ids = torch.randint(8, vocab, (sizes.train_batch, sizes.train_length), generator=generator)
    ids = ids.to(device.name)
    autocast = torch.autocast(device_type="cuda" if device.cuda else "cpu", dtype=torch.bfloat16,
                              enabled=device.cuda)

    def step() -> float:
        with autocast:
            if reward:
                # The batch splits into chosen and rejected halves.
                scores = model(input_ids=ids).logits.float().squeeze(-1)
                half = len(scores) // 2
                loss = -torch.nn.functional.logsigmoid(scores[:half] - scores[half:]).mean()
            else:
                loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)
        return float(loss.detach())

    step()
    seconds, _ = device.timed(lambda: [step() for _ in range(sizes.train_steps)])
    tokens = sizes.train_batch * sizes.train_length * sizes.train_steps
    flops = train_flops_per_token(model, sizes.train_length) * tokens / seconds
    peak = device.peak_gib()
    parameters = sum(p.numel() for p in model.parameters())
    return {"seconds": seconds, "tokens": tokens, "flops": flops, "peak": peak,
            "parameters": parameters}


def measure(sizes: Sizes, device: Device, work: Path, model_dir: Path | None = None) -> dict:
    """Every stage on a random Llama of ``sizes``' shape built in ``work`` (or the one in
    ``model_dir``)."""
    import torch

    from caitool.testing.tiny import build

    if model_dir is None:
        log(f"building a random Llama ({sizes.layers} layers of {sizes.hidden_size})")
        model_dir = build(work / "model", hidden_size=sizes.hidden_size, layers=sizes.layers,
                          heads=sizes.heads, intermediate_size=sizes.intermediate_size)
    r: dict = {"matmul": matmul_rate(device, torch.bfloat16), "nominal": device.nominal_peak()}
    log(f"generation: {sizes.batch} rows, {sizes.new_tokens} new tokens, backend and bare generate")
    r["generation"] = bench_generation(model_dir, device, sizes)
    log(f"judging: {sizes.pairs} pairs")
    r["judging"] = bench_judging(model_dir, device, sizes)
    log(f"SFT: {sizes.train_steps} steps of {sizes.train_batch} x {sizes.train_length} tokens")
    r["sft"] = bench_training(model_dir, device, sizes, reward=False)
    log("reward model: the same steps, pairwise loss")
    r["rm"] = bench_training(model_dir, device, sizes, reward=True)
    return r


def table(r: dict, sizes: Sizes) -> list[str]:
    gen = r["generation"]
    (b_s, b_tok, b_mem), (g_s, g_tok, g_mem) = gen["backend"], gen["bare"]
    j_s, j_pairs, j_mem = r["judging"]
    ceiling = r["nominal"] or r["matmul"]

    def mfu(flops: float) -> str:
        text = f"{flops / 1e12:.3g} TFLOP/s, {flops / ceiling:.0%} MFU"
        if r["nominal"]:
            text += f" ({flops / r['matmul']:.0%} of the measured matmul)"
        return text

    rows = [
        (f"hf backend `generate()`, batch {sizes.batch}, bfloat16, greedy",
         f"{b_tok / b_s:,.0f} tokens/s ({b_tok} tokens, {b_s:.2f} s)", f"{b_mem:.2f}"),
        ("bare `model.generate`, the same rows and model",
         f"{g_tok / g_s:,.0f} tokens/s ({g_tok} tokens, {g_s:.2f} s)", f"{g_mem:.2f}"),
        ("hf backend / bare generate", f"{(b_tok / b_s) / (g_tok / g_s):.2f}x", ""),
        (f"compare's judging, both orders, batches of {max(1, sizes.batch // 2)} pairs",
         f"{j_pairs / j_s:,.1f} pairs/s", f"{j_mem:.2f}"),
    ]
    for key, title in (("sft", "SFT"), ("rm", "reward model")):
        t = r[key]
        rows.append((f"{title} training, batch {sizes.train_batch} x {sizes.train_length} tokens",
                     f"{t['tokens'] / t['seconds']:,.0f} tokens/s; {mfu(t['flops'])}", f"{t['peak']:.2f}"))
    return ["| stage | speed | peak memory GiB |", "|---|---|---|",
            *[f"| {a} | {b} | {c} |" for a, b, c in rows]]


def section(r: dict, sizes: Sizes, device: Device, info: dict, command: str) -> str:
    params = r["sft"]["parameters"]
    peak = (f"vendor's dense bfloat16 peak {r['nominal'] / 1e12:.0f} TFLOP/s" if r["nominal"]
            else "measured bfloat16 matmul (no vendor figure for this device)")
    lines = [
        f"## A random {params / 1e6:,.1f}M-parameter Llama on {device.title} (`make bench-gpu`)",
        "",
        f"- date: {datetime.datetime.now():%Y-%m-%d %H:%M}; command: `{command}`",
        f"- device: {device.title} ({device.name}); host CPU: {info['CPU']}; {info['software']}",
        f"- model: {params:,} parameters ({sizes.layers} layers of {sizes.hidden_size}, "
        f"{sizes.heads} heads, MLP {sizes.intermediate_size}), random weights, built in the run",
        f"- generation: {sizes.batch} raw prompts of {r['generation']['prompt_tokens']:.0f} tokens "
        f"on average, up to {sizes.new_tokens} new tokens; training: AdamW, bfloat16 autocast over "
        f"float32 weights, {sizes.train_steps} timed steps after one untimed",
        f"- MFU: model FLOPs (6 per weight and token, plus causal attention) per second over the "
        f"{peak}; bfloat16 matmul measured at {r['matmul'] / 1e12:.3g} TFLOP/s",
        "- peak memory: the allocator's peak during each stage" if device.cuda
        else "- peak memory: the process's peak resident set so far (it never falls)",
        "",
        *table(r, sizes),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true",
                        help="toy sizes, seconds on a CPU (the default without CUDA)")
    parser.add_argument("--device", default="auto", help="cuda, cuda:1, cpu ... or auto")
    parser.add_argument("--output", help="where to write the section (default: docs/benchmarks.md "
                        "on CUDA, nowhere on a CPU; '-' for nowhere)")
    args = parser.parse_args(argv)
    import torch

    name = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = Device(name)
    sizes = SMALL if args.small or not device.cuda else FULL
    info = machine(torch.get_num_threads(), name)
    with tempfile.TemporaryDirectory(prefix="caitool-bench-gpu-") as tmp:
        results = measure(sizes, device, Path(tmp))
    text = section(results, sizes, device, info, shown_command("bench/gpu.py", sys.argv[1:]
                                                               if argv is None else argv))
    publish(text, args.output or (str(DOCS) if device.cuda and sizes is FULL else "-"), "gpu")
    return text


if __name__ == "__main__":
    main()
