"""Builders and request assembly: pure, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import eb_sdk as eb
from eb_sdk.builders import parse_count, parse_size
from eb_sdk.model import (
    DockerContainer,
    ExecutionRequest,
    IvoaDataResource,
    JupyterNotebook,
    S3DataResource,
    SimpleDataResource,
)


@pytest.mark.parametrize(
    ("text", "lo", "hi"),
    [
        ("8GiB", 8, 8),
        ("2-8GiB", 2, 8),
        ("2GiB-8GiB", 2, 8),
        ("2 to 8 GiB", 2, 8),
        (">=4GiB", 4, None),
        ("4GiB+", 4, None),
        ("up to 16GiB", None, 16),
        ("1TiB", 1024, 1024),
        ("512MiB", 1, 1),
        ("8GB", 8, 8),  # 7.45 GiB, rounded up: never ask for less than written
        ((2, 8), 2, 8),
        ((None, 8), None, 8),
        (16, 16, 16),
    ],
)
def test_sizes_read_naturally(text: object, lo: int | None, hi: int | None) -> None:
    size = parse_size(text)  # type: ignore[arg-type]
    assert (size.min, size.max) == (lo, hi)


@pytest.mark.parametrize("bad", ["8 parsecs", "lots", "8-2GiB", (4, 1), True])
def test_bad_sizes_are_invalid_requests(bad: object) -> None:
    with pytest.raises(eb.InvalidRequest) as info:
        parse_size(bad, "memory")  # type: ignore[arg-type]
    assert "memory" in str(info.value)


def test_counts() -> None:
    assert (parse_count("1-4").min, parse_count("1-4").max) == (1, 4)
    assert (parse_count("2+").min, parse_count("2+").max) == (2, None)
    with pytest.raises(eb.InvalidRequest, match="no unit"):
        parse_count("4GiB", "cores")


def test_compute_with_gpus() -> None:
    compute = eb.Compute(cores=(1, 4), memory="2-8GiB", gpus=1, gpu_model="A100")
    wire = compute.dump()
    assert wire["kind"].endswith("/compute/simple-compute-resource.yaml")
    assert wire["cores"] == {"min": 1, "max": 4} and wire["memory"] == {"min": 2, "max": 8}
    assert wire["jeb:accelerators"] == [
        {"type": "GPU", "model": "A100", "count": {"min": 1, "max": 1}}
    ]
    with pytest.raises(eb.InvalidRequest, match="gpus"):
        eb.Compute(gpu_model="A100")


def test_executables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    nb = eb.Notebook("analysis.ipynb", parameters={"n": 10}, kernel="python3")
    assert isinstance(nb, JupyterNotebook)
    assert nb.location == str(tmp_path / "analysis.ipynb")  # absolute: the broker's cwd differs
    assert nb.dump()["jeb:parameters"] == {"n": 10}
    assert eb.Notebook("https://example.org/a.ipynb").location == "https://example.org/a.ipynb"
    box = eb.Container(
        "ghcr.io/org/img:1", digest="sha256:abc", command=["run"], env={"A": "1"}, ports=[8888]
    )
    assert isinstance(box, DockerContainer)
    wire = box.dump()
    assert wire["image"] == {"locations": ["ghcr.io/org/img:1"], "digest": "sha256:abc"}
    assert wire["network"]["ports"][0]["internal"] == {"port": 8888}
    assert eb.Singularity("docker://alpine").location == "docker://alpine"
    server = eb.JupyterServer(tmp_path, notebook="a.ipynb").dump()
    assert server["kind"] == "urn:jeb:v1:executable:jupyter-server"
    assert server["root_dir"] == str(tmp_path)
    with pytest.raises(eb.InvalidRequest, match="port"):
        eb.Container("x", ports=["http"])


def test_data_and_storage() -> None:
    assert isinstance(eb.Data("https://example.org/f.fits"), SimpleDataResource)
    ivoa = eb.Data("ivo://org.example/obs?1")
    assert isinstance(ivoa, IvoaDataResource) and ivoa.ivoa and ivoa.ivoa.ivoid
    s3 = eb.Data("s3://bucket/path/key.fits", endpoint="https://s3.example.org")
    assert isinstance(s3, S3DataResource)
    assert (s3.bucket, s3.object, s3.endpoint) == (
        "bucket",
        "path/key.fits",
        "https://s3.example.org",
    )
    with pytest.raises(eb.InvalidRequest):
        eb.Data("just words")
    assert eb.Storage("10GiB").dump()["size"] == {"min": 10, "max": 10}


def test_request_with_phrases() -> None:
    now = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday
    req = eb.build_request(
        "analysis.ipynb",
        compute=eb.Compute(cores=2),
        duration="2h",
        start="Mon-Wed 09:00-12:00",
        tz="UTC",
        now=now,
        data="ivo://org/obs",
    )
    assert isinstance(req, ExecutionRequest)
    wire = req.dump()
    requested = wire["schedule"]["requested"]
    assert requested["duration"] == "PT2H"
    assert requested["start"] == "2026-11-23T09:00:00Z/PT3H"  # the first window, for v1.0
    assert requested["jeb:starts"] == [
        "2026-11-23T09:00:00Z/PT3H",
        "2026-11-24T09:00:00Z/PT3H",
        "2026-11-25T09:00:00Z/PT3H",
    ]
    one = eb.build_request("a.ipynb", start="within 10 min", now=now, tz="UTC").dump()
    assert one["schedule"]["requested"] == {"start": "2026-11-23T08:00:00Z/PT10M"}
    exact = eb.build_request("a.ipynb", start=now + timedelta(hours=1)).dump()
    assert exact["schedule"]["requested"]["start"] == "2026-11-23T09:00:00Z/PT0S"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"start": "when pigs fly"}, "Phrases that work"),
        ({"duration": "a while"}, "forms that work"),
        ({"duration": "-1h"}, "duration"),
    ],
)
def test_bad_phrases_fail_before_http(kwargs: dict[str, str], needle: str) -> None:
    with pytest.raises(eb.InvalidRequest) as info:
        eb.build_request("a.ipynb", **kwargs)  # type: ignore[arg-type]
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)  # also a ValueError, like the phrase error


def test_unknown_executable_text() -> None:
    with pytest.raises(eb.InvalidRequest, match=r"eb\.Notebook"):
        eb.build_request("python analysis.py")


def test_virtual_machine(tmp_path: Path) -> None:
    (tmp_path / "id.pub").write_text("ssh-ed25519 AAAAC3Nza alice@lab\n")
    (tmp_path / "init.yaml").write_text("#cloud-config\nruncmd: [[docker, compose, up, -d]]\n")
    vm = eb.VirtualMachine(
        "ubuntu-24.04",
        flavor="g1.*",
        user_data=tmp_path / "init.yaml",
        ssh_key=tmp_path / "id.pub",
        http_port=8080,
        http_path="/app",
    ).dump()
    assert vm == {
        "kind": "urn:jeb:v1:executable:virtual-machine",
        "image": "ubuntu-24.04",
        "flavor": "g1.*",
        "user_data": "#cloud-config\nruncmd: [[docker, compose, up, -d]]\n",
        "ssh_public_key": "ssh-ed25519 AAAAC3Nza alice@lab\n",
        "http_port": 8080,
        "http_path": "/app",
    }
    inline = eb.VirtualMachine(user_data="#!/bin/sh\necho hi\n", ssh_key="ssh-rsa AAAA x")
    assert inline.user_data == "#!/bin/sh\necho hi\n" and inline.ssh_public_key == "ssh-rsa AAAA x"
    request = eb.build_request(inline, compute=eb.Compute(cores=2))
    assert request.executable is not None and request.executable.kind.endswith("virtual-machine")
    with pytest.raises(eb.InvalidRequest, match="http_port"):
        eb.VirtualMachine(http_port=70000)
    with pytest.raises(eb.InvalidRequest, match="neither the content itself nor a readable file"):
        eb.VirtualMachine(ssh_key=tmp_path / "missing.pub")
