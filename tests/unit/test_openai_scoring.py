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
