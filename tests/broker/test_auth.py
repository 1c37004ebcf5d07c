"""Authenticators: static tokens, HTTP Basic, JWT/OIDC (with a key made here)."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from eb_broker.auth import (
    AuthError,
    BasicAuthenticator,
    JWTAuthenticator,
    TokenFileAuthenticator,
    hash_password,
)


async def test_token_file_reloads_and_rejects_unknown(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text("tokens:\n  t1: {user: alice, groups: [a, b]}\n")
    auth = TokenFileAuthenticator(path=str(path))
    who = await auth.authenticate({"Authorization": "Bearer t1"})
    assert who and who.user == "alice" and who.groups == ("a", "b")
    assert await auth.authenticate({}) is None
    with pytest.raises(AuthError):
        await auth.authenticate({"Authorization": "Bearer t2"})
    path.write_text("tokens:\n  t2: {user: bob}\n")
    os.utime(path, (time.time() + 5, time.time() + 5))
    who = await auth.authenticate({"Authorization": "token t2"})
    assert who and who.user == "bob"


async def test_basic_with_hashed_password(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(f"users:\n  alice: {{password: '{hash_password('s3cret')}', groups: [g]}}\n")
    auth = BasicAuthenticator(path=str(path))

    def header(user: str, password: str) -> dict[str, str]:
        return {
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        }

    who = await auth.authenticate(header("alice", "s3cret"))
    assert who and who.user == "alice" and who.groups == ("g",)
    with pytest.raises(AuthError):
        await auth.authenticate(header("alice", "wrong"))
    with pytest.raises(AuthError):
        await auth.authenticate({"Authorization": "Basic !!!"})
    assert await auth.authenticate({"Authorization": "Bearer x"}) is None


async def test_jwt_checks_signature_issuer_and_audience(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(pem)
    auth = JWTAuthenticator(
        public_key_file=str(tmp_path / "pub.pem"), issuer="https://idp", audience="eb"
    )
    claims = {
        "iss": "https://idp",
        "aud": "eb",
        "preferred_username": "alice",
        "groups": ["uksrc"],
        "exp": int(time.time()) + 60,
    }
    token = jwt.encode(claims, key, algorithm="RS256")
    who = await auth.authenticate({"Authorization": f"Bearer {token}"})
    assert who and who.user == "alice" and who.groups == ("uksrc",)
    for bad in ({**claims, "aud": "other"}, {**claims, "iss": "x"}, {**claims, "exp": 1}):
        with pytest.raises(AuthError):
            await auth.authenticate(
                {"Authorization": f"Bearer {jwt.encode(bad, key, algorithm='RS256')}"}
            )
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthError):
        await auth.authenticate(
            {"Authorization": f"Bearer {jwt.encode(claims, other, algorithm='RS256')}"}
        )
    assert await auth.authenticate({"Authorization": "Bearer not-a-jwt"}) is None
