"""Settings shared by the spawner (in the hub) and the bookings service (its own process).

Both read the same ``c.EBSpawner.*`` settings: the hub from its config file, the service by
loading the hub's config file (``python -m eb_spawner.service --config jupyterhub_config.py``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

from traitlets import Dict, Float, Integer, List, Unicode
from traitlets.config import Configurable

import eb_sdk as eb
from eb_sdk.builders import parse_count, parse_size

#: Session names the spawner gives its requests: ``jupyterhub-booking:<user>:<server>:<profile>``
#: for quotes and bookings, ``jupyterhub-server:<user>:<server>:<profile>`` for running servers,
#: ``jupyterhub-seat:<group>:<workshop id>:<n>:<profile>`` for a workshop seat.
BOOKING_TAG = "jupyterhub-booking"
SERVER_TAG = "jupyterhub-server"
SEAT_TAG = "jupyterhub-seat"

WHEN_CHOICES: dict[str, str] = {
    "now": "now",
    "10min": "within 10 min",
    "afternoon": "this afternoon",
    "at": "a date and time",
}

_SAFE = re.compile(r"[^A-Za-z0-9_.@+-]")


def encode(text: str) -> str:
    """One field of a session name, reversibly: percent-encoding keeps ``:`` out of it.

    Names that were plain already (letters, digits, ``_.-~@+``) stay as they are, so session
    names made before the encoding read the same. ``-`` alone stands for "no server name".
    """
    if text == "":
        return "-"
    if text == "-":
        return "%2D"
    return quote(text, safe="@+")


def decode(field: str) -> str:
    return "" if field == "-" else unquote(field)


def tag_for(
    user: str, server: str, profile: str, kind: str = BOOKING_TAG, workshop: str = ""
) -> str:
    parts = [kind, encode(user), encode(server), encode(profile)]
    if workshop and kind == SERVER_TAG:  # a server that took over a workshop seat
        parts.append(encode(workshop))
    return ":".join(parts)


def seat_tag(group: str, workshop: str, n: int, profile: str) -> str:
    return ":".join((SEAT_TAG, encode(group), encode(workshop), str(n), encode(profile)))


@dataclass(frozen=True)
class Tag:
    """What a session name says: whose, which server, which profile (or a workshop seat).

    Every field is decoded: compare them with the hub's own names as they are."""

    kind: str
    user: str
    server: str
    profile: str
    group: str = ""
    workshop: str = ""

    @classmethod
    def parse(cls, name: str | None) -> Tag | None:
        parts = (name or "").split(":")
        if parts[0] in (BOOKING_TAG, SERVER_TAG) and len(parts) in (4, 5):
            if len(parts) == 5 and parts[0] != SERVER_TAG:
                return None
            user, server, profile = (decode(p) for p in parts[1:4])
            workshop = decode(parts[4]) if len(parts) == 5 else ""
            return cls(parts[0], user, server, profile, workshop=workshop)
        if len(parts) == 5 and parts[0] == SEAT_TAG:
            group, workshop, profile = decode(parts[1]), decode(parts[2]), decode(parts[4])
            return cls(SEAT_TAG, "", "", profile, group=group, workshop=workshop)
        return None


@dataclass
class Profile:
    """A named executable + compute template."""

    slug: str
    display_name: str
    description: str = ""
    cores: Any = 1
    memory: Any = "1GiB"
    gpus: Any = None
    gpu_model: str | None = None
    duration: str = "2h"
    brokers: list[str] = field(default_factory=list)  # empty: every broker
    groups: list[str] = field(default_factory=list)  # empty: everyone
    command: list[str] | None = None
    root_dir: str | None = None
    environment: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        slug = str(known.pop("slug", "") or _SAFE.sub("-", str(data.get("display_name", ""))))
        known.setdefault("display_name", slug)
        return cls(slug=slug.lower(), **known)

    def compute(self) -> Any:
        return eb.Compute(
            cores=self.cores, memory=self.memory, gpus=self.gpus, gpu_model=self.gpu_model
        )


