"""The wire model: every kind round-trips in JSON and YAML; legacy forms are read; unknown
kinds are kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from eb_sdk.model import (
    IVOA_KIND_BASE,
    DockerContainer,
    EnumValueUpdate,
    ExecutionRequest,
    JupyterNotebook,
    MessageItem,
    OfferSetResponse,
    Phase,
    ScheduledExecutionSession,
    SimpleComputeResource,
    UnknownExecutable,
    canonical_kind,
    dumps,
    loads,
)
from eb_sdk.model.kinds import registered_kinds
from tests.fixtures.services import REPO_ROOT

K = IVOA_KIND_BASE

FULL_REQUEST: dict[str, Any] = {
    "jeb:name": "full",
    "executable": {
        "kind": f"{K}/executable/docker-container.yaml",
        "meta": {"name": "step 001", "description": "a container"},
        "image": {
            "locations": ["ghcr.io/ivoa/oligia-webtop:ubuntu-2022.01.13"],
            "digest": "sha256:abc",
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        "privileged": False,
        "command": ["python", "-c", "print(1)"],
        "entrypoint": "/bin/sh",
        "environment": {"A": "1"},
        "network": {
            "ports": [
                {
                    "access": True,
                    "internal": {"port": 8888},
                    "external": {"port": 18888, "addresses": ["127.0.0.1"]},
                    "protocol": "HTTP",
                    "path": "/lab",
                }
            ]
        },
    },
    "compute": {
        "kind": f"{K}/compute/simple-compute-resource.yaml",
        "cores": {"min": 2, "max": 4},
        "memory": {"min": 4, "max": 8},
        "jeb:accelerators": [
            {"type": "GPU", "model": "A100", "count": {"min": 1, "max": 1}, "memory": {"min": 40}}
        ],
        "volumes": [
            {
                "kind": f"{K}/volume/simple-volume-mount.yaml",
                "path": "/data",
                "mode": "READONLY",
                "resource": "input",
            }
        ],
    },
    "storage": [
        {
            "kind": f"{K}/storage/simple-storage-resource.yaml",
            "size": {"min": 10, "max": 20},
            "data": ["input"],
        }
    ],
    "data": [
        {"kind": f"{K}/data/simple-data-resource.yaml", "location": "https://example.org/a.fits"},
        {
            "kind": f"{K}/data/S3-data-resource.yaml",
            "endpoint": "https://s3.example.org",
            "template": "{endpoint}/{bucket}/{object}",
            "bucket": "b",
            "object": "o",
        },
        {
            "kind": f"{K}/data/rucio-data-resource.yaml",
            "rucio": {"endpoint": "https://rucio", "scope": "s", "object": "o", "type": "FILE"},
        },
        {
            "kind": f"{K}/data/ivoa-data-resource.yaml",
            "ivoa": {
                "ivoid": "ivo://example.org/data?obs-1",
                "obscore": {"obs_id": "1", "calib_level": 2, "access_url": "https://x"},
                "datalink": {"ID": "x", "content_length": 10, "semantics": "#this"},
            },
        },
        {
            "kind": f"{K}/data/skao-data-resource.yaml",
            "ivoa": {"ivoid": "ivo://skao/x"},
            "skao": {
                "namespace": "ns",
                "objectname": "obj",
                "objecttype": "FILE",
                "datasize": 123,
                "checksum": {"type": "adler32", "value": "abcd"},
                "replicas": [{"rsename": "RSE1", "dataurl": "https://r/1"}],
            },
        },
    ],
    "schedule": {
        "requested": {
            "start": "2026-11-23T09:00:00Z/PT3H",
            "duration": "PT4H",
            "jeb:starts": ["2026-11-23T09:00:00Z/PT3H", "2026-11-24T09:00:00Z/PT3H"],
        }
    },
    "costs": [
        {
            "kind": f"{K}/costs/simple-minmax-float-cost.yaml",
            "type": "urn:ivoa:calycopis:cost:monetary",
            "max": 10.5,
        }
    ],
    "metrics": [
        {
            "kind": f"{K}/metrics/simple-minmax-float-metric.yaml",
            "type": "urn:ivoa:calycopis:metric:io-throughput",
            "min": 100.0,
        }
    ],
    "jeb:interactivity": {"bandwidth": {"min": 100.0}, "latency": {"max": 50.0}},
}

SESSION: dict[str, Any] = {
    "kind": f"{K}/session/scheduled-execution-session.yaml",
    "meta": {
        "uuid": "2e164a1b-7ff6-11ef-8412-4bc36fe2face",
        "url": "http://broker/sessions/2e164a1b-7ff6-11ef-8412-4bc36fe2face",
        "created": "2026-11-21T10:00:00Z",
        "messages": [{"kind": "urn:x", "level": "INFO", "message": "hi", "values": {"a": "1"}}],
        "options": [
            {"kind": "uri:enum-value-option", "path": "phase", "values": ["ACCEPTED", "REJECTED"]},
            {"kind": "uri:string-value-option", "path": "name", "pattern": ".*"},
            {
                "kind": "uri:integer-value-option",
                "path": "cores",
                "min": 1,
                "max": 4,
                "units": "cores",
            },
            {"kind": "uri:integer-delta-option", "path": "duration", "min": -1, "max": 1},
        ],
    },
    "phase": "OFFERED",
    "expires": "2026-11-21T10:05:00Z",
    "executable": {"kind": f"{K}/executable/jupyter-notebook.yaml", "location": "a.ipynb"},
    "compute": {"kind": f"{K}/compute/simple-compute-resource.yaml", "cores": {"min": 2, "max": 2}},
    "schedule": {
        "preparing": {"start": "2026-11-21T10:59:00Z", "duration": "PT1M"},
        "available": {"start": "2026-11-21T11:00:00Z/PT0S", "duration": "PT2H"},
        "releasing": {"start": "2026-11-21T13:00:00Z"},
    },
    "connectors": [
        {
            "kind": "urn:jeb:v1:connector:jupyter-server",
            "status": "AVAILABLE",
            "protocol": "HTTP",
            "location": "http://x",
        }
    ],
}


def _roundtrip(cls: type[Any], data: dict[str, Any]) -> None:
    obj = cls.model_validate(data)
    as_json = dumps(obj, "application/json")
    as_yaml = dumps(obj, "application/yaml")
    assert json.loads(as_json) == data
    assert yaml.safe_load(as_yaml) == data
    assert loads(cls, as_json, "application/json").dump() == data
    assert loads(cls, as_yaml, "application/yaml").dump() == data
    assert loads(cls, as_yaml, "text/yaml").dump() == data


def test_full_request_round_trips_in_json_and_yaml() -> None:
    _roundtrip(ExecutionRequest, FULL_REQUEST)


def test_session_with_every_option_kind_round_trips() -> None:
    _roundtrip(ScheduledExecutionSession, SESSION)


def test_offerset_round_trips() -> None:
    data = {
        "result": "YES",
        "meta": {"uuid": "11111111-2222-3333-4444-555555555555"},
        "offers": [SESSION],
    }
    _roundtrip(OfferSetResponse, data)
    parsed = OfferSetResponse.model_validate(data)
    assert isinstance(parsed.offers and parsed.offers[0], ScheduledExecutionSession)


@pytest.mark.parametrize(
    "kind",
    [
        k
        for g in (
            "executable",
            "compute",
            "storage",
            "volume",
            "data",
            "costs",
            "metrics",
            "session",
        )
        for k in registered_kinds(g)
    ],
)
def test_every_registered_kind_round_trips_minimal(kind: str) -> None:
    group = next(
        g
        for g in (
            "executable",
            "compute",
            "storage",
            "volume",
            "data",
            "costs",
            "metrics",
            "session",
        )
        if kind in registered_kinds(g)
    )
    cls = registered_kinds(group)[kind]
    data = {"kind": kind}
    obj = cls.model_validate(data)
    assert obj.dump() == data
    assert yaml.safe_load(dumps(obj, "application/yaml")) == data


@pytest.mark.parametrize(
    "legacy,group,name",
    [
        (
            "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/executable/docker-container-1.0",
            "executable",
            "docker-container",
        ),
        (
            "https://www.purl.org/ivoa.net/EB/schema/types/executable/jupyter-notebook-1.0",
            "executable",
            "jupyter-notebook",
        ),
        (
            "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/computer/simple-compute-resource.yaml",
            "compute",
            "simple-compute-resource",
        ),
        (
            "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/data/s3-data-resource-1.0",
            "data",
            "S3-data-resource",
        ),
        (
            "http://purl.org/ivoa.net/EB/schema/v1.0/types/storage/simple-storage-resource-1.0",
            "storage",
            "simple-storage-resource",
        ),
    ],
)
def test_legacy_kind_uris_are_canonicalised(legacy: str, group: str, name: str) -> None:
    assert canonical_kind(legacy) == f"{K}/{group}/{name}.yaml"


def test_legacy_type_discriminator_is_read_and_canonical_kind_written() -> None:
    request = ExecutionRequest.model_validate(
        {
            "executable": {
                "type": "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/executable/docker-container-1.0",
                "image": {"locations": ["alpine"]},
            },
            "compute": {
                "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/computer/simple-compute-resource.yaml",
                "cores": {"min": 1},
            },
        }
    )
    assert isinstance(request.executable, DockerContainer)
    assert isinstance(request.compute, SimpleComputeResource)
    out = request.dump()
    assert out["executable"]["kind"] == f"{K}/executable/docker-container.yaml"
    assert "type" not in out["executable"]
    assert out["compute"]["kind"] == f"{K}/compute/simple-compute-resource.yaml"


def test_cost_type_field_is_not_taken_for_a_discriminator() -> None:
    request = ExecutionRequest.model_validate(
        {
            "costs": [
                {"kind": f"{K}/costs/simple-minmax-float-cost.yaml", "type": "urn:money", "max": 1}
            ]
        }
    )
    assert request.dump()["costs"][0]["type"] == "urn:money"


def test_ready_phase_is_available() -> None:
    session = ScheduledExecutionSession.model_validate({**SESSION, "phase": "READY"})
    assert session.phase == Phase.AVAILABLE
    assert session.dump()["phase"] == "AVAILABLE"
    assert Phase.parse("ready") is Phase.AVAILABLE


def test_zero_width_interval_and_instants_are_canonical() -> None:
    session = ScheduledExecutionSession.model_validate(
        {
            **SESSION,
            "expires": "2026-11-21T10:05Z",
            "schedule": {"available": {"start": "2026-11-21T11:00:00+01:00", "duration": "PT2H"}},
        }
    )
    out = session.dump()
    assert out["expires"] == "2026-11-21T10:05:00Z"
    assert out["schedule"]["available"]["start"] == "2026-11-21T10:00:00Z/PT0S"


def test_unknown_kinds_are_preserved_verbatim() -> None:
    data = {
        "executable": {
            "kind": "urn:example:experimental-package-0.1",
            "package": {"location": "x"},
            "flags": [{"mode": "rw"}],
        },
        "compute": {"kind": "urn:example:quantum", "qubits": 5},
        "data": [{"kind": "urn:example:tape", "barcode": "X1"}],
    }
    request = ExecutionRequest.model_validate(data)
    assert isinstance(request.executable, UnknownExecutable)
    assert request.dump() == data
    assert json.loads(dumps(request)) == data


def test_unknown_update_kind_is_kept_and_enum_update_parsed() -> None:
    from eb_sdk.model import AbstractUpdate, UnknownUpdate

    update = AbstractUpdate.dispatch(
        {"kind": "uri:enum-value-update", "path": "/phase", "value": "ACCEPTED"}
    )
    assert isinstance(update, EnumValueUpdate) and update.normalized_path == "phase"
    other = AbstractUpdate.dispatch({"kind": "uri:frobnicate", "path": "x"})
    assert isinstance(other, UnknownUpdate)


@pytest.mark.parametrize(
    "compute",
    [
        {"cores": {"min": -1}},
        {"cores": {"min": 4, "max": 2}},
        {"memory": {"min": "lots"}},
        {"cores": {"min": 2**64}},
    ],
)
def test_bad_resources_are_rejected_with_a_clear_message(compute: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        ExecutionRequest.model_validate(
            {"compute": {"kind": f"{K}/compute/simple-compute-resource.yaml", **compute}}
        )
    assert "compute" in str(info.value)


def test_missing_kind_is_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="needs a 'kind'"):
        ExecutionRequest.model_validate({"executable": {"location": "x.ipynb"}})


def test_yaml_timestamps_stay_text_and_parse_as_instants() -> None:
    text = (
        "phase: OFFERED\nkind: "
        + f"{K}/session/simple-execution-session.yaml\nexpires: 2023-09-18T07:05:21\n"
    )
    session = loads(ScheduledExecutionSession, text, "application/yaml")
    assert session.expires == datetime(2023, 9, 18, 7, 5, 21, tzinfo=UTC)


def test_requested_windows_extension() -> None:
    request = ExecutionRequest.model_validate(
        {
            "schedule": {
                "requested": {"jeb:starts": ["2026-11-24T09:00Z/PT3H", "2026-11-23T09:00Z/PT3H"]}
            }
        }
    )
    assert request.schedule and request.schedule.requested
    windows = request.schedule.requested.windows
    assert [w.start.day for w in windows] == [23, 24]
    assert request.schedule.requested.start == windows[0]
    assert windows[0].duration == timedelta(hours=3)


def test_notebook_parameters_extension_and_message_helper() -> None:
    nb = JupyterNotebook(location="a.ipynb", parameters={"x": 1})
    assert nb.dump() == {
        "kind": f"{K}/executable/jupyter-notebook.yaml",
        "location": "a.ipynb",
        "jeb:parameters": {"x": 1},
    }
    item = MessageItem.make("urn:x", "hello", n=3)
    assert item.dump()["values"] == {"n": "3"}


# Every registered kind with its fields filled in (the minimal round trip above only has
# ``kind``). A kind registered without a sample here fails the coverage test below.
FULL_SAMPLES: dict[str, dict[str, Any]] = {
    **{item["kind"]: item for item in FULL_REQUEST["data"]},
    **{item["kind"]: item for item in FULL_REQUEST["costs"] + FULL_REQUEST["metrics"]},
    FULL_REQUEST["executable"]["kind"]: FULL_REQUEST["executable"],
    FULL_REQUEST["compute"]["kind"]: FULL_REQUEST["compute"],
    FULL_REQUEST["compute"]["volumes"][0]["kind"]: FULL_REQUEST["compute"]["volumes"][0],
    FULL_REQUEST["storage"][0]["kind"]: FULL_REQUEST["storage"][0],
    SESSION["kind"]: SESSION,
    f"{K}/session/simple-execution-session.yaml": {
        **{k: v for k, v in SESSION.items() if k != "schedule"},
        "kind": f"{K}/session/simple-execution-session.yaml",
        "phase": "RUNNING",
    },
    f"{K}/executable/singularity-container.yaml": {
        "kind": f"{K}/executable/singularity-container.yaml",
        "meta": {"name": "fit", "description": "an Apptainer image"},
        "location": "https://images.example.org/fit-2.3.sif",
        "phase": "PREPARING",
        "schedule": {"preparing": {"start": "2026-11-21T10:00:00Z", "duration": "PT5M"}},
    },
    f"{K}/executable/jupyter-notebook.yaml": {
        "kind": f"{K}/executable/jupyter-notebook.yaml",
        "meta": {"name": "analysis"},
        "location": "/home/alice/analysis.ipynb",
        "jeb:parameters": {"threshold": 3.5, "files": ["a.fits", "b.fits"], "deep": {"n": 1}},
        "jeb:kernel": "python3",
    },
    "urn:jeb:v1:executable:jupyter-server": {
        "kind": "urn:jeb:v1:executable:jupyter-server",
        "meta": {"name": "workspace"},
        "command": ["jupyterhub-singleuser", "--debug"],
        "environment": {"JUPYTERHUB_SERVICE_PREFIX": "/user/alice/", "MY_SETTING": "1"},
        "notebook": "start-here.ipynb",
        "root_dir": "/home/alice/work",
    },
    "urn:jeb:v1:executable:virtual-machine": {
        "kind": "urn:jeb:v1:executable:virtual-machine",
        "meta": {"name": "compose-stack"},
        "image": "ubuntu-24.04-docker",
        "flavor": "g1.*",
        "user_data": "#cloud-config\nruncmd:\n  - [docker, compose, up, -d]\n",
        "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB alice@laptop",
        "http_port": 8080,
        "http_path": "/status",
    },
    "urn:jeb:v1:executable:notebook-batch": {
        "kind": "urn:jeb:v1:executable:notebook-batch",
        "meta": {"name": "reduce every file"},
        "location": "/home/alice/reduce.ipynb",
        "parameter": "input_file",
        "parameters": {"threshold": 3.5},
        "inputs": [
            {"id": "00000-obs-0", "value": "/data/obs-0.fits"},
            {"id": "00001-obs-1", "value": {"path": "/data/obs-1.fits"}, "output": "one.ipynb"},
        ],
        "output_dir": "/home/alice/runs",
        "workers": 2,
        "kernel": "python3",
        "cell_timeout": 600.0,
    },
    f"{K}/costs/abstract-cost-item.yaml": {
        "kind": f"{K}/costs/abstract-cost-item.yaml",
        "type": "urn:ivoa:calycopis:cost:carbon",
        "description": "kg CO2e",
    },
    f"{K}/metrics/abstract-metric-item.yaml": {
        "kind": f"{K}/metrics/abstract-metric-item.yaml",
        "type": "urn:ivoa:calycopis:metric:latency",
        "description": "ms",
    },
}

_GROUPS = ("executable", "compute", "storage", "volume", "data", "costs", "metrics", "session")


def test_every_registered_kind_has_a_full_sample() -> None:
    registered = {k for g in _GROUPS for k in registered_kinds(g)}
    assert registered <= set(FULL_SAMPLES), registered - set(FULL_SAMPLES)


@pytest.mark.parametrize("kind", sorted(FULL_SAMPLES))
def test_every_kind_round_trips_with_its_fields(kind: str) -> None:
    group = next(g for g in _GROUPS if kind in registered_kinds(g))
    cls = registered_kinds(group)[kind]
    sample = FULL_SAMPLES[kind]
    assert len(sample) >= 2  # the kind and its fields
    _roundtrip(cls, sample)
    parsed = cls.model_validate(sample)
    assert type(parsed) is cls and not parsed.model_extra  # every field known, none left over
    # and through its group's polymorphic slot, as a peer would send it
    base = cls.__mro__[[c.__dict__.get("GROUP") for c in cls.__mro__].index(group)]
    assert type(base.dispatch(sample)) is cls  # type: ignore[attr-defined]


def test_session_name_is_jeb_name_and_plain_name_is_still_read() -> None:
    new = ExecutionRequest.model_validate({"jeb:name": "nightly"})
    old = ExecutionRequest.model_validate({"name": "nightly"})
    assert new.name == old.name == "nightly"
    assert old.dump() == {"jeb:name": "nightly"} and ExecutionRequest(name="n").dump() == {
        "jeb:name": "n"
    }


PLUGIN = """
from typing import ClassVar

