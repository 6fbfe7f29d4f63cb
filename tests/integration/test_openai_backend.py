"""The openai backend against a real server (``transformers serve`` with the tiny model on
CPU, offline, on loopback) and against a local endpoint that fails on purpose."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from caitool.backends.base import RequestsFailed, SamplingParams
from caitool.backends.openai import scoring
from caitool.backends.registry import create
from caitool.errors import CaitoolError
from caitool.render import Prompt
from helpers import MINI, SECRET, caitool, free_port, jsonl, records, shell


def _flags(url: str, model: Path) -> str:
    return f"--backend openai --base-url {url} -m {model} --max-new-tokens 8"


def test_generate_critique_revise_through_the_server(server, tiny_model, smoke_prompts):
    flags = _flags(server, tiny_model)
    result = shell(f"caitool generate {flags} --concurrency 4 < examples/smoke.jsonl "
                   f"| caitool critique {flags} | caitool revise {flags}",
                   env={"OPENAI_API_KEY": SECRET}, timeout=300)
    assert result.returncode == 0, result.stderr.decode()
    out = records(result.stdout)
    assert [r["id"] for r in out] == [r["id"] for r in records(smoke_prompts)]
    for record in out:
        assert isinstance(record["initial_response"], str)
        [round_] = record["revisions"]
        assert isinstance(round_["critique"], str) and isinstance(round_["revision"], str)
        assert record["response"] == round_["revision"]
        for step in ("generate", "critique", "revise"):
            info = record["provenance"][step]
            assert info["backend"] == "openai" and info["base_url"] == server
            assert info["model"] == str(tiny_model) and info["format"] == "chat"
    assert SECRET not in result.stdout.decode() + result.stderr.decode()


def test_raw_prompts_and_several_samples(server, tiny_model, smoke_prompts):
    # The raw transcript goes to /v1/completions; this server ignores n, so each sample
    # is asked for separately.
    rows = records(smoke_prompts)[:3]
    result = caitool("generate", *_flags(server, tiny_model).split(), "--format", "raw",
                     "-n", "3", input=jsonl(rows), timeout=300)
    out = records(result.stdout)
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert all(len(r["responses"]) == 3 and all(isinstance(t, str) for t in r["responses"])
               for r in out)
    assert all(r["provenance"]["generate"]["format"] == "raw" for r in out)


def test_option_scoring_falls_back_to_sampling(server, tiny_model):
    backend = create("openai", str(tiny_model), base_url=server, concurrency=4, score_samples=3)
    question = [{"role": "user", "content": "Which is kinder?\n(A) yes\n(B) no"}]
    prompts = [Prompt.chat(question, assistant_prefix="The answer is:"),
               Prompt.raw("Which is kinder?\n(A) yes\n(B) no\nThe answer is:"),
               Prompt.chat(question)]
    scores = backend.score(prompts, [[" (A)", " (B)"]] * 3)
    assert [s.method for s in scores] == ["sampled"] * 3
    for s in scores:
        assert len(s.logprobs) == 2 and all(math.isfinite(v) and v < 0 for v in s.logprobs)
        assert math.isclose(sum(math.exp(v) for v in s.logprobs), 1.0)
    # What the backend learned about this server.
    assert backend.logprobs == {"chat": False, "raw": False}
    assert backend.prefill is False and backend.honours_n is False
    backend.close()


def test_shards_through_one_shared_server(server, tiny_model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl([{"prompt": f"Say {i}"} for i in range(12)]))
    flags = _flags(server, tiny_model).replace("--max-new-tokens 8", "--max-new-tokens 2")
    parts = " ".join(f"<(caitool generate {flags} --shard {i}/3 {source})" for i in (1, 2, 3))
    joined = shell(f"cat {parts}", timeout=300)
    whole = shell(f"caitool generate {flags} {source}", timeout=300)
    assert joined.returncode == 0 and whole.returncode == 0, joined.stderr + whole.stderr
    joined_ids = [r["id"] for r in records(joined.stdout)]
    assert len(joined_ids) == len(set(joined_ids)) == 12
    assert Counter(joined_ids) == Counter(r["id"] for r in records(whole.stdout))


# -- a server that fails on purpose --------------------------------------------------------


class Faulty:
    """Answers by a word in the prompt: ``ok``; ``flaky`` (two 500s, then fine); ``fail``
    (500 until healed); ``hang`` (slower than the client's timeout); ``busy`` (one 429 with
    Retry-After, then fine); ``deny`` (401)."""

    def __init__(self):
        self.hits: Counter[str] = Counter()
        self.auth: list[str] = []
        self.bodies: list[dict] = []
        self.healed = False
        self.release = threading.Event()
        faulty = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                faulty.bodies.append(body)
                text = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
                word = next((w for w in ("flaky", "fail", "hang", "busy", "deny")
                             if w in text), "ok")
                faulty.hits[word] += 1
                faulty.auth.append(self.headers.get("Authorization", ""))
                count = faulty.hits[word]
                if word == "hang":
                    faulty.release.wait(10)
                if ((word == "flaky" and count <= 2) or (word == "fail" and not faulty.healed)
                        or word == "hang"):
                    return self._send(500, {"error": {"message": "internal trouble"}})
                if word == "busy" and count == 1:
                    return self._send(429, {"error": {"message": "slow down"}},
                                      {"Retry-After": "0"})
                if word == "deny":
                    return self._send(401, {"error": {"message": "bad key"}})
                answer = f"fine: {text[-12:]}"
                choice = ({"message": {"role": "assistant", "content": answer}}
                          if "messages" in body else {"text": answer})
                self._send(200, {"choices": [{"index": 0, **choice}]})

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # clients that timed out and left

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def faulty():
    server = Faulty()
    yield server
    server.close()


QUICK = {"CAITOOL_RETRIES": "2", "CAITOOL_RETRY_BACKOFF": "0.01",
         "CAITOOL_REQUEST_TIMEOUT": "5"}


def test_retries_then_reports_the_prompts_that_still_fail(faulty):
    backend = create("openai", "m", base_url=faulty.url, concurrency=8, retries=2,
                     backoff=0.01, timeout=0.5)
    texts = ["ok a", "flaky b", "fail c", "hang d", "busy e"]
    prompts = [Prompt.chat([{"role": "user", "content": t}]) for t in texts]
    with pytest.raises(RequestsFailed) as caught:
        backend.generate(prompts, SamplingParams(max_new_tokens=4))
    failures, results = caught.value.failures, caught.value.results
    assert sorted(failures) == [2, 3]
    assert "HTTP 500: internal trouble" in failures[2]
    assert "no answer within 0.5s" in failures[3]
    assert results[0] == ["fine: ok a"] and results[1] == ["fine: flaky b"]
    assert results[4] == ["fine: busy e"] and results[2] is None and results[3] is None
    # One try plus two retries for what kept failing; the flaky one succeeded on its third.
    assert faulty.hits == Counter({"ok": 1, "flaky": 3, "fail": 3, "hang": 3, "busy": 2})
    assert backend.retried == 2 + 2 + 2 + 1


def test_a_failed_record_is_named_and_the_rest_written(faulty, tmp_path):
    rows = [{"id": "r1", "prompt": "ok one"}, {"id": "r2", "prompt": "fail two"},
            {"id": "r3", "prompt": "flaky three"}, {"id": "r4", "prompt": "ok four"}]
    out = tmp_path / "out.jsonl"
    args = ["generate", "--backend", "openai", "--base-url", faulty.url, "-m", "m",
            "--batch-size", "2", "-o", str(out)]
    first = caitool(*args, input=jsonl(rows), check=False, env=QUICK, timeout=120)
    stderr = first.stderr.decode()
    assert first.returncode == 1
    assert "record r2 failed: HTTP 500: internal trouble" in stderr
    assert "1 records failed and were left out of the output (r2)" in stderr
    assert [r["id"] for r in records(out.read_bytes())] == ["r1", "r3", "r4"]
    # Once the server is well again, --resume retries only what failed.
    faulty.healed = True
    before = faulty.hits["ok"]
    second = caitool(*args, "--resume", input=jsonl(rows), env=QUICK, timeout=120)
    assert second.returncode == 0
    assert sorted(r["id"] for r in records(out.read_bytes())) == ["r1", "r2", "r3", "r4"]
    assert faulty.hits["ok"] == before


def test_failures_on_stdout_keep_the_stream_going(faulty):
    rows = [{"id": f"r{i}", "prompt": "fail" if i == 1 else f"ok {i}"} for i in range(5)]
    result = caitool("generate", "--backend", "openai", "--base-url", faulty.url, "-m", "m",
                     input=jsonl(rows), check=False, env=QUICK, timeout=120)
    assert result.returncode == 1
    assert [r["id"] for r in records(result.stdout)] == ["r0", "r2", "r3", "r4"]


def test_ctrl_c_ends_the_run_while_requests_hang(faulty, tmp_path):
    # Each hanging request would hold an exiting process for as long as the server hangs,
    # and retries would send more; the command must end on the interrupt instead.
    source = tmp_path / "in.jsonl"
    source.write_text(jsonl([{"prompt": "hang 1"}, {"prompt": "hang 2"}]))
    process = subprocess.Popen(
        [sys.executable, "-m", "caitool", "generate", "--backend", "openai", "--base-url",
         faulty.url, "-m", "m", str(source)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while faulty.hits["hang"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert faulty.hits["hang"] == 2
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=8)
    assert process.returncode == 130
    assert stderr.decode().strip().splitlines()[-1] == "caitool generate: interrupted"


def test_an_unreachable_server_is_one_line():
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = caitool("critique", "--backend", "openai", "--base-url", url, "-m", "m",
                     input=jsonl([{"prompt": "a"}, {"prompt": "b"}]), check=False,
                     env=QUICK, timeout=120)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 1
    assert lines[-1].startswith(f"caitool critique: every request failed: cannot reach {url}")
    assert "Traceback" not in result.stderr.decode()


def test_the_api_key_is_sent_but_never_shown(faulty):
    result = caitool("generate", "--backend", "openai", "--base-url", faulty.url, "-m", "m",
                     "--api-key-env", "MY_KEY", input=jsonl([{"prompt": "deny"}]),
                     check=False, env={**QUICK, "MY_KEY": SECRET}, timeout=120)
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert "HTTP 401: bad key" in stderr and "$MY_KEY" in stderr
    assert SECRET not in stderr + result.stdout.decode()
    assert faulty.auth == [f"Bearer {SECRET}"]


def test_backend_options_are_checked():
    with pytest.raises(CaitoolError, match="needs --base-url"):
        create("openai", "m")
    with pytest.raises(CaitoolError, match="http"):
        create("openai", "m", base_url="localhost:8000")
    with pytest.raises(CaitoolError, match="--concurrency"):
        create("openai", "m", base_url="http://127.0.0.1:1/v1", concurrency=0)


# -- a server that returns log-probabilities ------------------------------------------------


class LogprobServer:
    """The tiny model behind the parts of vLLM's dialect that option scoring uses: echoed
    prompt log-probabilities on /v1/completions; continue_final_message and top_logprobs
    on /v1/chat/completions. Every number comes from the model's forward pass."""

    def __init__(self, model_dir: Path):
        import torch

        from caitool.backends.hf import HFBackend

        self.hf = HFBackend(str(model_dir), device="cpu")
        tokenizer, model = self.hf.tokenizer, self.hf.hf_model
        self.requests: list[dict] = []
        owner = self

        def logprobs_of(ids):
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            return torch.log_softmax(logits, dim=-1)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                if self.path.endswith("/chat/completions"):
                    payload = self._chat(body)
                else:
                    payload = self._completion(body)
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _completion(self, body):
                ids = tokenizer(body["prompt"])["input_ids"]
                lp = logprobs_of(ids)
                tokens = [tokenizer.decode([i]) for i in ids]
                offsets = [sum(len(t) for t in tokens[:k]) for k in range(len(tokens))]
                values = [None] + [float(lp[k - 1, ids[k]]) for k in range(1, len(ids))]
                logprobs = {"tokens": tokens, "token_logprobs": values, "text_offset": offsets}
                return {"choices": [{"index": 0, "text": "".join(tokens), "logprobs": logprobs}]}

            def _chat(self, body):
                messages = body["messages"]
                text = tokenizer.apply_chat_template(
                    messages[:-1] if body.get("continue_final_message") else messages,
                    add_generation_prompt=True, tokenize=False)
                if body.get("continue_final_message"):
                    text += messages[-1]["content"]
                last = logprobs_of(tokenizer(text, add_special_tokens=False)["input_ids"])[-1]
                top = last.topk(body.get("top_logprobs") or 1)
                entries = [{"token": tokenizer.decode([int(i)]), "logprob": float(v)}
                           for v, i in zip(top.values, top.indices, strict=True)]
                position = {**entries[0], "top_logprobs": entries}
                return {"choices": [{"index": 0, "logprobs": {"content": [position]},
                                     "message": {"role": "assistant",
                                                 "content": entries[0]["token"]}}]}

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.logprobs_of = logprobs_of
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_option_scoring_uses_log_probabilities_when_the_server_gives_them(tiny_model):
    server = LogprobServer(tiny_model)
    try:
        backend = create("openai", str(tiny_model), base_url=server.url, concurrency=2)
        question = "Which is kinder?\n(A) yes\n(B) no"
        raw = [Prompt.raw(f"{question}\nThe answer is:"), Prompt.raw(f"Q {question}\nA:")]
        chat = Prompt.chat([{"role": "user", "content": question}],
                           assistant_prefix="The answer is:")
        options = [[" (A)", " (B)"], [" (A)", " (B)"], [" (A)", " (B)"]]
        scores = backend.score([*raw, chat], options)
        assert [s.method for s in scores] == ["logprobs"] * 3
        assert backend.logprobs == {"chat": True, "raw": True} and backend.prefill is True
        # Raw prompts: the echoed log-probabilities of the option tokens, as hf sums them.
        for got, want in zip(scores[:2], server.hf.score(raw, options[:2]), strict=True):
            assert got.logprobs == pytest.approx(want.logprobs, abs=1e-4)
        # Chat: the model was handed "The answer is: (" and its next token decides.
        text = server.hf.render(Prompt.chat(chat.message_dicts(),
                                            assistant_prefix="The answer is: ("))
        last = server.logprobs_of(server.hf.tokenizer(text, add_special_tokens=False)
                                  ["input_ids"])[-1]
        top = last.topk(scoring.TOP_LOGPROBS)
        candidates = {server.hf.tokenizer.decode([int(i)]): float(v)
                      for v, i in zip(top.values, top.indices, strict=True)}
        assert scores[2].logprobs == pytest.approx(
            scoring.top_logprob_scores(candidates, ["A)", "B)"]), abs=1e-4)
        chat_request = next(r for r in server.requests if "messages" in r)
        assert chat_request["messages"][-1] == {"role": "assistant",
                                                "content": "The answer is: ("}
        assert chat_request["continue_final_message"] is True
        assert chat_request["max_tokens"] == 1 and chat_request["top_logprobs"] == 20
    finally:
        server.close()