class EBSettings(Configurable):
    """The settings both the spawner and the service need (configure them as ``EBSpawner``)."""

    eb_brokers = List(
        Dict(),
        help=(
            "Brokers to ask: [{'name': 'local', 'url': 'http://...', 'token': '...'}]. "
            "'token_file' or 'token_env' instead of 'token'; 'username'/'password' for "
            "HTTP Basic. The token is the hub's identity on that broker."
        ),
    ).tag(config=True)

    profiles = List(
        Dict(),
        help=(
            "Profiles: [{'slug': 'small', 'display_name': 'Small CPU', 'cores': 1, "
            "'memory': '2GiB', 'duration': '4h', 'gpus': None, 'brokers': [], 'groups': []}]"
        ),
    ).tag(config=True)

    group_limits = Dict(
        help=(
            "Per hub group: {'students': {'profiles': ['small'], 'max_duration': '2h', "
            "'max_bookings': 1, 'cores': 1, 'memory': '2GiB', 'gpus': 0, 'brokers': ['local']}}. "
            "A user gets the profiles any of their groups allow; the other keys only lower a "
            "profile (caps; 'brokers' narrows its brokers), and with several groups the "
            "tightest limit applies."
        ),
    ).tag(config=True)

    timezone = Unicode(
        "", help="Zone for 'this afternoon' and the form's date and time (default: local)."
    ).tag(config=True)

    now_threshold = Float(
        120.0,
        help="An offer starting within this many seconds is 'now' (spawned at once); a later "
        "one is a booking.",
    ).tag(config=True)

    request_timeout = Float(10.0, help="Seconds to wait for all brokers' offers.").tag(config=True)

    notify_lead_time = Float(
        1200.0, help="Seconds before a booked session starts to send 'available in N minutes'."
    ).tag(config=True)

    smtp = Dict(
        help="SMTP for notifications: {'host': 'localhost', 'port': 25, 'from': "
        "'hub@example.org', 'username': ..., 'password': ..., 'starttls': False}. "
        "Empty: no email.",
    ).tag(config=True)

    email_domain = Unicode(
        "",
        help="Users' addresses are '<name>@<email_domain>' unless 'emails' names them.",
    ).tag(config=True)

    emails = Dict(help="Explicit addresses: {'alice': 'alice@example.org'}.").tag(config=True)

    webhook_url = Unicode(
        "", help="Slack-compatible incoming webhook (JSON {'text': ...}). Empty: none."
    ).tag(config=True)

    service_name = Unicode(
        "eb", help="Name of the bookings service (pages /services/<name>/)."
    ).tag(config=True)

    service_state_file = Unicode(
        "eb-bookings.json", help="Where the service remembers notifications and workshops."
    ).tag(config=True)

    service_cookie_secret_file = Unicode(
        "eb-service-cookie-secret",
        help="Where the service keeps its cookie secret (made the first time, mode 0600), so "
        "users stay logged in to it across restarts; $EB_SERVICE_COOKIE_SECRET (hex) wins.",
    ).tag(config=True)

    service_interval = Float(5.0, help="Seconds between the service's checks.").tag(config=True)

    start_ahead = Float(
        60.0,
        help="The service starts a booked server this many seconds before its slot (it must "
        "exceed the broker's preparation time, so the hub's server takes over the booking).",
    ).tag(config=True)

    placeholder_command = List(
        Unicode(),
        ["jupyter", "server"],
        help="What a booking or workshop seat runs until the hub takes it over (quotes and "
        "bookings are made before the hub has the server's token). It only holds the slot.",
    ).tag(config=True)

    max_bookings = Integer(3, help="Open bookings per user (group limits may lower it).").tag(
        config=True
    )

    # -- derived -------------------------------------------------------------------------------

    def tz(self) -> tzinfo:
        if self.timezone:
            return ZoneInfo(self.timezone)
        local = datetime.now().astimezone().tzinfo
        return local or UTC

    def broker_objects(self, names: list[str] | None = None) -> list[eb.Broker]:
        out = []
        for item in self.eb_brokers:
            name = str(item.get("name") or "")
            if names and name not in names:
                continue
            token = item.get("token")
            if not token and item.get("token_file"):
                token = Path(item["token_file"]).read_text().strip()
            if not token and item.get("token_env"):
                token = os.environ.get(item["token_env"])
            out.append(
                eb.Broker(
                    str(item["url"]),
                    name=name,
                    token=token,
                    username=item.get("username"),
                    password=item.get("password"),
                )
            )
        return out

    def broker_named(self, name: str) -> eb.Broker | None:
        found = self.broker_objects([name])
        return found[0] if found else None

    def all_profiles(self) -> list[Profile]:
        return [Profile.from_dict(p) for p in self.profiles]

    def profiles_for(self, groups: list[str], admin: bool = False) -> list[Profile]:
        """The profiles these groups may use, within the groups' limits.

        A user may use a profile that any of their groups allows (admins: every profile).
        Limits only ever lower a profile, never raise it; with several groups, the tightest
        limit applies, whatever the order of the groups.
        """
        limits = [self.group_limits[g] for g in sorted(groups) if g in self.group_limits]
        out = []
        for profile in self.all_profiles():
            if profile.groups and not admin and not set(profile.groups) & set(groups):
                continue
            allowed = [lim.get("profiles") for lim in limits if lim.get("profiles")]
            if allowed and not admin and not any(profile.slug in a for a in allowed):
                continue
            if limited(profile, limits):
                out.append(profile)
        return out

    def bookings_limit(self, groups: list[str]) -> int:
        values = [
            int(self.group_limits[g]["max_bookings"])
            for g in groups
            if g in self.group_limits and "max_bookings" in self.group_limits[g]
        ]
        return min([self.max_bookings, *values])