from eb_sdk.model import MinMax, kind
from eb_sdk.model.executables import AbstractExecutable


@kind
class RScript(AbstractExecutable):
    KIND: ClassVar[str] = "urn:example:v1:executable:r-script"
    script: str | None = None
    packages: list[str] | None = None
    cran_mirror: str | None = None


class Cluster(AbstractExecutable):  # registered by its entry point (a class, no decorator)
    GROUP: ClassVar[str] = "executable"
    KIND: ClassVar[str] = (
        "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/"
        "dask-cluster.yaml"
    )
    workers: MinMax | None = None
"""

CHECK = """
import json, sys
from eb_sdk.model import ExecutionRequest, dumps, loads
from eb_sdk.model.kinds import registered_kinds
from tests.fixtures.services import REPO_ROOT

out = {}
request = {
    "executable": {
        "kind": "urn:example:v1:executable:r-script",
        "script": "fit.R",
        "packages": ["data.table"],
    }
}
parsed = ExecutionRequest.model_validate(request)
out["class"] = type(parsed.executable).__name__
out["script"] = parsed.executable.script
out["json"] = loads(ExecutionRequest, dumps(parsed), "application/json").dump() == request
out["yaml"] = loads(
    ExecutionRequest, dumps(parsed, "application/yaml"), "application/yaml"
).dump() == request
legacy = ExecutionRequest.model_validate({"executable": {
    "type": "https://www.purl.org/ivoa.net/EB/schema/types/executable/dask-cluster-1.0",
    "workers": {"min": 2, "max": 8},
}})
out["legacy_class"] = type(legacy.executable).__name__
out["legacy_dump"] = legacy.dump()
out["registered"] = sorted(registered_kinds("executable"))
json.dump(out, sys.stdout)
"""


def test_a_kind_plugin_found_through_its_entry_point(tmp_path: Path) -> None:
    """A third-party distribution declares kinds under ``eb_sdk.kinds``; they dispatch,
    round-trip, and read legacy spellings, with no import of the plugin by the caller."""
    (tmp_path / "eb_example_kinds.py").write_text(PLUGIN)
    info = tmp_path / "eb_example_kinds-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: eb-example-kinds\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[eb_sdk.kinds]\n"
        "r-script = eb_example_kinds\n"
        "dask-cluster = eb_example_kinds:Cluster\n"
        "broken = eb_example_kinds_missing\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"}
    proc = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["class"] == "RScript" and out["script"] == "fit.R"
    assert out["json"] and out["yaml"]
    assert out["legacy_class"] == "Cluster"
    assert out["legacy_dump"] == {
        "executable": {
            "kind": f"{K}/executable/dask-cluster.yaml",  # canonical on output
            "workers": {"min": 2, "max": 8},
        }
    }
    assert {
        "urn:example:v1:executable:r-script",
        f"{K}/executable/dask-cluster.yaml",
        f"{K}/executable/jupyter-notebook.yaml",
    } <= set(out["registered"])
    assert "eb_example_kinds_missing" in proc.stderr  # a broken plugin is logged, not fatal
