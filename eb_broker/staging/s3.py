"""The stager of S3 objects and buckets: ``S3DataResource``.

``object`` names one object (staged as a file); no ``object`` — or one ending in ``/`` — stages
the bucket (or that prefix) as a directory, from a ``ListObjectsV2`` listing. Public data needs
no credentials; for the rest a site gives keys per endpoint (``S3Stager.credentials``) and the
requests are signed with AWS Signature Version 4.
"""

from __future__ import annotations

import hashlib
import hmac
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from traitlets import Dict, Int

from eb_sdk.model import AbstractDataResource, S3DataResource

from .base import Located, Stager
from .objects import SourceObject, StagingError, etag_md5, host_matches, object_path
from .transport import Transport

_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sigv4_headers(
    method: str,
    url: str,
    *,
    access_key: str,
    secret_key: str,
    region: str = "us-east-1",
    service: str = "s3",
    now: datetime | None = None,
    payload_hash: str = _EMPTY_SHA256,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The headers that sign a request with AWS Signature Version 4 (pure).

    ``url``'s path must already be URI-encoded (as the request sends it); ``extra`` headers
    (e.g. ``Range``) are signed too.
    """
    when = (now or datetime.now(UTC)).astimezone(UTC)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = when.strftime("%Y%m%d")
    parts = urlsplit(url)
    signed: dict[str, str] = {
        "host": parts.netloc,
        "x-amz-content-sha256": payload_hash,
        "x-amz-date": amz_date,
        **{k.lower(): v for k, v in (extra or {}).items()},
    }
    names = sorted(signed)
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    canonical = "\n".join(
        [
            method.upper(),
            parts.path or "/",
            "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query),
            "".join(f"{name}:{signed[name].strip()}\n" for name in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = _hmac(("AWS4" + secret_key).encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-content-sha256": payload_hash,
        "x-amz-date": amz_date,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}",
    }


def object_url(endpoint: str, bucket: str, key: str, template: str | None = None) -> str:
    """The URL of ``bucket``/``key``: the resource's ``template`` (with ``{endpoint}``,
    ``{bucket}`` and ``{object}``) or path style, ``<endpoint>/<bucket>/<key>``."""
    quoted = quote(key, safe="/-_.~")
    if template:
        return (
            template.replace("{endpoint}", endpoint.rstrip("/"))
            .replace("{bucket}", quote(bucket, safe=""))
            .replace("{object}", quoted)
        )
    return f"{endpoint.rstrip('/')}/{quote(bucket, safe='')}/{quoted}"


def parse_listing(text: str) -> tuple[list[tuple[str, int, str]], str | None]:
    """``(key, size, etag)`` of a ListObjectsV2 answer and its continuation token (if more)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise StagingError(f"the S3 listing is not XML: {exc}") from None
    ns = _S3_NS if root.tag.startswith(_S3_NS) else ""
    items = []
    for node in root.iter(f"{ns}Contents"):
        key = node.findtext(f"{ns}Key") or ""
        if not key or key.endswith("/"):
            continue
        items.append((key, int(node.findtext(f"{ns}Size") or 0), node.findtext(f"{ns}ETag") or ""))
    truncated = (root.findtext(f"{ns}IsTruncated") or "").lower() == "true"
    token = root.findtext(f"{ns}NextContinuationToken") if truncated else None
    return items, token


class S3Stager(Stager):
    """Fetches ``S3DataResource`` objects (one object, or a bucket/prefix as a directory)."""

    kinds = (S3DataResource.KIND,)
    label = "s3"

    credentials = Dict(
        {},
        config=True,
        help="S3 credentials per endpoint host (shell-style patterns): {'s3.example.org': "
        "{'access_key': ..., 'secret_key': ..., 'region': 'us-east-1'}}. Requests to other "
        "endpoints are sent unsigned (public data).",
    )
    max_objects = Int(
        1000,
        config=True,
        help="Most objects one bucket or prefix may hold to be staged as a directory.",
    )

    def _keys_for(self, url: str) -> dict[str, Any] | None:
        host = urlsplit(url).netloc.lower()
        for pattern, keys in self.credentials.items():
            if host_matches(host, [str(pattern)]) and isinstance(keys, dict):
                return keys
        return None

    def headers(self, obj: SourceObject, method: str) -> dict[str, str]:
        return self._sign(method, obj.url)

    def _sign(self, method: str, url: str) -> dict[str, str]:
        keys = self._keys_for(url)
        if not keys:
            return {}
        return sigv4_headers(
            method,
            url,
            access_key=str(keys.get("access_key", "")),
            secret_key=str(keys.get("secret_key", "")),
            region=str(keys.get("region", "us-east-1")),
        )

    async def locate(self, resource: AbstractDataResource, transport: Transport) -> Located:
        if not isinstance(resource, S3DataResource):
            raise StagingError(f"the S3 stager cannot stage {resource.kind}")
        if not resource.endpoint or not resource.bucket:
            raise StagingError("the S3 data resource needs an endpoint and a bucket")
        endpoint = resource.endpoint
        if "://" not in endpoint:
            endpoint = "https://" + endpoint
        host = urlsplit(endpoint).netloc
        key = resource.object or ""
        if key and not key.endswith("/"):
            url = object_url(endpoint, resource.bucket, key, resource.template)
            await transport.guard.check(url)
            probe = await transport.probe(url, self._sign("HEAD", url))
            return Located(
                [
                    SourceObject(
                        url=url,
                        identifier=f"s3://{host}/{resource.bucket}/{key}",
                        size=probe.size,
                        checksum=probe.checksum,
                        etag=probe.etag,
                    )
                ]
            )
        return Located(await self._list(endpoint, resource, key, transport), directory=True)

    async def _list(
        self, endpoint: str, resource: S3DataResource, prefix: str, transport: Transport
    ) -> list[SourceObject]:
        bucket = str(resource.bucket)
        host = urlsplit(endpoint).netloc
        base = object_url(endpoint, bucket, "", resource.template).rstrip("/")
        objects: list[SourceObject] = []
        token: str | None = None
        while True:
            params = {"list-type": "2", "prefix": prefix}
            if token:
                params["continuation-token"] = token
            url = f"{base}?{urlencode(sorted(params.items()), quote_via=quote)}"
            await transport.guard.check(url)
            items, token = parse_listing(await transport.get_text(url, self._sign("GET", url)))
            for key, size, etag in items:
                url_of = object_url(endpoint, bucket, key, resource.template)
                objects.append(
                    SourceObject(
                        url=url_of,
                        identifier=f"s3://{host}/{bucket}/{key}",
                        size=size,
                        checksum=f"md5:{etag_md5(etag)}" if etag_md5(etag) else None,
                        etag=etag or None,
                        path=object_path(key[len(prefix) :]),
                    )
                )
                if len(objects) > self.max_objects:
                    raise StagingError(
                        f"s3://{host}/{bucket}/{prefix} holds more than {self.max_objects} "
                        "objects: name one object or a smaller prefix"
                    )
            if not token:
                break
        if not objects:
            raise StagingError(f"s3://{host}/{bucket}/{prefix} holds no objects")
        return objects