def limited(profile: Profile, limits: list[dict[str, Any]]) -> Profile | None:
    """``profile`` within ``limits`` (changed in place); None when no allowed broker is left.

    ``cores``, ``gpus`` and ``memory`` cap the profile's amounts (both ends of a range),
    ``max_duration`` its duration, and ``brokers`` narrows the brokers it may use.
    """
    for lim in limits:
        if lim.get("cores") is not None:
            profile.cores = _capped(profile.cores, lim["cores"], parse_count, "cores")
        if lim.get("gpus") is not None and profile.gpus is not None:
            profile.gpus = _capped(profile.gpus, lim["gpus"], parse_count, "gpus")
        if lim.get("memory") is not None:
            profile.memory = _capped(profile.memory, lim["memory"], parse_size, "memory")
        if lim.get("max_duration") and eb_duration(profile.duration) > eb_duration(
            lim["max_duration"]
        ):
            profile.duration = str(lim["max_duration"])
        if lim.get("brokers"):
            names = [str(b) for b in lim["brokers"]]
            own = profile.brokers
            profile.brokers = [b for b in own if b in names] if own else names
            if not profile.brokers:
                return None
    return profile


def _capped(value: Any, cap: Any, parse: Any, what: str) -> Any:
    """``value`` (a number, range or text) with both ends at most ``cap``."""
    top = parse(cap, what).max
    got = parse(value, what)
    if top is None:
        return value
    low = min(got.min, top) if got.min is not None else None
    high = min(got.max, top) if got.max is not None else top
    if low == high:
        return low
    return (low, high)


def eb_duration(text: str | timedelta) -> timedelta:
    """A duration such as ``"2h"`` or ``"90 min"`` as a timedelta."""
    if isinstance(text, timedelta):
        return text
    from eb_sdk._request import duration_of

    return duration_of(str(text))
