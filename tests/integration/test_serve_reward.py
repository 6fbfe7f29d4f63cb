"""caitool serve-reward on the tiny reward model and the word judge: OpenRLHF's exact requests
(one query each, several at once, and one request with many), the plain records and verl's
client function all get the rewards that train-grpo's own reward functions give for the same
inputs; a short soak with garbage among the requests loses and doubles nothing; SIGTERM
finishes the requests in flight. (Hostile requests: tests/integration/test_bad_input.py.)"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import ROOT, free_port, served

sys.path.insert(0, str(ROOT / "bench"))
import serve_load  # noqa: E402

pytest.importorskip("fastapi", reason="needs caitool[serve] (make install)")
pytest.importorskip("uvicorn", reason="needs caitool[serve] (make install)")

# One comparison principle: the trainers' principle sampling (seeded by training step) and the
# server's (seeded by the texts) then pick the same one, and the numbers can be compared.
KIND_RULES = """name: kindness
description: Which reply is kinder.
critique_revision:
  - id: kind
    critique: Say how the last reply could be unkind.
    revision: Rewrite the reply so it is kind.
comparison:
  - id: kinder
    question: Which reply is kinder?
"""
PROMPTS = ["Tell me about dogs.", "What should I cook tonight?", "How do I fix a flat tyre?"]
RESPONSES = ["Dogs are kind and loyal.", "Dogs are loud.", "Cook something kind to yourself.",
             "Pasta.", "Patch it, then be kind to the tyre.", "Buy a new bike."]
REFERENCE = "I do not know."
JUDGE_WEIGHT = 2.0


def post(url: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def models(tiny_model, tiny_reward_model, tmp_path_factory):
    from caitool.testing.tiny import build
    from caitool.testing.word_judge import prefers_word

    root = tmp_path_factory.mktemp("serve-judge")
    (root / "kindness.yaml").write_text(KIND_RULES)
    return {"policy": tiny_model, "rm": tiny_reward_model,
            "judge": prefers_word(build(root / "judge"), "kind"), "rules": root / "kindness.yaml"}


def start(models, log: Path, *extra: str):
    port = free_port()
    command = [sys.executable, "-m", "caitool", "serve-reward", "-r", str(models["rm"]),
               "--judge", str(models["judge"]), "-c", str(models["rules"]),
               "--judge-weight", str(JUDGE_WEIGHT), "--policy", str(models["policy"]),
               "--device", "cpu", "--max-wait-ms", "50", "--port", str(port), *extra]
    return served("serve-reward", command, log, "/health", timeout=180,
                  env={"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "CAITOOL_QUIET": "0"})


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-reward") / "serve.log"
    with start(models, log) as url:
        yield url, log


@pytest.fixture(scope="module")
def trainers(models):
    """train-grpo's reward functions, built as the trainer builds them (chat format)."""
    from caitool.backends import registry
    from caitool.training.judge_reward import JudgeOptions, JudgeReward
    from caitool.training.rl_rewards import RewardModelReward

    rm = RewardModelReward(str(models["rm"]), "rm", "chat")
    options = JudgeOptions(model=str(models["judge"]), constitution=str(models["rules"]))
    rules, settings = options.load()
    backend = registry.create("hf", str(models["judge"]), device="cpu")

    def reward(prompt: str, response: str, reference: str) -> dict:
        key = json.dumps([{"role": "user", "content": prompt}])
        completion = [[{"role": "assistant", "content": response}]]
        judge = JudgeReward(backend, rules, settings, {key: reference}, "chat")
        values = {"rm": rm([None], completion, [key])[0],
                  "judge": judge([None], completion, [key])[0]}
        return {**values, "reward": values["rm"] + JUDGE_WEIGHT * values["judge"]}

    yield reward
    backend.close()