def test_top_k_and_repetition_penalty_are_sent_only_when_asked_for(faulty):
    from caitool.backends import registry
    from caitool.backends.base import SamplingParams
    from caitool.render import Prompt

    with registry.create("openai", "m", base_url=faulty.url) as backend:
        backend.generate([Prompt.chat([{"role": "user", "content": "ok"}])],
                         SamplingParams(max_new_tokens=4, temperature=0.7, top_k=40,
                                        repetition_penalty=1.3))
        backend.generate([Prompt.raw("Human: ok\n\nAssistant:")], SamplingParams(max_new_tokens=4))
    asked, plain = faulty.bodies
    assert asked["top_k"] == 40 and asked["repetition_penalty"] == 1.3
    assert "top_k" not in plain and "repetition_penalty" not in plain


# -- a server whose answers are odd on purpose ---------------------------------------------


def _chat_answer(lp_a=-0.2, lp_b=-1.8, **position):
    """A chat completion whose first token is scored, as vLLM answers a scoring request."""
    first = {"token": "A", "logprob": lp_a,
             "top_logprobs": [{"token": "A", "logprob": lp_a}, {"token": "B", "logprob": lp_b}],
             **position}
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "A"},
                         "logprobs": {"content": [first]}}]}


# Each answer is malformed in one way; the backend must fail the request with the reason.
ODD = {
    "@intcontent": ({"choices": [{"index": 0, "message": {"role": "assistant", "content": 5}}]},
                    "choice 0's text is not a string: 5"),
    "@strindex": ({"choices": [{"index": "1", "message": {"role": "assistant", "content": "a"}},
                               {"index": 0, "message": {"role": "assistant", "content": "b"}}]},
                  "choice 0's index is not a whole number: '1'"),
    "@nochoice": ({"choices": [7]}, "choice 0 is not an object: 7"),
    "@nondict": ({"choices": [{"index": 0, "message": {"role": "assistant", "content": "A"},
                               "logprobs": {"content": [5, "x"]}}]},
                 "a log-probability entry is not an object: 5"),
    "@badtop": (_chat_answer(top_logprobs=["A", -0.1]),
                    "a top log-probability entry is not a token and a number: 'A'"),
    "@strlp": (_chat_answer(lp_a="abc"), "a log-probability is not a number: 'abc'"),
    "@big": (_chat_answer(lp_a=1000), "a log-probability is above 0: 1000"),
    "@nan": (_chat_answer(lp_a=math.nan), "a log-probability is NaN"),
    "@inf": (_chat_answer(lp_b=math.inf), "a log-probability is above 0: inf"),
    "@listlp": (_chat_answer(lp_a=[1]), "a log-probability is not a number: [1]"),
}


