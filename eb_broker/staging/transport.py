"""HTTP for stagers: quick, cached probes on the request path; resumable downloads after.

Every request — the first and every redirect — passes the :class:`SourceGuard`, so users cannot
make the broker fetch from hosts the site does not allow (by default: nothing on loopback,
private or link-local addresses; see ``DataStaging.trusted_hosts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from .objects import StagingError, checksum_from_headers, host_matches, is_internal_address


@dataclass(frozen=True)
class Probe:
    """What a HEAD request (or a one-byte GET) says about an object."""

    url: str
    size: int | None
    checksum: str | None
    etag: str | None
    ranges: bool


class _Retryable(Exception):
    """A failure worth another try (a broken connection, a 5xx answer)."""


class SourceGuard:
    """Which URLs the broker may fetch: scheme, host patterns, no internal addresses."""

    def __init__(
        self,
        *,
        allowed: list[str],
        trusted: list[str],
        block_internal: bool,
        schemes: tuple[str, ...] = ("http", "https"),
    ) -> None:
        self.allowed = list(allowed)
        self.trusted = list(trusted)
        self.block_internal = block_internal
        self.schemes = schemes
        self._resolved: dict[str, tuple[float, bool]] = {}

    async def check(self, url: str) -> None:
        """Raise :class:`StagingError` when ``url`` may not be fetched from here."""
        parts = urlsplit(url)
        if parts.scheme.lower() not in self.schemes:
            raise StagingError(
                f"{url!r} is not an {' or '.join(self.schemes)} URL: the broker cannot fetch it"
            )
        host = (parts.hostname or "").lower()
        if not host:
            raise StagingError(f"{url!r} names no host")
        named = f"{host}:{parts.port}" if parts.port else host
        if not host_matches(named, self.allowed):
            raise StagingError(f"this broker does not fetch data from {named} (not allowed here)")
        if (
            self.block_internal
            and not host_matches(named, self.trusted)
            and await self._internal(host)
        ):
            raise StagingError(
                f"this broker does not fetch data from {named}: it is an internal address "
                "(loopback, private or link-local)"
            )

    async def _internal(self, host: str) -> bool:
        cached = self._resolved.get(host)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        if is_internal_address(host.strip("[]")):
            internal = True
        else:
            try:
                infos = await asyncio.wait_for(
                    asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM),
                    5.0,
                )
            except (OSError, TimeoutError):
                return False  # unknown names fail when connecting, with a clearer message
            internal = any(is_internal_address(str(info[4][0])) for info in infos)
        self._resolved[host] = (time.monotonic() + 60.0, internal)
        return internal


class Transport:
    """The staging service's HTTP client (one per broker, on the broker's event loop)."""

    def __init__(
        self,
        guard: SourceGuard,
        *,
        probe_timeout: float = 5.0,
        read_timeout: float = 60.0,
        probe_ttl: float = 300.0,
        retries: int = 2,
        retry_delay: float = 1.0,
        chunk_size: int = 256 * 1024,
        user_agent: str = "eb-broker",
    ) -> None:
        self.guard = guard
        self.probe_timeout = probe_timeout
        self.read_timeout = read_timeout
        self.probe_ttl = probe_ttl
        self.retries = retries
        self.retry_delay = retry_delay
        self.chunk_size = chunk_size
        self.user_agent = user_agent
        self._client: httpx.AsyncClient | None = None
        self._probes: dict[str, tuple[float, Probe | StagingError]] = {}

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=True,
                max_redirects=5,
                timeout=httpx.Timeout(self.read_timeout, connect=self.probe_timeout),
                headers={"User-Agent": self.user_agent},
                event_hooks={"request": [self._check_request]},
            )
        return self._client

    async def _check_request(self, request: httpx.Request) -> None:
        await self.guard.check(str(request.url))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the request path ---------------------------------------------------------------------

    async def probe(self, url: str, headers: dict[str, str] | None = None) -> Probe:
        """Size, checksum and version of ``url`` (cached for ``probe_ttl`` seconds).

        HEAD first; a server that refuses HEAD is asked for its first byte instead.
        """
        now = time.monotonic()
        cached = self._probes.get(url)
        if cached is not None and cached[0] > now:
            if isinstance(cached[1], StagingError):
                raise cached[1]
            return cached[1]
        try:
            found = await self._probe(url, headers or {})
        except StagingError as exc:
            # remembered briefly: a burst of requests for a dead source costs one timeout
            self._probes[url] = (now + min(30.0, self.probe_ttl), exc)
            raise
        self._probes[url] = (now + self.probe_ttl, found)
        if len(self._probes) > 10000:
            self._probes = {k: v for k, v in self._probes.items() if v[0] > now}
        return found

    async def _probe(self, url: str, headers: dict[str, str]) -> Probe:
        timeout = httpx.Timeout(self.probe_timeout)
        response = await self._send("HEAD", url, headers, timeout)
        if response.status_code in (405, 501):
            response = await self._send("GET", url, {**headers, "Range": "bytes=0-0"}, timeout)
        _raise_for_status(response, url)
        size = _total_size(response)
        return Probe(
            url=str(response.url),
            size=size,
            checksum=checksum_from_headers(response.headers),
            etag=response.headers.get("etag"),
            ranges=response.status_code == 206
            or response.headers.get("accept-ranges", "").lower() == "bytes",
        )

    async def _send(
        self, method: str, url: str, headers: dict[str, str], limits: httpx.Timeout
    ) -> httpx.Response:
        with self._probe_errors(url):
            async with self.client.stream(method, url, headers=headers, timeout=limits) as resp:
                return resp  # headers only: the body is never read (a HEAD has none)

    async def get_text(
        self, url: str, headers: dict[str, str] | None = None, limit: int = 8 * 1024 * 1024
    ) -> str:
        """A small document (a listing, a DataLink table), within the probe timeout."""
        with self._probe_errors(url):
            async with self.client.stream(
                "GET", url, headers=headers or {}, timeout=httpx.Timeout(self.probe_timeout)
            ) as response:
                _raise_for_status(response, url)
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise StagingError(f"{url} answered more than {limit} bytes")
                return body.decode(response.encoding or "utf-8", errors="replace")

    @contextlib.contextmanager
    def _probe_errors(self, url: str) -> Iterator[None]:
        """httpx's errors on the request path as StagingErrors the user can read."""
        host = urlsplit(url).netloc
        try:
            yield
        except httpx.TimeoutException:
            raise StagingError(
                f"{host} did not answer within {self.probe_timeout:g} s ({url})"
            ) from None
        except httpx.TooManyRedirects:
            raise StagingError(f"{url} redirects too often") from None
        except httpx.HTTPError as exc:
            raise StagingError(f"cannot reach {host}: {_reason(exc)} ({url})") from None

    # -- preparing ------------------------------------------------------------------------------

    async def download(
        self,
        url: str,
        part: Path,
        *,
        size: int | None,
        etag: str | None = None,
        headers: Callable[[], dict[str, str]] = dict,
    ) -> int:
        """GET ``url`` into ``part``, resuming a partial file with a Range request (``If-Range``
        the object's ``etag``: a changed object is sent whole); returns the bytes moved. Broken
        connections and 5xx answers are retried ``retries`` times."""
        moved = 0
        attempt = 0
        while True:
            try:
                return moved + await self._get_once(url, part, size, etag, headers())
            except _Retryable as exc:
                attempt += 1
                if attempt > self.retries:
                    tries = f" (after {attempt} tries)" if attempt > 1 else ""
                    raise StagingError(f"{exc}{tries}") from None
                await asyncio.sleep(self.retry_delay * attempt)

    async def _get_once(
        self, url: str, part: Path, size: int | None, etag: str | None, headers: dict[str, str]
    ) -> int:
        host = urlsplit(url).netloc
        offset = _size_of(part)
        if size is not None and offset > size:
            offset = 0
        if size is not None and offset == size and offset > 0:
            return 0
        if offset:
            headers = {**headers, "Range": f"bytes={offset}-"}
            if etag and not etag.startswith("W/"):
                headers["If-Range"] = etag
        moved = 0
        try:
            async with self.client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                if status == 206 and offset and _range_start(response) == offset:
                    mode = "ab"
                elif status == 200 or (status == 206 and not offset):
                    mode, offset = "wb", 0
                elif status in (416, 206):
                    _discard(part)
                    raise _Retryable(f"{host} did not resume the transfer of {url}")
                elif status >= 500 or status == 429:
                    raise _Retryable(f"{host} answered HTTP {status} for {url}")
                else:
                    _raise_for_status(response, url)
                    raise StagingError(f"{host} answered HTTP {status} for {url}")
                expected = size if size is not None else _total_size(response)
                with part.open(mode) as fh:
                    async for chunk in response.aiter_bytes(self.chunk_size):
                        fh.write(chunk)
                        moved += len(chunk)
        except StagingError:
            raise
        except httpx.TimeoutException:
            raise _Retryable(
                f"the transfer from {host} stalled for {self.read_timeout:g} s "
                f"after {offset + moved} bytes ({url})"
            ) from None
        except httpx.HTTPError as exc:
            raise _Retryable(
                f"the connection to {host} broke after {offset + moved} bytes: {_reason(exc)} "
                f"({url})"
            ) from None
        done = offset + moved
        if expected is not None and done != expected:
            raise _Retryable(f"the transfer from {host} ended after {done} of {expected} bytes")
        return moved


def _size_of(part: Path) -> int:
    """Bytes already downloaded into ``part`` (0 when there is none)."""
    try:
        return part.stat().st_size
    except FileNotFoundError:
        return 0


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)


def _raise_for_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    host = urlsplit(url).netloc
    if status == 404 or status == 410:
        raise StagingError(f"{url} does not exist ({host} answered HTTP {status})")
    if status in (401, 403):
        raise StagingError(f"this broker may not read {url} ({host} answered HTTP {status})")
    raise StagingError(f"{host} answered HTTP {status} for {url}")


def _total_size(response: httpx.Response) -> int | None:
    """The object's size from Content-Range (``bytes 0-0/1234``) or Content-Length."""
    content_range = response.headers.get("content-range", "")
    total = content_range.rpartition("/")[2]
    if total.isdigit():
        return int(total)
    if response.status_code == 200:
        length = response.headers.get("content-length", "")
        if length.isdigit():
            return int(length)
    return None


def _range_start(response: httpx.Response) -> int | None:
    value = response.headers.get("content-range", "")  # bytes 100-199/200
    with contextlib.suppress(ValueError, IndexError):
        return int(value.split()[1].split("-")[0])
    return None


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
