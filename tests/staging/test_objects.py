"""The pure parts of data staging, prediction and the archive (no I/O, no servers)."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from eb_broker.prediction import RunTime, executable_key, quantile
from eb_broker.staging.ivoa import expand, parse_datalink
from eb_broker.staging.objects import (
    StagingError,
    cache_key,
    checksum_from_headers,
    clean_mount_path,
    env_name,
    etag_md5,
    human_bytes,
    human_seconds,
    is_internal_address,
    mount_for,
    normalize_checksum,
    source_host,
)
from eb_broker.staging.s3 import object_url, parse_listing, sigv4_headers
from eb_broker.translate import staging_to_wire, with_duration
from eb_sdk.model import ExecutionRequest, SimpleDataResource
from tests.fixtures.notebooks import write_notebook
from tests.staging.helpers import data_request


def test_checksums_from_headers() -> None:
    data = b"hello"
    sha = hashlib.sha256(data)
    md5 = hashlib.md5(data)
    b64 = base64.b64encode(sha.digest()).decode()
    assert checksum_from_headers({"Repr-Digest": f"sha-256=:{b64}:"}) == f"sha256:{sha.hexdigest()}"
    assert checksum_from_headers({"Digest": f"SHA-256={b64}"}) == f"sha256:{sha.hexdigest()}"
    assert checksum_from_headers({"ETag": f'"{md5.hexdigest()}"'}) == f"md5:{md5.hexdigest()}"
    # sha-256 wins over md5; multi-part ETags and weak ETags are not checksums
    both = {"ETag": f'"{md5.hexdigest()}"', "x-amz-checksum-sha256": b64}
    assert checksum_from_headers(both) == f"sha256:{sha.hexdigest()}"
    assert checksum_from_headers({"ETag": '"abc-2"'}) is None
    assert etag_md5(f'W/"{md5.hexdigest()}"') is None
    assert checksum_from_headers({"Repr-Digest": "sha-256=:not base64!:"}) is None


def test_normalize_checksum() -> None:
    hexdigest = hashlib.sha256(b"x").hexdigest()
    assert normalize_checksum(f"SHA256:{hexdigest.upper()}") == f"sha256:{hexdigest}"
    assert normalize_checksum(f"sha-256={hexdigest}") == f"sha256:{hexdigest}"
    assert normalize_checksum(hexdigest) == f"sha256:{hexdigest}"
    assert normalize_checksum("crc32:1234") is None
    assert normalize_checksum("sha256:1234") is None  # wrong length
    assert normalize_checksum("") is None


def test_cache_key_prefers_the_checksum() -> None:
    assert cache_key("http://a/x", "sha256:ab", None, 3) == "sha256:ab"
    one = cache_key("http://a/x", None, '"v1"', 3)
    assert one.startswith("id:") and one == cache_key("http://a/x", None, '"v1"', 3)
    assert one != cache_key("http://a/x", None, '"v2"', 3)  # a new version is a new entry


def test_hosts_and_internal_addresses() -> None:
    assert source_host("https://Data.Example.org/x") == "data.example.org"
    assert source_host("http://127.0.0.1:8080/x") == "127.0.0.1:8080"
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "0.0.0.0"):
        assert is_internal_address(address), address
    assert not is_internal_address("8.8.8.8")


def test_mount_paths() -> None:
    assert clean_mount_path("/data/input.fits") == "data/input.fits"
    assert clean_mount_path("./data//x") == "data/x"
    for bad in ("/", "../etc/passwd", "data/../../x"):
        with pytest.raises(StagingError):
            clean_mount_path(bad)
    assert env_name("input-cube 1") == "EB_DATA_INPUT_CUBE_1"


def test_mount_from_a_volume_mount_or_the_default() -> None:
    request = ExecutionRequest.model_validate(
        data_request("/x.ipynb", {"cube": "http://h/c.fits", "other": "http://h/o"})
    )
    mounted = ExecutionRequest.model_validate(
        data_request(
            "/x.ipynb",
            {"cube": "http://h/c.fits"},
            mounts={"cube": ("/data/cube.fits", "READWRITE")},
        )
    )
    data = request.data or []
    assert mount_for(request, data[0], 0).path == "data/cube"
    assert mount_for(request, data[1], 1).env == "EB_DATA_OTHER"
    mount = mount_for(mounted, (mounted.data or [])[0], 0)
    assert (mount.path, mount.readonly, mount.env) == ("data/cube.fits", False, "EB_DATA_CUBE")
    nameless = SimpleDataResource(location="http://h/x")
    assert mount_for(request, nameless, 4).path == "data/data-5"


def test_sigv4_matches_the_aws_example() -> None:
    """AWS's documented example (S3 API reference, 'GET Object' with a Range header)."""
    headers = sigv4_headers(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        now=datetime(2013, 5, 24, tzinfo=UTC),
        extra={"Range": "bytes=0-9"},
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_s3_urls_and_listings() -> None:
    assert object_url("http://s3:9000/", "b", "a dir/x.fits") == "http://s3:9000/b/a%20dir/x.fits"
    assert (
        object_url("https://s3.example.org", "b", "k", "https://{bucket}.s3.example.org/{object}")
        == "https://b.s3.example.org/k"
    )
    listing = (
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>true'
        "</IsTruncated><Contents><Key>p/a.bin</Key><Size>3</Size><ETag>&quot;x&quot;</ETag>"
        "</Contents><Contents><Key>p/</Key><Size>0</Size></Contents>"
        "<NextContinuationToken>t2</NextContinuationToken></ListBucketResult>"
    )
    assert parse_listing(listing) == ([("p/a.bin", 3, '"x"')], "t2")
    with pytest.raises(StagingError):
        parse_listing("not xml")


def test_datalink_tables_and_templates() -> None:
    table = (
        '<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>'
        '<FIELD name="ID"/><FIELD name="access_url"/><FIELD name="semantics"/>'
        "<DATA><TABLEDATA><TR><TD>ivo://a/b?c</TD><TD>http://h/c</TD><TD>#this</TD></TR>"
        "</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>"
    )
    assert parse_datalink(table) == [
        {"ID": "ivo://a/b?c", "access_url": "http://h/c", "semantics": "#this"}
    ]
    assert expand("http://h/{query}?id={ivoid}", "ivo://a/b?c/d") == (
        "http://h/c/d?id=ivo%3A%2F%2Fa%2Fb%3Fc%2Fd"
    )


def test_quantiles_and_run_time_wording() -> None:
    values = [60.0, 70.0, 80.0, 90.0, 600.0]
    assert quantile(values, 0.5) == 80.0
    assert quantile(values, 1.0) == 600.0
    assert quantile([5.0], 0.9) == 5.0
    runtime = RunTime(median=720.0, high=900.0, quantile=0.9, runs=37)
    assert runtime.message().startswith("expected run time 12 min, from 37 past runs")
    assert runtime.proposed(0.25, 60) == timedelta(minutes=19)  # 15 min + 25 %, whole minutes
    assert runtime.record(timedelta(minutes=19))["duration"] == "PT19M"
    assert human_seconds(45.2) == "46 s" and human_seconds(7200) == "2 h"
    assert human_bytes(4 * 1024 * 1024) == "4.0 MiB"


def test_executable_keys(tmp_path: object) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    first = write_notebook(base / "a.ipynb", "print(1)")
    same = write_notebook(base / "b.ipynb", "print(1)")
    other = write_notebook(base / "c.ipynb", "print(2)")

    def key(location: str) -> str | None:
        return executable_key(ExecutionRequest.model_validate(data_request(location, {})))

    assert key(str(first)) == key(str(same))  # the same content, wherever it is
    assert key(str(first)) != key(str(other))
    assert str(key(str(first))).startswith("notebook:sha256:")
    assert str(key("/nonexistent.ipynb")).startswith("notebook:url:")


def test_with_duration_and_staging_wire() -> None:
    request = ExecutionRequest.model_validate(data_request("/x.ipynb", {}))
    assert request.schedule is None or request.schedule.requested is None
    proposed = with_duration(request, timedelta(minutes=7))
    assert proposed.schedule and proposed.schedule.requested
    assert proposed.schedule.requested.duration == timedelta(minutes=7)
    wire = staging_to_wire(
        {
            "state": "planned",
            "estimate_s": 2.5,
            "fetch_bytes": 10,
            "cached_bytes": 0,
            "resources": [
                {"name": "x", "objects": [{"url": "http://h/x", "key": "k", "cached": False}]}
            ],
            "staged": {"k": "/secret/cache/path"},
        }
    )
    assert wire["seconds"] == 2.5 and wire["objects"][0]["source"] == "http://h/x"
    assert "/secret/cache/path" not in str(wire)  # no cache internals on the wire


def test_offers_show_staging_and_predictions() -> None:
    from eb_sdk._config import Broker
    from eb_sdk._wireview import WireView
    from eb_sdk.model import ScheduledExecutionSession

    wire = ScheduledExecutionSession.model_validate(
        {
            "jeb:staging": {"state": "planned", "seconds": 3.0, "bytes": 10},
            "jeb:prediction": {"runtime": {"median": "PT12M", "runs": 37}},
            "jeb:platform": {"name": "local"},
        }
    )
    view = WireView(wire, Broker(name="b", url="http://b"))
    assert view.staging is not None and view.staging["seconds"] == 3.0
    assert view.prediction is not None and view.prediction["runtime"]["runs"] == 37
    assert view.platform == "local"
    assert WireView(ScheduledExecutionSession(), view.broker).staging is None
