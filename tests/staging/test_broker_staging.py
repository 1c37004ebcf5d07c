"""Data staging through real brokers: offers that include transfer time, staged data in the
session, failures, the cache, ``ivo://`` resolution, and a crash in the middle of a transfer.

One broker (local platform) and one throttled data server (1 MiB/s per connection) serve the
module; each test uses files of its own, and the transfer history grows as the tests run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from eb_sdk.model import RucioDataResource
from eb_sdk.model.times import parse_duration
from tests.broker.helpers import accept
from tests.conftest import BrokerFactory
from tests.fixtures.data_server import DataServer
from tests.fixtures.notebooks import write_notebook
from tests.fixtures.services import REPO_ROOT, BrokerProcess, free_port
from tests.staging.helpers import data_request, wait_final

MIB = 1024 * 1024


def broker_args(data: DataServer, base: Path) -> tuple[str, ...]:
    mapping = base / "ivo-mapping.yaml"
    mapping.write_text(
        f"ivo://mapped.example/obs?one: {data.url}/files/ivo-mapped.bin\n"
        f'"ivo://mapped.example/survey?*": "{data.url}/files/{{query}}"\n'
    )
    services = json.dumps({"datalink.example/*": f"{data.url}/datalink?ID={{ivoid}}"})
    return (
        "--LocalPlatform.cores=4",
        "--LocalPlatform.memory_gib=8",
        "--LocalPlatform.startup_preparation=1",
        '--DataStaging.trusted_hosts=["127.0.0.1"]',
        "--DataStaging.retries=1",
        "--DataStaging.retry_delay=0.2",
        "--Predictions.min_runs=2",
        '--EBBroker.admin_users=["carol"]',
        '--IvoaStager.resolvers=["mapping","datalink","tests.fixtures.data_server:TestResolver"]',
        f"--MappingResolver.path={mapping}",
        f"--DataLinkResolver.services={services}",
    )


@pytest.fixture(scope="module")
def data_server() -> Iterator[DataServer]:
    server = DataServer(Path(tempfile.mkdtemp(prefix="eb-data-")), rate=MIB).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def staging_broker(data_server: DataServer) -> Iterator[BrokerProcess]:
    base = Path(tempfile.mkdtemp(prefix="eb-staging-"))
    broker = BrokerProcess(
        dir=base,
        port=free_port(),
        db_url=f"sqlite:///{base / 'ledger.sqlite'}",
        args=broker_args(data_server, base),
        env={"PYTHONPATH": REPO_ROOT, "EB_TEST_DATA_URL": f"{data_server.url}/files"},
    ).start()
    yield broker
    broker.stop()


def reader(path: Path, names: dict[str, str]) -> Path:
    """A notebook that checks each staged resource's sha256 (via EB_DATA_<NAME>)."""
    checks = "\n".join(
        f"assert hashlib.sha256(open(os.environ[{env!r}], 'rb').read()).hexdigest() == "
        f"{digest!r}, {env!r}"
        for env, digest in names.items()
    )
    return write_notebook(path, f"import hashlib, os\n{checks}\nprint('data ok')")


def sha(data_server: DataServer, name: str) -> str:
    return hashlib.sha256((data_server.root / name).read_bytes()).hexdigest()


