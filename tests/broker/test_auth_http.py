"""Identity over HTTP: real eb-broker processes, a real (tiny) OpenID Connect issuer.

Authenticators are tried in order and the first that recognises the caller wins: a Bearer
token the token file does not list may still be a valid JWT for the next authenticator.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eb_broker.auth import hash_password
from tests.broker.helpers import notebook_request
from tests.conftest import BrokerFactory
from tests.fixtures.services import BrokerProcess
from tests.fixtures.threaded import IdentityProvider


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider().start()
    yield provider
    provider.stop()


def _post(broker: BrokerProcess, authorization: str | None) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization else {}
    return httpx.post(
        broker.url + "/requests", json=notebook_request(), headers=headers, timeout=30
    )


def _mine(broker: BrokerProcess, authorization: str) -> list[str]:
    """The owners' view: uuids of the caller's offers."""
    answer = httpx.get(
        broker.url + "/sessions",
        params={"phase": "OFFERED"},
        headers={"Authorization": authorization},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return [s["meta"]["uuid"] for s in answer.json()]


def test_token_file_then_jwt_from_oidc_discovery(
    broker_factory: BrokerFactory, idp: IdentityProvider
) -> None:
    broker = broker_factory(
        "--EBBroker.authenticators=token-file",
        "--EBBroker.authenticators=jwt",
        f"--JWTAuthenticator.issuer={idp.url}",  # no jwks_url: discovered from the issuer
        "--JWTAuthenticator.audience=eb",
        "--JWTAuthenticator.jwks_refresh_cooldown=0",
    )
    # a token from the token file: the first authenticator accepts it
    listed = _post(broker, f"Bearer {broker.tokens['alice']}")
    assert listed.status_code == 303, listed.text
    # a JWT is unknown to the token file, which refuses it, and valid for the second one
    dave = f"Bearer {idp.token('dave', groups=('astro',))}"
    answer = _post(broker, dave)
    assert answer.status_code == 303, answer.text
    offers = [o["meta"]["uuid"] for o in answer.json()["offers"]]
    assert set(_mine(broker, dave)) == set(offers)  # they are dave's, not alice's
    assert not set(offers) & set(_mine(broker, f"Bearer {broker.tokens['alice']}"))
    assert idp.hits[:2] == ["discovery", "jwks"]
    # keys are cached: more tokens, no more discovery
    assert _post(broker, dave).status_code == 303
    assert idp.hits.count("discovery") == 1
    # a rotated key (new kid) is fetched when a token names it
    idp.rotate()
    assert _post(broker, f"Bearer {idp.token('dave')}").status_code == 303
    assert idp.hits.count("jwks") == 2

    # refused by every authenticator: 401 with each one's reason
    foreign = IdentityProvider()  # never started: only its key signs
    forged = _post(broker, f"Bearer {foreign.token('dave')}")
    assert forged.status_code == 401
    text = forged.json()["message"]
    assert forged.json()["kind"] == "urn:unauthorized"
    assert "token-file: unknown token" in text and "jwt: invalid token" in text
    wrong_audience = _post(broker, f"Bearer {idp.token('dave', aud='other')}")
    assert wrong_audience.status_code == 401 and "Audience" in wrong_audience.json()["message"]
    opaque = _post(broker, "Bearer not-listed-anywhere")
    assert opaque.status_code == 401 and "unknown token" in opaque.json()["message"]
    assert _post(broker, None).status_code == 401


def test_jwt_with_a_configured_jwks_url_and_basic(
    broker_factory: BrokerFactory, idp: IdentityProvider, tmp_path: Path
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text(f"users:\n  erin: {{password: '{hash_password('pw')}'}}\n")
    broker = broker_factory(
        "--EBBroker.authenticators=jwt",
        "--EBBroker.authenticators=basic",
        f"--JWTAuthenticator.jwks_url={idp.url}/jwks",
        f"--JWTAuthenticator.issuer={idp.url}",
        f"--BasicAuthenticator.path={users}",
    )

    assert _post(broker, f"Bearer {idp.token('frank')}").status_code == 303
    assert "discovery" not in idp.hits and idp.hits == ["jwks"]
    basic = "Basic " + base64.b64encode(b"erin:pw").decode()
    assert _post(broker, basic).status_code == 303
    wrong = "Basic " + base64.b64encode(b"erin:nope").decode()
    refused = _post(broker, wrong)
    assert refused.status_code == 401 and "basic: wrong user name" in refused.json()["message"]
    # a token of another issuer is refused by the issuer check
    stranger = _post(broker, f"Bearer {idp.token('frank', iss='https://elsewhere')}")
    assert stranger.status_code == 401 and "issuer" in stranger.json()["message"].lower()


def test_discovery_for_another_issuer_is_refused(
    broker_factory: BrokerFactory, idp: IdentityProvider
) -> None:
    idp.issuer_claim = "https://impostor.example"
    broker = broker_factory("--EBBroker.authenticators=jwt", f"--JWTAuthenticator.issuer={idp.url}")
    refused = _post(broker, f"Bearer {idp.token('dave')}")
    assert refused.status_code == 401
    assert "impostor" in refused.json()["message"]
    assert "jwks" not in idp.hits  # the keys of a mismatched issuer are never used
