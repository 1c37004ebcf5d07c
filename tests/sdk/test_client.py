"""The one-broker client with a mock transport: retries, 303 handling, credentials' scope."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

import eb_sdk as eb
from eb_sdk._client import BrokerClient, ClientSettings
from eb_sdk.model import ExecutionRequest

BASE = "http://broker.test"
FAST = ClientSettings(timeout=5, retries=3, backoff=0.001, backoff_max=0.01)
SESSION = {"meta": {"uuid": "11111111-2222-3333-4444-555555555555"}, "phase": "WAITING"}


def _client(handler: Callable[[httpx.Request], httpx.Response]) -> BrokerClient:
    broker = eb.Broker(BASE, name="mock", token="tok")
    return BrokerClient(broker, options=FAST, transport=httpx.MockTransport(handler))


async def test_gets_are_retried_on_503_and_connect_errors() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(calls) == 2:
            return httpx.Response(503, json={"message": "busy"})
        return httpx.Response(200, json=SESSION)

    async with _client(handler) as client:
        session = await client.session(SESSION["meta"]["uuid"])
    assert session.phase == "WAITING" and calls == ["GET", "GET", "GET"]


async def test_posts_are_only_retried_when_nothing_was_sent() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(503, json={"message": "overloaded"})

    async with _client(handler) as client:
        with pytest.raises(eb.BrokerUnavailable, match="overloaded"):
            await client.set_phase("11111111-2222-3333-4444-555555555555", "ACCEPTED")
    assert calls == ["POST", "POST"]  # the 503 is not repeated: the accept may have happened

    def timeout(request: httpx.Request) -> httpx.Response:
        calls.append("timeout")
        raise httpx.ReadTimeout("slow", request=request)

    calls.clear()
    async with _client(timeout) as client:
        with pytest.raises(eb.BrokerUnavailable, match="slow"):
            await client.request(ExecutionRequest())
    assert calls == ["timeout"]


async def test_empty_303_follows_location_without_credentials_elsewhere() -> None:
    seen: list[tuple[str, str | None]] = []
    offerset = {"meta": {"uuid": SESSION["meta"]["uuid"]}, "result": "NO"}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("Authorization")))
        if request.url.path == "/requests":
            return httpx.Response(303, headers={"Location": "http://elsewhere.test/offersets/abc"})
        return httpx.Response(200, json=offerset)

    async with _client(handler) as client:
        answer = await client.request(ExecutionRequest())
    assert answer.offerset.result == "NO" and answer.url == "http://elsewhere.test/offersets/abc"
    assert seen == [
        (f"{BASE}/requests", "Bearer tok"),
        ("http://elsewhere.test/offersets/abc", None),  # our token stays with our broker
    ]


async def test_foreign_session_urls_are_reduced_to_their_uuid() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=SESSION)

    async with _client(handler) as client:
        await client.session("https://evil.test/sessions/11111111-2222-3333-4444-555555555555")
        await client.session(f"{BASE}/sessions/11111111-2222-3333-4444-555555555555")
    assert seen == [f"{BASE}/sessions/11111111-2222-3333-4444-555555555555"] * 2


async def test_error_bodies_become_typed_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"kind": "urn:offer-expired", "level": "ERROR", "message": "offer expired"}
        return httpx.Response(409, content=json.dumps(body).encode())

    async with _client(handler) as client:
        with pytest.raises(eb.OfferExpired, match="mock: accepting 11111111: offer expired"):
            await client.set_phase("11111111-2222-3333-4444-555555555555", "ACCEPTED")
