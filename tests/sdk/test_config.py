"""Broker discovery: explicit, EB_BROKERS, the config file, JupyterHub; and error mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import eb_sdk as eb
from eb_sdk._config import configured_brokers, resolve_brokers
from eb_sdk._errors import error_from_response


def test_eb_brokers_names_urls_and_default_token() -> None:
    env = {"EB_BROKERS": "alpha=http://a.example:8082, https://b.example/eb/", "EB_TOKEN": "t0"}
    found = configured_brokers(env)
    assert [(b.name, b.url) for b in found] == [
        ("alpha", "http://a.example:8082"),
        ("b.example/eb", "https://b.example/eb"),
    ]
    assert all(b.auth_headers() == {"Authorization": "Bearer t0"} for b in found)
    # a broker's own variable wins over EB_TOKEN
    env["EB_TOKEN_ALPHA"] = "t-alpha"
    assert configured_brokers(env)[0].token == "t-alpha"


def test_config_file_with_token_env_and_basic(tmp_path: Path) -> None:
    path = tmp_path / "brokers.yaml"
    path.write_text(
        "brokers:\n"
        "  - {name: local, url: 'http://127.0.0.1:8082', token_env: MY_TOKEN}\n"
        "  - {name: ref, url: 'https://ref.example', username: alice, password: pw}\n"
    )
    env = {"EB_CONFIG": str(path), "MY_TOKEN": "secret"}
    local, ref = configured_brokers(env)
    assert local.token == "secret" and local.source == str(path)
    assert ref.auth_headers()["Authorization"].startswith("Basic ")
    assert "secret" not in repr(local)  # secrets stay out of reprs and logs
    del env["MY_TOKEN"]
    with pytest.raises(eb.ConfigError, match="MY_TOKEN"):
        configured_brokers(env)
    path.write_text("brokers: [{name: x}]\n")
    with pytest.raises(eb.ConfigError, match="url"):
        configured_brokers({"EB_CONFIG": str(path)})


def test_default_config_path_follows_xdg(tmp_path: Path) -> None:
    assert eb.config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "eb/brokers.yaml"


def test_explicit_brokers_and_names() -> None:
    env = {"EB_BROKERS": "alpha=http://a.example", "EB_TOKEN": "t"}
    assert [b.name for b in resolve_brokers("alpha", env)] == ["alpha"]
    explicit = resolve_brokers(["http://user:pw@c.example:9000", "d=http://d.example"], env)
    assert explicit[0].url == "http://c.example:9000" and explicit[0].username == "user"
    assert explicit[1].name == "d" and explicit[1].token is None  # EB_TOKEN is alpha's
    # the URL of a configured broker is that broker, credentials and all
    (same,) = resolve_brokers("http://a.example/", env)
    assert (same.name, same.token) == ("alpha", "t")
    (renamed,) = resolve_brokers("mine=http://a.example", env)
    assert (renamed.name, renamed.token) == ("mine", "t")
    with pytest.raises(eb.ConfigError, match="known: alpha"):
        resolve_brokers("gamma", env)
    with pytest.raises(eb.ConfigError, match="no brokers configured"):
        resolve_brokers(None, {"EB_CONFIG": "/nonexistent/brokers.yaml"})
    with pytest.raises(eb.ConfigError, match="http"):
        eb.Broker("ftp://x")


def test_jupyterhub_environment() -> None:
    env = {
        "JUPYTERHUB_API_TOKEN": "hubtok",
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
        "EB_CONFIG": "/nonexistent",
    }
    (hub,) = configured_brokers(env)
    assert hub.name == "hub" and hub.hub_service == "eb-broker" and hub.source == "JupyterHub"
    assert hub.auth_headers() == {"Authorization": "Bearer hubtok"}
    # EB_BROKERS set by the spawner wins, and still uses the hub token
    (named,) = configured_brokers({**env, "EB_BROKERS": "eb=http://eb:8082"})
    assert named.name == "eb" and named.token == "hubtok"


def test_environment_tokens_only_go_to_their_brokers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "brokers.yaml"
    path.write_text("brokers:\n  - {name: site, url: 'https://site.example/eb'}\n")
    env = {
        "EB_BROKERS": "alpha=http://a.example",
        "EB_TOKEN": "eb-token",
        "EB_TOKEN_SITE": "site-token",
        "EB_TOKEN_EVIL": "evil-token",
        "EB_CONFIG": str(path),
        "JUPYTERHUB_API_TOKEN": "hub-token",
        "JUPYTERHUB_API_URL": "http://hub.example:8081/hub/api",
        "JUPYTERHUB_PUBLIC_URL": "https://jupyter.example.org/",
    }
    alpha, site = configured_brokers(env)
    assert alpha.token == "eb-token"  # EB_BROKERS: EB_TOKEN
    assert site.token == "site-token"  # the config file: its own EB_TOKEN_<NAME> only
    del env["EB_TOKEN_SITE"]
    assert configured_brokers(env)[1].token is None  # never EB_TOKEN, never the hub's
    tokens = {
        b.url: b.token
        for b in resolve_brokers(
            [
                "https://evil.example",  # a URL from someone else's notebook
                "evil=https://evil2.example",  # named: EB_TOKEN_EVIL is not for it either
                eb.Broker("https://evil3.example"),
                "http://hub.example:8000/services/eb",  # the hub's host: the hub token
                "https://jupyter.example.org/services/eb-broker",  # the hub's public host
            ],
            env,
        )
    }
    assert tokens == {
        "https://evil.example": None,
        "https://evil2.example": None,
        "https://evil3.example": None,
        "http://hub.example:8000/services/eb": "hub-token",
        "https://jupyter.example.org/services/eb-broker": "hub-token",
    }
    # a session URL of an unknown broker is followed without credentials
    from eb_sdk.aio import _broker_of_url

    for name, value in env.items():
        monkeypatch.setenv(name, value)

    foreign = _broker_of_url("https://evil.example/sessions/1234", [alpha])
    assert foreign.url == "https://evil.example" and not foreign.auth_headers()


@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (409, "urn:offer-expired", eb.OfferExpired),
        (409, "urn:no-capacity", eb.NoCapacity),
        (409, "urn:invalid-update", eb.Conflict),
        (404, "urn:not-found", eb.NotFound),
        (401, "urn:unauthorized", eb.AuthenticationError),
        (403, None, eb.PermissionDenied),
        (400, "urn:invalid-request", eb.InvalidRequest),
        (503, None, eb.BrokerUnavailable),
        (418, None, eb.EBError),
    ],
)
def test_errors_from_status_and_kind(status: int, kind: str | None, cls: type) -> None:
    body = json.dumps(
        {
            "kind": kind,
            "level": "ERROR",
            "message": "the reason",
            "jeb:details": [{"kind": "urn:invalid-request", "message": "cores.min: too small"}],
        }
    ).encode()
    err = error_from_response(status, body, "application/json", broker="alpha", what="accepting")
    assert type(err) is cls
    assert str(err) == "alpha: accepting: the reason"
    assert [m.message for m in err.messages] == ["the reason", "cores.min: too small"]


def test_error_from_a_body_that_is_not_a_messageitem() -> None:
    err = error_from_response(401, b'{"status": 401, "error": "Unauthorized"}', broker="ref")
    assert isinstance(err, eb.AuthenticationError)
    assert "HTTP 401" in str(err) and err.messages == []
    assert eb.Timeout.exit_code == 7 and isinstance(eb.Timeout("x"), TimeoutError)