class Odd:
    """Answers by a marker anywhere in the request (``@intcontent``, ... see ODD): a
    malformed answer; ``@fail``: 500 until healed; ``@echo``: a 500, ``@echo401`` a 401,
    whose message echoes the request's headers; else a good scoring answer (or "ok")."""

    def __init__(self):
        self.hits: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.auth: list[str] = []
        self.healed = False
        odd = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                odd.bodies.append(body)
                odd.auth.append(self.headers.get("Authorization", ""))
                text = json.dumps(body)
                marker = next((m for m in (*ODD, "@fail", "@echo401", "@echo") if m in text),
                              "ok")
                odd.hits[marker] += 1
                if marker in ODD:
                    return self._send(200, ODD[marker][0])
                if marker == "@fail" and not odd.healed:
                    return self._send(500, {"error": {"message": "internal trouble"}})
                if marker.startswith("@echo"):
                    echoed = "you sent " + json.dumps(dict(self.headers))
                    return self._send(401 if marker == "@echo401" else 500,
                                      {"error": {"message": echoed}})
                if "messages" in body:
                    return self._send(200, _chat_answer())
                self._send(200, {"choices": [{"index": 0, "text": "ok"}]})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()  # NaN and Infinity as Python writes them
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def odd():
    server = Odd()
    yield server
    server.close()


