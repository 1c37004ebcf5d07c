"""The sidebar says times as the SDK does: both are checked against phrases.json.

unit/format.test.ts checks the TypeScript (src/format.ts) against the same cases.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from eb_sdk._format import human_duration, relative
from eb_sdk.widgets._offers import countdown

CASES = json.loads((Path(__file__).parent / "phrases.json").read_text())
NOW = datetime(2026, 11, 21, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(("seconds", "text"), CASES["human_duration"])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(("seconds", "verb", "text"), CASES["relative"])
def test_relative(seconds: float, verb: str, text: str) -> None:
    assert relative(NOW + timedelta(seconds=seconds), NOW, verb=verb) == text


@pytest.mark.parametrize(("seconds", "text"), CASES["countdown"])
def test_countdown(seconds: float, text: str) -> None:
    assert countdown(NOW + timedelta(seconds=seconds), NOW) == text
