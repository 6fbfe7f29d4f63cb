"""The openai backend's pure parts: reading servers' answers into option scores, cleaning
URLs and error messages, and the backoff it sets on the SDK's retries. No remote needed."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from caitool.backends.openai import backend, client, scoring


def test_backoff_scales_the_sdks_and_honours_retry_after():
    remote = backend.OpenAIBackend("m", base_url="http://127.0.0.1:1/v1", retries=3, backoff=2.0)
    client = remote.client
    options = SimpleNamespace(get_max_retries=lambda default: default)
    # First retry waits the backoff (less up to 25% jitter), doubling each time after.
    assert 1.5 <= client._calculate_retry_timeout(3, options, None) <= 2.0
    assert 6.0 <= client._calculate_retry_timeout(1, options, None) <= 8.0
    # A remote's Retry-After is kept as it is.
    assert client._calculate_retry_timeout(3, options, {"retry-after": "7"}) == 7.0
    assert client._calculate_retry_timeout(3, options, {"retry-after-ms": "250"}) == 0.25
    assert remote.retried == 4
    remote.close()


def test_urls_and_error_messages_are_cleaned():
    assert client.safe_url("https://user:pw@host:8443/v1?x=1") == "https://host:8443/v1"
    assert client.error_detail({"error": {"message": "too\n long"}}, "") == "too long"
    assert client.error_detail({"detail": "Unexpected fields"}, "") == "Unexpected fields"
    assert client.error_detail(None, "plain text") == "plain text"


def test_sampled_answers_become_smoothed_probabilities():
    options = [" (A)", " (B)"]
    assert scoring.pick_option("I pick (B), then (A)", options) == 1
    assert scoring.pick_option("A, clearly", options) == 0
    assert scoring.pick_option("Neither", options) is None
    scores = scoring.sampled_scores(["(A)", "The answer is (A)", "B", "hmm"], options)
    assert [round(math.exp(s), 3) for s in scores] == [round(2.5 / 4, 3), round(1.5 / 4, 3)]


def test_first_token_log_probabilities_pick_the_option():
    shared, keys = scoring.option_keys([" (A)", " (B)"])
    assert (shared, keys) == (" (", ["A)", "B)"])
    lp_a, lp_b = math.log(0.6), math.log(0.3)
    # Prefilled with "(": the first position decides; " A" and "A" both count for A.
    positions = [{"token": "A", "logprob": lp_a,
                  "top_logprobs": [{"token": "A", "logprob": math.log(0.5)},
                                   {"token": " A", "logprob": math.log(0.1)},
                                   {"token": "B", "logprob": lp_b}]}]
    scores = scoring.chat_logprob_scores(positions, "", keys, prefilled=True)
    assert scores == pytest.approx([lp_a, lp_b])
    # Not prefilled: the option starts after the shared "(" somewhere in the answer.
    answer = [{"token": "I", "logprob": -0.1, "top_logprobs": []},
              {"token": " pick", "logprob": -0.1, "top_logprobs": []},
              {"token": " (", "logprob": -0.1, "top_logprobs": []},
              {"token": "B", "logprob": lp_b,
               "top_logprobs": [{"token": "B", "logprob": lp_b}, {"token": "A", "logprob": lp_a}]}]
    assert scoring.chat_logprob_scores(answer, shared, keys, prefilled=False) == pytest.approx(
        [lp_a, lp_b])
    # An option missing from the top tokens gets at most the probability left over.
    only_a = [{"token": "A", "logprob": math.log(0.9), "top_logprobs": []}]
    scores = scoring.chat_logprob_scores(only_a, "", keys, prefilled=True)
    assert scores[0] == pytest.approx(math.log(0.9)) and scores[1] <= math.log(0.1) + 1e-9
    # Neither option among the top tokens: both get the bound, so neither is preferred.
    neither = [{"token": "x", "logprob": math.log(0.5),
                "top_logprobs": [{"token": "y", "logprob": math.log(0.3)}]}]
    assert scoring.chat_logprob_scores(neither, "", keys, prefilled=True) == pytest.approx(
        [math.log(0.2), math.log(0.2)])
    assert scoring.chat_logprob_scores(answer[:3], shared, keys, prefilled=False) is None


def test_echoed_prompt_log_probabilities_sum_the_option_tokens():
    prompt = "The answer is:"
    echo = {"tokens": ["The", " answer", " is", ":", " (", "A", ")", "\n"],
            "token_logprobs": [None, -1.0, -1.0, -1.0, -0.5, -0.25, -0.125, -2.0],
            "text_offset": [0, 3, 10, 13, 14, 16, 17, 18]}
    assert scoring.echo_option_logprob(echo, len(prompt), len(" (A)")) == pytest.approx(-0.875)
    with pytest.raises(scoring.Unsupported):
        scoring.echo_option_logprob({"tokens": None}, len(prompt), 4)


def test_log_probabilities_are_checked():
    assert scoring.logprob(-0.5) == -0.5 and scoring.logprob(-3) == -3.0
    assert scoring.logprob(1e-6) == 0.0  # rounding above 0 is forgiven
    assert scoring.logprob(-math.inf) == -math.inf and scoring.logprob(-10**400) == -math.inf
    for value, reason in ((math.nan, "is NaN"), (1000, "above 0: 1000"),
                          (math.inf, "above 0: inf"), (10**400, "above 0"),
                          ("-0.1", "not a number: '-0.1'"), (True, "not a number: True"),
                          (None, "not a number: None"), ({"lp": 1}, "not a number")):
        with pytest.raises(client.BadAnswer, match=reason):
            scoring.logprob(value)


def test_malformed_log_probabilities_are_bad_answers_and_missing_ones_unsupported():
    keys = ["A)", "B)"]
    for logprobs, reason in (("x", "'logprobs' is not an object"),
                             ({"content": {"token": "A"}}, "'logprobs.content' is not a list"),
                             ({"content": [5]}, "entry is not an object: 5"),
                             ({"content": [{"token": 3, "logprob": -1}]}, "token is not a string"),
                             ({"content": [{"token": "A", "logprob": "x"}]}, "not a number"),
                             ({"content": [{"token": "A", "top_logprobs": [["A", -1]]}]},
                              "top log-probability entry"),
                             ({"content": [{"token": "A", "top_logprobs": [
                                 {"token": "B", "logprob": math.nan}]}]}, "NaN")):
        with pytest.raises(client.BadAnswer, match=reason):
            scoring.read_chat({"logprobs": logprobs}, "", keys, prefilled=True)
    for choice in ({}, {"logprobs": None}, {"logprobs": {"content": []}}):
        with pytest.raises(scoring.Unsupported):
            scoring.read_chat(choice, "", keys, prefilled=True)
    # Every candidate -inf: no NaN from the log-sum-exp.
    scores = scoring.top_logprob_scores({"A": -math.inf, "B": -math.inf}, keys)
    assert scores == [-math.inf, -math.inf]
    echo = {"tokens": ["Q", " (", "A", ")"], "token_logprobs": [None, -0.5, -0.25, -0.125],
            "text_offset": [0, 1, 3, 4]}
    for broken, reason in (({"token_logprobs": [None, -0.5, "x", -0.1]}, "not a number: 'x'"),
                           ({"token_logprobs": [None, 1000, -1, -1]}, "above 0"),
                           ({"text_offset": [0, 1, "3", 4]}, "offset is not a whole number"),
                           ({"tokens": ["Q", 5, "A", ")"]}, "token is not a string"),
                           ({"tokens": ["Q", " ("]}, "differ in number"),
                           ({"tokens": "Q (A)"}, "is not a list")):
        with pytest.raises(client.BadAnswer, match=reason):
            scoring.echo_option_logprob({**echo, **broken}, 1, 4)
    assert scoring.echo_option_logprob(echo, 1, 4) == pytest.approx(-0.875)


def test_answer_choices_are_checked():
    good = {"choices": [{"index": 0, "message": {"role": "assistant", "content": None}},
                        {"text": "x"}]}
    assert client.answer_choices(good) == good["choices"]
    for payload, reason in (({}, "no 'choices'"), ({"choices": []}, "no 'choices'"),
                            ({"choices": "abc"}, "no 'choices'"),
                            ({"choices": [None]}, "choice 0 is not an object"),
                            ({"choices": [{"index": True, "text": "x"}]}, "index is not a whole"),
                            ({"choices": [{"index": "0", "text": "x"}]}, "index is not a whole"),
                            ({"choices": [{"message": "hi"}]}, "message is not an object"),
                            ({"choices": [{"message": {"content": 5}}]}, "text is not a string: 5"),
                            ({"choices": [{"text": ["x"]}]}, "text is not a string")):
        with pytest.raises(client.BadAnswer, match=reason):
            client.answer_choices(payload)


def test_credentials_are_redacted_wherever_they_are_echoed():
    secret = "my-secret-key"
    echoes = [f'{{"Authorization": "Bearer {secret}", "Host": "h"}}',
              f"{{'authorization': 'Bearer {secret}'}}",
              f"Illegal header value b'Bearer {secret}\\n'",
              "proxy-authorization: Basic dXNlcjpwYXNz",
              "x-api-key=abc123; next", "api_key: abc123",
              "Incorrect API key provided: sk-proj-abcdef123456",
              f"the key {secret} is wrong"]
    for echo in echoes:
        cleaned = client.redact(echo, secret)
        for leaked in (secret, "dXNlcjpwYXNz", "abc123", "sk-proj-abcdef123456"):
            assert leaked not in cleaned, cleaned
    assert client.redact('{"Host": "h"}', None) == '{"Host": "h"}'
    # Redacted before it is cut short, so no prefix of a key survives the cut.
    detail = client.error_detail({"error": {"message": "x" * 290 + " " + secret}}, "", secret)
    assert "my-sec" not in detail and len(detail) <= 300


def test_base_urls_and_api_keys_are_checked(monkeypatch):
    with pytest.raises(client.CaitoolError, match="must not hold credentials") as caught:
        client.split_url("http://me:pw@host/v1")
    assert "pw" not in str(caught.value)
    for url in ("http://host:abc/v1", "http://[::1/v1"):
        with pytest.raises(client.CaitoolError, match="not a valid URL"):
            client.split_url(url)
    assert client.safe_url("http://host:abc/v1") == "<invalid URL>"
    assert client.safe_url("http://u:p@[::1]:8000/v1") == "http://[::1]:8000/v1"
    monkeypatch.setenv("K", "  sk-abc\n")
    assert client.read_key("K") == "sk-abc"
    monkeypatch.setenv("K", "sk-abc\ndef")
    with pytest.raises(client.CaitoolError, match=r"\$K holds characters") as caught:
        client.read_key("K")
    assert "sk-abc" not in str(caught.value)
    monkeypatch.setenv("K", "")
    assert client.read_key("K") is None
    monkeypatch.setenv("CAITOOL_REQUEST_TIMEOUT", "nan")
    with pytest.raises(client.CaitoolError, match="CAITOOL_REQUEST_TIMEOUT must be a number"):
        backend.OpenAIBackend("m", base_url="http://127.0.0.1:1/v1")