@pytest.mark.parametrize("marker", sorted(ODD))
def test_a_malformed_answer_fails_its_prompt_after_retries(odd, marker):
    backend = create("openai", "m", base_url=odd.url, retries=2, backoff=0.01)
    question = Prompt.chat([{"role": "user", "content": "Which is kinder?"}],
                           assistant_prefix="The answer is:")
    odd_one = Prompt.chat([{"role": "user", "content": f"Which is kinder? {marker}"}],
                          assistant_prefix="The answer is:")
    with pytest.raises(RequestsFailed) as caught:
        backend.score([question, odd_one], [[" (A)", " (B)"]] * 2)
    failures, results = caught.value.failures, caught.value.results
    assert set(failures) == {1} and failures[1].startswith(ODD[marker][1])
    assert results[0].method == "logprobs" and results[1] is None
    assert results[0].logprobs == pytest.approx([-0.2, -1.8])
    assert odd.hits[marker] == 3  # one try and two retries
    assert backend.retried == 2
    # A malformed answer is no sign that the server lacks log-probabilities.
    assert backend.logprobs["chat"] is True
    backend.close()


@pytest.mark.parametrize("marker", ["@intcontent", "@strindex", "@nochoice"])
def test_a_malformed_completion_fails_its_prompt_in_generation(odd, marker):
    backend = create("openai", "m", base_url=odd.url, retries=0)
    prompts = [Prompt.raw("Human: ok\n\nAssistant:"), Prompt.chat([{"role": "user", "content": marker}])]
    with pytest.raises(RequestsFailed) as caught:
        backend.generate(prompts, SamplingParams(max_new_tokens=4))
    assert caught.value.failures == {1: ODD[marker][1]}
    assert caught.value.results[0] == ["ok"]
    backend.close()