def openrlhf_prompt(models, prompt: str) -> tuple[str, str]:
    """The prompt as OpenRLHF sends it with --apply_chat_template (the policy's template), and
    the end-of-sequence token its decoded query ends with."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models["policy"])
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True), tokenizer.eos_token


def test_openrlhf_requests_get_the_trainers_rewards(server, models, trainers):
    url, _ = server
    cases = [(p, r) for p in PROMPTS for r in RESPONSES[:2]]
    expected = [trainers(p, r, REFERENCE) for p, r in cases]
    bodies = []
    for prompt, response in cases:
        templated, eos = openrlhf_prompt(models, prompt)
        bodies.append({"query": [templated + response + eos], "prompts": [templated],
                       "labels": [REFERENCE]})
    # OpenRLHF's newest client: one query per request, many at once.
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(lambda body: post(f"{url}/get_reward", body), bodies))
    for (status, answer), want in zip(answers, expected, strict=True):
        assert status == 200, answer
        assert set(answer) == {"rewards", "scores", "extra_logs"}
        assert answer["rewards"] == answer["scores"]
        assert answer["rewards"][0] == pytest.approx(want["reward"], abs=1e-5)
        assert answer["extra_logs"]["rm"][0] == pytest.approx(want["rm"], abs=1e-5)
        assert answer["extra_logs"]["judge"][0] == pytest.approx(want["judge"], abs=1e-5)
    # The judge prefers "kind": the first response of each prompt beats the reference.
    assert all(answers[i][1]["extra_logs"]["judge"][0] > 0.5 for i in range(0, len(cases), 2))
    # Older clients: the whole batch in one request, and 0.6's body (queries alone, raw).
    whole = {key: [v for body in bodies for v in body[key]] for key in bodies[0]}
    status, answer = post(f"{url}/get_reward", whole)
    assert status == 200
    assert answer["rewards"] == pytest.approx([w["reward"] for w in expected], abs=1e-5)
    raw = {"query": [f"Human: {p}\n\nAssistant: {r}" for p, r in cases]}
    status, answer = post(f"{url}/get_reward", raw)
    assert status == 200 and len(answer["rewards"]) == len(cases)
    _, health = post_get(f"{url}/health")
    assert health["status"] == "ok" and health["batches"] < health["requests"], health


def post_get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, json.loads(response.read())


def test_plain_records_chat_messages_and_peers(server, trainers):
    url, _ = server
    records = [{"id": "a", "prompt": PROMPTS[0], "response": RESPONSES[0], "reference": REFERENCE},
               {"id": 7, "messages": [{"role": "user", "content": PROMPTS[1]},
                                      {"role": "assistant", "content": RESPONSES[3]}],
                "reference": REFERENCE}]
    status, answer = post(f"{url}/score", records)
    assert status == 200 and answer["ids"] == ["a", 7]
    for got, (prompt, response) in zip(answer["rewards"], [(PROMPTS[0], RESPONSES[0]),
                                                           (PROMPTS[1], RESPONSES[3])]):
        assert got == pytest.approx(trainers(prompt, response, REFERENCE)["reward"], abs=1e-5)
    # No reference: each response is judged against the other samples of its prompt.
    group = RESPONSES[:3]
    status, answer = post(f"{url}/score", {"records": [{"prompt": PROMPTS[0], "response": r}
                                                       for r in group]})
    assert status == 200
    for i, response in enumerate(group):
        others = [trainers(PROMPTS[0], response, other)["judge"]
                  for j, other in enumerate(group) if j != i]
        assert answer["judge"][i] == pytest.approx(sum(others) / len(others), abs=1e-5)
    assert answer["judge"][1] < 0 < answer["judge"][0]


def test_verl_client_function(server, trainers):
    url, _ = server
    from caitool.serving import verl

    one = verl.compute_score("hh", RESPONSES[0], REFERENCE, {"question": PROMPTS[0]}, url=url)
    assert one == pytest.approx(trainers(PROMPTS[0], RESPONSES[0], REFERENCE)["reward"], abs=1e-5)
    batch = verl.compute_score_batch(
        data_sources=["hh"] * 2, solution_strs=RESPONSES[:2], ground_truths=[REFERENCE] * 2,
        extra_infos=[{"prompt": [{"role": "user", "content": PROMPTS[0]}]}] * 2, url=url)
    assert batch == pytest.approx([trainers(PROMPTS[0], r, REFERENCE)["reward"]
                                   for r in RESPONSES[:2]], abs=1e-5)
    with pytest.raises(ValueError, match="extra_info"):
        verl.compute_score("hh", "x", None, {}, url=url)


def test_short_soak_loses_nothing(server):
    url, log = server
    pid = int(post_get(f"{url}/health")[1].get("pid", 0))
    # Warm: the first batches grow the allocator's pools once.
    serve_load.drive(url, clients=2, garbage_clients=0, requests=20)
    report = serve_load.drive(url, clients=4, garbage_clients=1, seconds=8, server_pid=pid)
    summary = report.summary()
    print(f"\nshort soak: {json.dumps(summary)}", file=sys.stderr)
    assert not report.problems, report.problems[:5]
    assert report.lost == 0 and report.answered > 20
    assert report.garbage_sent > 0 and report.garbage_refused == report.garbage_sent
    assert summary["memory_mib_growth"] < 64, summary
    assert "Traceback" not in log.read_text()


def test_sigterm_finishes_requests_in_flight(server):
    # The module's last test (the file runs in order on one worker): it stops the server.
    url, log = server
    queries = [f"Human: {p}\n\nAssistant: {r}" for p in PROMPTS for r in RESPONSES] * 2
    body = {"query": queries, "labels": [REFERENCE] * len(queries)}
    pid = int(post_get(f"{url}/health")[1]["pid"])
    answers: list = []
    threads = [threading.Thread(target=lambda: answers.append(post(f"{url}/get_reward", body)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while post_get(f"{url}/health")[1]["in_flight"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(pid, signal.SIGTERM)
    assert not answers, "answered before SIGTERM: nothing was in flight"
    for thread in threads:
        thread.join(timeout=300)
    assert [status for status, _ in answers] == [200, 200, 200]
    assert all(len(a["rewards"]) == len(queries) for _, a in answers)
    for _ in range(100):  # stopped, and no longer taking requests
        try:
            post_get(f"{url}/health")
        except OSError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("still serving after SIGTERM")
    for _ in range(300):  # and ended (a zombie until the fixture reaps it)
        status = Path(f"/proc/{pid}/status")
        if not status.exists() or "\nState:\tZ" in status.read_text():
            break
        time.sleep(0.1)
    text = log.read_text()
    assert "stopped: " in text and "Traceback" not in text, text[-2000:]
