from __future__ import annotations

import logging
from pathlib import Path

import pytest

from triage.tokens import TRUNCATION_MARKER, TokenCounter, estimate_tokens

TEXT = "社保卡补办要等一个月，窗口说新卡要等二十多天才能拿。" * 50


def test_tiktoken_counts_when_the_cache_has_the_encoding(tiktoken_cache: Path | None) -> None:
    if tiktoken_cache is None:
        pytest.skip("shared tiktoken encodings not present")
    counter = TokenCounter("o200k_base")
    assert not counter.estimated
    assert 0 < counter.count(TEXT) < estimate_tokens(TEXT)


def test_missing_encodings_fall_back_to_the_estimate_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: nothing to load, nothing downloaded
    TokenCounter._warned.discard("cl100k_base")
    with caplog.at_level(logging.WARNING):
        counters = [TokenCounter("cl100k_base") for _ in range(3)]
    assert all(c.estimated for c in counters)
    assert counters[0].count(TEXT) == estimate_tokens(TEXT)
    assert len([r for r in caplog.records if "estimated" in r.message]) == 1


@pytest.mark.parametrize("cache", ["real", "empty"])
def test_truncation_keeps_within_budget_and_marks(
    cache: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiktoken_cache: Path | None
) -> None:
    if cache == "empty":
        monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    elif tiktoken_cache is None:
        pytest.skip("shared tiktoken encodings not present")
    counter = TokenCounter("o200k_base")
    cut, truncated = counter.truncate(TEXT, 100)
    assert truncated and cut.endswith(TRUNCATION_MARKER)
    assert counter.count(cut.removesuffix(TRUNCATION_MARKER)) <= 100
    assert counter.truncate("短文本", 100) == ("短文本", False)