def _compare(url: str, *args: str, input: str, env: dict | None = None):
    return caitool("compare", "--backend", "openai", "--base-url", url, "-m", "m", "-c", MINI,
                   *args, input=input, check=False, env={**QUICK, **(env or {})}, timeout=120)


def test_compare_names_each_record_with_an_odd_answer_and_writes_the_rest(odd):
    rows = [{"id": "good", "prompt": "Hi", "responses": ["Hello.", "Go away."]}]
    rows += [{"id": marker[1:], "prompt": "Hi", "responses": ["Hello.", f"Hey {marker}"]}
             for marker in sorted(ODD)]
    result = _compare(odd.url, input=jsonl(rows), env={"CAITOOL_RETRIES": "1"})
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in stderr
    for marker, (_, reason) in ODD.items():
        assert f"record {marker[1:]} failed: {reason}" in stderr
        assert odd.hits[marker] == 4  # both orders, each tried twice
    assert f"{len(ODD)} records failed and were left out of the output" in stderr
    [row] = records(result.stdout)
    assert row["id"] == "good" and row["provenance"]["compare"]["method"] == "logprobs"
    assert 0.5 <= row["p_chosen"] <= 1 and all(math.isfinite(d["p_first"])
                                               for d in row["judgments"])
    assert b"NaN" not in result.stdout and b"Infinity" not in result.stdout