def offer_of(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/requests", json=body).json()
    assert answer["result"] == "YES", answer
    offer: dict[str, Any] = answer["offers"][0]
    return offer


def run(client: httpx.Client, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Book the first offer and wait for the end: (the offer, the finished session)."""
    offer = offer_of(client, body)
    assert accept(client, offer["meta"]["url"]).status_code == 200
    return offer, wait_final(client, offer["meta"]["url"])


def texts(session: dict[str, Any]) -> str:
    return " | ".join(m.get("message", "") for m in session["meta"].get("messages") or [])


def test_staged_data_appears_at_the_mount_paths(
    staging_broker: BrokerProcess, data_server: DataServer, tmp_path: Path
) -> None:
    url = data_server.file("mounted.bin", 512 * 1024)
    copy_url = data_server.file("copied.bin", 256 * 1024)
    notebook = reader(
        tmp_path / "read.ipynb",
        {
            "EB_DATA_CUBE": sha(data_server, "mounted.bin"),
            "EB_DATA_COPY": sha(data_server, "copied.bin"),
        },
    )
    body = data_request(
        str(notebook),
        {"cube": url, "copy": copy_url},
        mounts={
            "cube": ("/data/cube.fits", "READONLY"),
            "copy": ("/scratch/copy.bin", "READWRITE"),
        },
        duration="PT10M",
    )
    with staging_broker.client() as c:
        _, session = run(c, body)
        assert session["phase"] == "COMPLETED", texts(session)
        staging = session["jeb:staging"]
        assert staging["state"] == "staged" and staging["moved_bytes"] == 768 * 1024
        assert "the data is staged: 2 objects" in texts(session)
        session_dir = Path(session["jeb:outputs"]["log"]).parent
        cube = session_dir / "data" / "cube.fits"
        copy = session_dir / "scratch" / "copy.bin"
        # READONLY: a link to the read-only cache entry; READWRITE: a private copy
        assert (cube.is_symlink() and not os.access(cube.resolve(), os.W_OK)) or os.geteuid() == 0
        assert cube.resolve().parent.parent.name == "objects"
        assert oct(cube.resolve().stat().st_mode & 0o777) == "0o444"
        assert (
            not copy.is_symlink()
            and copy.read_bytes() == (data_server.root / "copied.bin").read_bytes()
        )
        # the archive says what moved, from where, in how long
        record = c.get("/archive", params={"limit": 1000}).json()["items"]
        mine = next(r for r in record if r["uuid"] == session["meta"]["uuid"])
        assert mine["data_bytes"] == 768 * 1024 and mine["data_objects"] == 2
        assert mine["data_sources"] == f"127.0.0.1:{data_server.port}"
        assert mine["data_seconds"] > 0.5  # 768 KiB at 1 MiB/s
        assert {d["source"] for d in mine["data"]} == {url, copy_url}


def test_transfer_time_estimates_learn_the_bandwidth(
    staging_broker: BrokerProcess, data_server: DataServer, tmp_path: Path
) -> None:
    """After a few transfers the offered staging time is within ±30 % of the real one."""
    files = {f"learn{i}": data_server.file(f"learn{i}.bin", 1536 * 1024) for i in range(3)}
    notebook = write_notebook(tmp_path / "noop.ipynb", "print('ok')")
    with staging_broker.client() as c:
        _, first = run(c, data_request(str(notebook), files, duration="PT10M"))
        assert first["phase"] == "COMPLETED", texts(first)
        url = data_server.file("learn-big.bin", 3 * MIB)
        offer, session = run(c, data_request(str(notebook), {"big": url}, duration="PT10M"))
        assert session["phase"] == "COMPLETED", texts(session)
        predicted = offer["jeb:staging"]["seconds"]
        basis = offer["jeb:staging"]["objects"][0]["basis"]
        assert "measured over" in basis
        record = c.get("/archive", params={"limit": 1000}).json()["items"]
        actual = next(r for r in record if r["uuid"] == session["meta"]["uuid"])["data_seconds"]
    assert actual > 2.0  # 3 MiB at 1 MiB/s
    assert abs(predicted - actual) <= 0.3 * actual, (predicted, actual)


def test_cached_data_is_not_fetched_again_and_starts_earlier(
    staging_broker: BrokerProcess, data_server: DataServer, tmp_path: Path
) -> None:
    url = data_server.file("cached.bin", 2 * MIB)
    notebook = reader(tmp_path / "read.ipynb", {"EB_DATA_INPUT": sha(data_server, "cached.bin")})
    body = data_request(str(notebook), {"input": url}, duration="PT10M")
    with staging_broker.client() as c:
        first, session = run(c, body)
        assert session["phase"] == "COMPLETED", texts(session)
        again = c.post("/requests", json=body).json()
        second = again["offers"][0]
        for offer in again["offers"]:
            accept(c, offer["meta"]["url"], "REJECTED")
    lead = [
        datetime.fromisoformat(
            o["schedule"]["available"]["start"].split("/")[0].replace("Z", "+00:00")
        )
        - datetime.fromisoformat(o["meta"]["created"].replace("Z", "+00:00"))
        for o in (first, second)
    ]
    assert second["jeb:staging"]["objects"][0]["cached"] is True
    assert second["jeb:staging"]["seconds"] == 0
    assert first["jeb:staging"]["seconds"] >= 1
    assert lead[1] < lead[0]  # the broker holding the data offers an earlier start
    assert "already staged here" in " ".join(m["message"] for m in again["meta"]["messages"])
    assert data_server.gets["/files/cached.bin"] == 1


@pytest.mark.parametrize("mode", ["drop", "fail500"])
def test_a_failed_transfer_fails_the_session_and_leaves_nothing(
    mode: str, staging_broker: BrokerProcess, data_server: DataServer, tmp_path: Path
) -> None:
    name = f"broken-{mode}.bin"
    data_server.file(name, 1 * MIB)
    url = f"{data_server.url}/{mode}/{name}"
    notebook = write_notebook(tmp_path / "never.ipynb", "open('ran', 'w').write('ran')")
    with staging_broker.client() as c:
        _, session = run(c, data_request(str(notebook), {"input": url}, duration="PT10M"))
    assert session["phase"] == "FAILED"
    reason = texts(session)
    assert "staging the data failed" in reason
    assert (
        ("broke after" in reason or "ended after" in reason)
        if mode == "drop"
        else "HTTP 500" in reason
    )
    assert data_server.gets[f"/{mode}/{name}"] == 2  # the first try and one retry
    assert session["jeb:staging"]["state"] == "failed"
    work = staging_broker.dir / "work"
    session_dir = work / session["meta"]["uuid"]
    assert not (session_dir / "data").exists()  # nothing linked into the session
    assert not (tmp_path / "ran").exists()  # and the notebook never ran
    cache = work / ".eb-staging"
    published = [
        json.loads((e / "meta.json").read_text())["source"] for e in (cache / "objects").iterdir()
    ]
    assert url not in published
    assert not [p for p in (cache / "parts").iterdir() if p.stat().st_size]  # no partial file kept


def test_ivo_identifiers_are_resolved(
    staging_broker: BrokerProcess, data_server: DataServer, tmp_path: Path
) -> None:
    data_server.file("ivo-plugin.bin", 64 * 1024)
    data_server.file("ivo-mapped.bin", 32 * 1024)
    data_server.file("survey-7.bin", 16 * 1024)
    data_server.file("ivo-linked.bin", 8 * 1024)
    data_server.datalink["ivo://datalink.example/obs?9"] = "ivo-linked.bin"
    ivoids = {
        "plugin": "ivo://test.example/data?ivo-plugin.bin",  # the site's own resolver class
        "mapped": "ivo://mapped.example/obs?one",  # an exact mapping-file entry
        "pattern": "ivo://mapped.example/survey?survey-7.bin",  # a mapping-file pattern
        "linked": "ivo://datalink.example/obs?9",  # the authority's DataLink service
    }
    notebook = reader(
        tmp_path / "ivo.ipynb",
        {
            "EB_DATA_PLUGIN": sha(data_server, "ivo-plugin.bin"),
            "EB_DATA_MAPPED": sha(data_server, "ivo-mapped.bin"),
            "EB_DATA_PATTERN": sha(data_server, "survey-7.bin"),
            "EB_DATA_LINKED": sha(data_server, "ivo-linked.bin"),
        },
    )
    body = data_request(
        str(notebook), {k: {"ivoid": v} for k, v in ivoids.items()}, duration="PT10M"
    )
    with staging_broker.client() as c:
        offer, session = run(c, body)
        assert session["phase"] == "COMPLETED", texts(session)
        sizes = {o["resource"]: o["size"] for o in offer["jeb:staging"]["objects"]}
        assert sizes == {"plugin": 65536, "mapped": 32768, "pattern": 16384, "linked": 8192}
        unknown = c.post(
            "/requests",
            json=data_request(str(notebook), {"x": {"ivoid": "ivo://nowhere.example/x?1"}}),
        ).json()
        missing = c.post(
            "/requests",
            json=data_request(str(notebook), {"x": {"ivoid": "ivo://datalink.example/obs?404"}}),
        ).json()
    assert unknown["result"] == "NO"
    assert unknown["meta"]["messages"][0]["kind"] == "urn:data-unavailable"
    assert "cannot resolve ivo://nowhere.example/x?1" in unknown["meta"]["messages"][0]["message"]
    assert missing["result"] == "NO"
    assert "NotFoundFault" in missing["meta"]["messages"][0]["message"]


def test_data_that_cannot_be_staged_gets_no(
    staging_broker: BrokerProcess, data_server: DataServer
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/x.bin"
    rucio = {"kind": RucioDataResource.KIND, "rucio": {"scope": "s", "object": "o"}}
    cases: dict[str, tuple[str | dict[str, Any], str, str]] = {
        "rucio": (rucio, "urn:not-supported", "cannot stage rucio-data-resource data"),
        "unreachable": (closed, "urn:data-unavailable", "cannot reach"),
        "missing": (
            f"{data_server.url}/files/nothing.bin",
            "urn:data-unavailable",
            "does not exist (127.0.0.1",
        ),
        "internal": ("http://localhost:9/x", "urn:data-unavailable", "internal address"),
        "not-http": ("ftp://example.org/x", "urn:data-unavailable", "not an http"),
    }
    with staging_broker.client() as c:
        for case, (value, kind, text) in cases.items():
            started = time.monotonic()
            answer = c.post("/requests", json=data_request("/x.ipynb", {"in": value})).json()
            assert time.monotonic() - started < 15, case  # the request path stays quick
            assert answer["result"] == "NO", case
            first = answer["meta"]["messages"][0]
            assert first["kind"] == kind and text in first["message"], (case, first)
        outside = c.post(
            "/requests",
            json=data_request(
                "/x.ipynb",
                {"in": f"{data_server.url}/files/x"},
                mounts={"in": ("../etc/x", "READONLY")},
            ),
        ).json()
        assert outside["result"] == "NO"
        assert "must not contain '..'" in outside["meta"]["messages"][0]["message"]
        capabilities = c.get("/capabilities").json()
    assert "jeb:staging" in capabilities["extensions"]
    assert len(capabilities["jeb:staging"]["kinds"]) == 3


def test_a_crash_during_staging_resumes_and_storage_is_counted(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    """kill -9 in the middle of a transfer: after the restart it resumes (a Range request)
    and the session runs. The cache it leaves counts against the storage capacity."""
    slow = DataServer(tmp_path / "slow", rate=MIB).start()
    try:
        url = slow.file("slow.bin", 4 * MIB)
        notebook = reader(tmp_path / "read.ipynb", {"EB_DATA_INPUT": sha(slow, "slow.bin")})
        broker = broker_factory(
            "--LocalPlatform.cores=2",
            "--LocalPlatform.memory_gib=4",
            "--LocalPlatform.storage_gib=2",
            "--LocalPlatform.startup_preparation=1",
            '--DataStaging.trusted_hosts=["127.0.0.1"]',
        )
        with broker.client() as c:
            offer = offer_of(c, data_request(str(notebook), {"input": url}, duration="PT10M"))
            assert offer["compute"]["kind"]
            assert accept(c, offer["meta"]["url"]).status_code == 200
            deadline = time.monotonic() + 30
            while c.get(offer["meta"]["url"]).json()["jeb:staging"]["state"] != "staging":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            time.sleep(1.5)
        broker.kill9()
        broker.start()
        with broker.client() as c:
            session = wait_final(c, offer["meta"]["url"])
            assert session["phase"] == "COMPLETED", texts(session)
            assert any(r.startswith("bytes=") and r != "bytes=0-" for r in slow.ranges)
            # the cache keeps 4 MiB (1 GiB, rounded up) of the 2 GiB: 2 GiB no longer fit
            big = data_request(str(notebook), {}, duration="PT10M")
            big["storage"] = [
                {
                    "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/"
                    "storage/simple-storage-resource.yaml",
                    "size": {"min": 2},
                }
            ]
            answer = c.post("/requests", json=big).json()
            assert answer["result"] == "NO", answer
            big["storage"][0]["size"] = {"min": 1}
            assert c.post("/requests", json=big).json()["result"] == "YES"
    finally:
        slow.stop()


def test_the_start_waits_for_the_data(
    staging_broker: BrokerProcess, data_server: DataServer, tmp_path: Path
) -> None:
    """The offered start leaves room for the transfer: the run starts after the data is in."""
    url = data_server.file("wait.bin", 2 * MIB)
    notebook = write_notebook(tmp_path / "noop.ipynb", "print('ok')")
    with staging_broker.client() as c:
        offer, session = run(c, data_request(str(notebook), {"input": url}, duration="PT10M"))
        assert session["phase"] == "COMPLETED", texts(session)
        item = next(
            r
            for r in c.get("/archive", params={"limit": 1000}).json()["items"]
            if r["uuid"] == session["meta"]["uuid"]
        )
    finished = datetime.fromisoformat(session["jeb:staging"]["finished"])
    running = datetime.fromisoformat(item["running"].replace("Z", "+00:00"))
    assert running >= finished
    # the preparation offered = the platform's start-up (1 s) + the predicted transfer time
    preparing = parse_duration(offer["schedule"]["preparing"]["duration"])
    assert preparing == timedelta(seconds=1 + math.ceil(offer["jeb:staging"]["seconds"]))


def test_cancelling_during_staging_stops_the_transfer(
    staging_broker: BrokerProcess, data_server: DataServer, tmp_path: Path
) -> None:
    url = data_server.file("cancelled.bin", 6 * MIB)
    notebook = write_notebook(tmp_path / "never.ipynb", "open('ran', 'w').write('ran')")
    with staging_broker.client() as c:
        offer = offer_of(c, data_request(str(notebook), {"input": url}, duration="PT10M"))
        assert accept(c, offer["meta"]["url"]).status_code == 200
        deadline = time.monotonic() + 30
        while c.get(offer["meta"]["url"]).json()["jeb:staging"]["state"] != "staging":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert accept(c, offer["meta"]["url"], "CANCELLED").status_code == 200
        session = wait_final(c, offer["meta"]["url"], timeout=30)
    assert session["phase"] == "CANCELLED"
    assert session["jeb:staging"]["state"] == "cancelled"
    cache = staging_broker.dir / "work" / ".eb-staging" / "objects"
    assert url not in [(e / "meta.json").read_text() for e in cache.iterdir()]
    assert not (tmp_path / "ran").exists()
