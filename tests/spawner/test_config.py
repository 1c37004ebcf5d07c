"""The spawner's pure parts, without a hub: session names, group limits, the form's reasons,
the service's cookie secret."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from eb_sdk.model import MessageItem
from eb_spawner.config import BOOKING_TAG, SEAT_TAG, SERVER_TAG, EBSettings, Tag, seat_tag, tag_for
from eb_spawner.form import Fit, parse_choice, reasons_and_fits
from eb_spawner.service import cookie_secret

PROFILES = [
    {"slug": "small", "cores": 1, "memory": "2GiB", "duration": "4h"},
    {"slug": "big", "cores": (2, 8), "memory": "16GiB", "duration": "8h", "brokers": ["a", "b"]},
    {"slug": "gpu", "cores": 4, "memory": "8GiB", "gpus": 2, "groups": ["gpu-users"]},
]


def test_session_names_are_reversible() -> None:
    for user in ("alice", "a b", "a_b", "ünï:cøde", "bob@example.org", "-", "x%41"):
        tag = Tag.parse(tag_for(user, "my server:1", "small"))
        assert tag is not None and (tag.kind, tag.user, tag.server) == (
            BOOKING_TAG,
            user,
            "my server:1",
        )
    assert tag_for("a b", "", "small") != tag_for("a_b", "", "small")  # no more collisions
    server = Tag.parse(tag_for("alice", "", "small", SERVER_TAG, workshop="w1"))
    assert server == Tag(SERVER_TAG, "alice", "", "small", workshop="w1")
    seat = Tag.parse(seat_tag("Physics 101", "w1", 3, "small"))
    assert seat == Tag(SEAT_TAG, "", "", "small", group="Physics 101", workshop="w1")
    # names made before the encoding read the same
    assert Tag.parse("jupyterhub-booking:bob@x.org:-:small") == Tag(
        BOOKING_TAG, "bob@x.org", "", "small"
    )
    assert Tag.parse("jupyterhub-booking:a:b") is None
    assert Tag.parse("something-else:a:b:c") is None


def settings(limits: dict[str, dict[str, object]]) -> EBSettings:
    return EBSettings(profiles=PROFILES, group_limits=limits, max_bookings=3)


def test_group_limits_only_cap_and_the_tightest_applies() -> None:
    limits = {
        "students": {"profiles": ["small", "big"], "cores": 4, "max_duration": "2h"},
        "course": {"cores": 16, "memory": "4GiB", "max_bookings": 1, "brokers": ["b", "c"]},
    }
    got = {p.slug: p for p in settings(limits).profiles_for(["students", "course"])}
    assert set(got) == {"small", "big"}  # gpu: not their group; the others: allowed
    assert got["small"].cores == 1  # a cap of 4 never raises 1
    assert got["big"].cores == (2, 4)  # the range's top is capped, 16 is looser than 4
    assert got["small"].memory == 2 and got["big"].memory == 4  # GiB
    assert got["small"].duration == "2h" and got["big"].duration == "2h"
    assert got["big"].brokers == ["b"] and got["small"].brokers == ["b", "c"]
    # the order of the groups does not matter
    again = {p.slug: p for p in settings(limits).profiles_for(["course", "students"])}
    assert {k: (p.cores, p.memory, p.duration) for k, p in again.items()} == {
        k: (p.cores, p.memory, p.duration) for k, p in got.items()
    }
    assert settings(limits).bookings_limit(["students", "course"]) == 1
    assert settings(limits).bookings_limit(["students"]) == 3
    # no broker left for a profile: it is not offered
    narrow = {"g": {"brokers": ["z"]}}
    assert [p.slug for p in settings(narrow).profiles_for(["g"])] == ["small"]
    # admins see every profile, still within their groups' caps
    admin = {p.slug: p for p in settings(limits).profiles_for(["students"], admin=True)}
    assert set(admin) == {"small", "big", "gpu"} and admin["gpu"].cores == 4


def test_gpu_cap() -> None:
    got = settings({"gpu-users": {"gpus": 1}}).profiles_for(["gpu-users"])
    assert {p.slug: p.gpus for p in got} == {"small": None, "big": None, "gpu": 1}


def test_reasons_and_earliest_fits() -> None:
    start = "2026-11-24T15:00:00+00:00"
    said = [
        ("alpha", MessageItem(kind="urn:no-capacity", message="no capacity then")),
        (
            "alpha",
            MessageItem(kind="urn:earliest-fit", values={"start": start, "end": start}),
        ),
        ("beta", MessageItem(kind="urn:policy", message="students may not use GPUs")),
        ("gamma", MessageItem(kind="urn:earliest-fit", values={"start": start})),
    ]
    reasons, fits = reasons_and_fits(said, offered={"gamma"})
    assert reasons == [
        "alpha: no capacity then",
        "beta: refused by its policy: students may not use GPUs",
    ]
    when = datetime(2026, 11, 24, 15, tzinfo=UTC)
    assert fits == [Fit("alpha", when, when)]
    assert fits[0].ref == "fit|alpha|2026-11-24T15:00:00+00:00"


def test_the_forms_choice_header() -> None:
    assert parse_choice('{"profile": "big", "when": "at", "at": "2026-11-24T09:00", "x": 1}') == {
        "profile": "big",
        "when": "at",
        "at": "2026-11-24T09:00",
    }
    assert parse_choice("not json") == {} and parse_choice("[1]") == {} and parse_choice(None) == {}


def test_the_services_cookie_secret_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EB_SERVICE_COOKIE_SECRET", raising=False)
    path = tmp_path / "secret"
    conf = EBSettings(service_cookie_secret_file=str(path))
    first = cookie_secret(conf)
    assert len(first) == 32 and cookie_secret(conf) == first
    assert path.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("EB_SERVICE_COOKIE_SECRET", "ab" * 32)
    assert cookie_secret(conf) == bytes.fromhex("ab" * 32)