def test_compare_keeps_the_batch_when_a_record_fails_and_resume_redoes_only_it(odd, tmp_path):
    rows = [{"id": "r1", "prompt": "Hi", "responses": ["Hello.", "Go away."]},
            {"id": "r2", "prompt": "Hi", "responses": ["Hello.", "Hey @fail"]},
            # Pairs (0, 2), (1, 2) and (2, 3) fail; (0, 3) and (1, 3) are written; (0, 1)
            # is judged but held back, so that the record stays undone for --resume.
            {"id": "r3", "prompt": "Hi", "responses": ["a", "b", "c @fail", "d"]},
            {"id": "r4", "prompt": "Hi", "responses": ["Sure.", "No."]}]
    out = tmp_path / "prefs.jsonl"
    first = _compare(odd.url, "-o", str(out), input=jsonl(rows))
    stderr = first.stderr.decode()
    assert first.returncode == 1 and "Traceback" not in stderr
    assert "record r2 failed: HTTP 500: internal trouble" in stderr
    assert "record r3 failed: pair 0-2: HTTP 500: internal trouble" in stderr
    assert "2 records failed and were left out of the output (r2, r3)" in stderr
    assert [r["id"] for r in records(out.read_text())] == ["r1", "r3:0-3", "r3:1-3", "r4"]
    # Once the server is well, --resume judges only the pairs that are missing: r2's, and
    # r3's three failed ones plus its held-back (0, 1), each in two orders.
    odd.healed = True
    sent = len(odd.bodies)
    second = _compare(odd.url, "-o", str(out), "--resume", input=jsonl(rows))
    assert second.returncode == 0, second.stderr.decode()
    assert len(odd.bodies) - sent == 2 * (1 + 4)
    ids = [r["id"] for r in records(out.read_text())]
    assert ids == ["r1", "r3:0-3", "r3:1-3", "r4", "r2", "r3:0-2", "r3:1-2", "r3:2-3", "r3"]


