"""The staging service against real servers, without a broker: S3 (moto's server), checksums,
the cache's retention, and what the local platform makes of staged data."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from eb_broker.prediction import Predictions
from eb_broker.staging import DataStaging
from eb_broker.staging.mounts import link_staged_data
from eb_sdk.model import ExecutionRequest
from tests.fixtures.data_server import DataServer
from tests.fixtures.services import free_port, wait_http
from tests.staging.helpers import data_request

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """moto's S3 server (a real HTTP S3 implementation) with a public and a private object
    (in a bucket of its own) and a public prefix of three objects."""
    import boto3

    port = free_port()
    log = open(Path(tempfile.mkdtemp(prefix="eb-s3-")) / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_http(endpoint + "/moto-api/", timeout=60, proc=proc)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="survey", ACL="public-read")
        client.put_object(Bucket="survey", Key="tiles/a.fits", Body=b"a" * 3000, ACL="public-read")
        client.put_object(Bucket="survey", Key="tiles/b.fits", Body=b"b" * 2000, ACL="public-read")
        client.put_object(
            Bucket="survey", Key="tiles/sub/c.fits", Body=b"c" * 1000, ACL="public-read"
        )
        client.create_bucket(Bucket="restricted")
        client.put_object(Bucket="restricted", Key="private.bin", Body=b"p" * 500)
        yield {"endpoint": endpoint, "client": client}
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def data_server(tmp_path: Path) -> Iterator[DataServer]:
    server = DataServer(tmp_path / "files", rate=8 * MIB).start()
    yield server
    server.stop()


def make_staging(root: Path, **config: Any) -> DataStaging:
    from traitlets.config import Config

    cfg = Config()
    cfg.DataStaging.trusted_hosts = ["127.0.0.1"]
    cfg.DataStaging.retries = 0
    for key, value in config.items():
        section, _, name = key.partition("__")
        setattr(getattr(cfg, section), name, value)
    return DataStaging(root=str(root), predictions=Predictions(), config=cfg)


@pytest.fixture
async def staging(tmp_path: Path) -> AsyncIterator[DataStaging]:
    service = make_staging(tmp_path / "cache")
    yield service
    await service.close()


def read(path: str) -> bytes:
    return Path(path).read_bytes()


def request(data: dict[str, Any], **kwargs: Any) -> ExecutionRequest:
    return ExecutionRequest.model_validate(data_request("/x.ipynb", data, **kwargs))


async def test_s3_objects_and_prefixes(
    s3: dict[str, Any], staging: DataStaging, tmp_path: Path
) -> None:
    endpoint = s3["endpoint"]
    plan = await staging.plan(
        request(
            {
                "tile": {"endpoint": endpoint, "bucket": "survey", "object": "tiles/a.fits"},
                "tiles": {"endpoint": endpoint, "bucket": "survey", "object": "tiles/"},
            }
        )
    )
    assert plan.problems == [], plan.problems
    assert plan.record is not None
    tile, tiles = plan.record["resources"]
    assert tile["objects"][0]["size"] == 3000
    assert tile["objects"][0]["checksum"].startswith("md5:")  # S3's single-part ETag
    assert tiles["directory"] is True
    assert sorted(o["path"] for o in tiles["objects"]) == ["a.fits", "b.fits", "sub/c.fits"]
    outcome = await staging.stage(plan.record)
    assert outcome.record["state"] == "staged", outcome.record.get("error")
    # a.fits is one cache entry, shared by both resources (same checksum)
    assert len(set(outcome.record["staged"].values())) == 3
    session = tmp_path / "session"
    env = link_staged_data(DataStaging.staged_data(outcome.record), session)
    assert read(env["EB_DATA_TILE"]) == b"a" * 3000
    assert read(env["EB_DATA_TILES"] + "/sub/c.fits") == b"c" * 1000
    assert env["EB_MOUNT_ROOT"] == str(session.resolve())


async def test_s3_private_objects_need_the_sites_keys(s3: dict[str, Any], tmp_path: Path) -> None:
    resource = {"endpoint": s3["endpoint"], "bucket": "restricted", "object": "private.bin"}
    anonymous = make_staging(tmp_path / "a")
    signed = make_staging(
        tmp_path / "b",
        S3Stager__credentials={"127.0.0.1:*": {"access_key": "testing", "secret_key": "testing"}},
    )
    try:
        refused = await anonymous.plan(request({"p": resource}))
        assert "may not read" in str(refused.problems[0]) and "HTTP 403" in str(refused.problems[0])
        plan = await signed.plan(request({"p": resource}))
        assert plan.record is not None, plan.problems
        outcome = await signed.stage(plan.record)
        assert outcome.record["state"] == "staged", outcome.record.get("error")
        assert read(next(iter(outcome.record["staged"].values()))) == b"p" * 500
    finally:
        await anonymous.close()
        await signed.close()


async def test_a_checksum_mismatch_publishes_nothing(
    data_server: DataServer, staging: DataStaging
) -> None:
    url = data_server.file("changing.bin", 200_000)
    data_server.digests.add("changing.bin")
    plan = await staging.plan(request({"x": url}))
    assert plan.record is not None
    assert plan.record["resources"][0]["objects"][0]["checksum"].startswith("sha256:")
    data_server.file("changing.bin", 200_000, seed=1)  # the data changes before the transfer
    outcome = await staging.stage(plan.record)
    assert outcome.record["state"] == "failed"
    assert "checksum" in outcome.record["error"] and "does not match" in outcome.record["error"]
    assert staging.cache is not None
    assert list(staging.cache.objects.iterdir()) == []
    assert [p for p in staging.cache.parts.iterdir() if p.is_file()] == []
    assert not outcome.transfers[-1].ok


async def test_the_cache_keeps_data_for_its_retention(
    data_server: DataServer, tmp_path: Path
) -> None:
    keep = make_staging(tmp_path / "keep", DataStaging__cache_retention_hours=1.0)
    drop = make_staging(tmp_path / "drop", DataStaging__cache_retention_hours=0.0)
    url = data_server.file("kept.bin", 300_000)
    try:
        for service in (keep, drop):
            plan = await service.plan(request({"x": url}))
            assert plan.record is not None
            record = (await service.stage(plan.record)).record
            service.housekeeping([record])  # in use: kept, not counted as retained
            assert service.cache is not None and len(service.cache.entries()) == 1
            assert service.retained_bytes == 0
            service.release(record)
            service.housekeeping([])
        assert keep.cache is not None and drop.cache is not None
        assert len(keep.cache.entries()) == 1 and keep.retained_bytes == 300_000
        assert keep.retained_gib == 1  # counted against storage capacity, rounded up
        assert drop.cache.entries() == [] and drop.retained_bytes == 0
        # a new plan finds the kept copy: nothing to fetch, no time
        again = await keep.plan(request({"x": url}))
        assert again.record is not None and again.seconds == 0
        assert again.record["resources"][0]["objects"][0]["cached"] is True
    finally:
        await keep.close()
        await drop.close()


async def test_sources_are_checked_before_fetching(tmp_path: Path) -> None:
    strict = make_staging(tmp_path / "s", DataStaging__allowed_hosts=["data.example.org"])
    try:
        plan = await strict.plan(request({"x": "http://127.0.0.1:9/x"}))
        assert "not allowed here" in str(plan.problems[0])
    finally:
        await strict.close()


def test_readwrite_mounts_are_private_copies(tmp_path: Path) -> None:
    from eb_broker.platforms.base import StagedData

    cached = tmp_path / "cache.bin"
    cached.write_bytes(b"data")
    cached.chmod(0o444)
    session = tmp_path / "s"
    data = (StagedData("x", "out/x.bin", False, "EB_DATA_X", False, (("", str(cached)),)),)
    env = link_staged_data(data, session)
    target = Path(env["EB_DATA_X"])
    assert not target.is_symlink() and target.read_bytes() == b"data"
    target.write_bytes(b"changed")  # the session may change its copy...
    assert cached.read_bytes() == b"data"  # ...never the cache
    assert link_staged_data(data, session) == env  # idempotent (a launch after a restart)
    assert os.access(target, os.W_OK)