def test_credentials_in_the_url_are_refused_and_never_shown():
    for url, message in (("http://user:hunter2@127.0.0.1:1/v1", "must not hold credentials"),
                         ("http://:hunter2@127.0.0.1:1/v1", "must not hold credentials"),
                         ("http://127.0.0.1:port/v1", "not a valid URL"),
                         ("http://[::1/v1", "not a valid URL")):
        result = caitool("generate", "--backend", "openai", "--base-url", url, "-m", "m",
                         input=jsonl([{"prompt": "hi"}]), check=False, timeout=60)
        stderr = result.stderr.decode()
        assert result.returncode == 1 and result.stdout == b"", stderr
        assert len(stderr.strip().splitlines()) == 1 and message in stderr
        assert "hunter2" not in stderr
    with pytest.raises(CaitoolError, match=r"give https://127\.0\.0\.1:1/v1 and put the API key "
                                           r"in \$MY_KEY"):
        create("openai", "m", base_url="https://me:pw@127.0.0.1:1/v1", api_key_env="MY_KEY")


def test_headers_echoed_by_the_server_are_redacted(odd):
    for prompt, fatal in (("@echo", False), ("@echo401", True)):
        result = caitool("generate", "--backend", "openai", "--base-url", odd.url, "-m", "m",
                         input=jsonl([{"prompt": prompt}]), check=False,
                         env={**QUICK, "OPENAI_API_KEY": SECRET}, timeout=120)
        stderr = result.stderr.decode()
        assert result.returncode == 1 and "Traceback" not in stderr
        assert "you sent" in stderr and '"authorization": "***"' in stderr.lower()
        assert SECRET not in stderr and "Bearer" not in stderr
        assert ("check the API key in $OPENAI_API_KEY" in stderr) == fatal


def test_an_api_key_a_header_cannot_carry_is_one_line_without_the_key(odd):
    # The HTTP layer would quote the whole header in its error; surrounding whitespace (a
    # key read from a file) is dropped instead.
    bad = caitool("generate", "--backend", "openai", "--base-url", odd.url, "-m", "m",
                  input=jsonl([{"prompt": "hi"}]), check=False,
                  env={"OPENAI_API_KEY": "sk-line\nbreak-123"}, timeout=60)
    stderr = bad.stderr.decode()
    assert bad.returncode == 1 and len(stderr.strip().splitlines()) == 1
    assert "$OPENAI_API_KEY holds characters an HTTP header cannot carry" in stderr
    assert "sk-line" not in stderr and "break-123" not in stderr
    padded = caitool("generate", "--backend", "openai", "--base-url", odd.url, "-m", "m",
                     input=jsonl([{"prompt": "hi"}]), env={"OPENAI_API_KEY": f" {SECRET}\r\n"},
                     timeout=60)
    assert records(padded.stdout)[0]["response"] == "A"
    assert odd.auth[-1] == f"Bearer {SECRET}"
