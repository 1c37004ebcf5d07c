"""Builders that read naturally and return the wire model.

``eb.Compute(cores=(1, 4), memory="2-8GiB", gpus=1, gpu_model="A100")`` is what a person
writes; ``SimpleComputeResource(cores=MinMax(min=1, max=4), ...)`` is what the broker reads.
Each builder returns the wire object itself, so anything the builder does not cover can still
be set on the result, and the result can be passed wherever the wire model is accepted.

Sizes are GiB on the wire. Strings follow Kubernetes' convention: ``Gi``/``GiB`` (and ``Ti``,
``Mi``) are binary, ``G``/``GB`` decimal; a bare number is GiB. A range's minimum is rounded
up and its maximum down, so the broker is never asked for less than was written.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ._errors import InvalidRequest
from .model import (
    Accelerator,
    AcceleratorType,
    ComponentMetadata,
    DockerContainer,
    DockerImageSpec,
    DockerNetworkPort,
    DockerNetworkSpec,
    IvoaDataResource,
    JupyterNotebook,
    MinMax,
    MinMaxFloat,
    S3DataResource,
    SimpleComputeResource,
    SimpleDataResource,
    SimpleStorageResource,
    SingularityContainer,
)
from .model import (
    Interactivity as InteractivityModel,
)
from .model import (
    JupyterServer as JupyterServerKind,
)
from .model import (
    VirtualMachine as VirtualMachineKind,
)
from .model.executables import DockerInternalPort
from .model.resources import AbstractDataResource, IvoaDataResourceBlock

__all__ = [
    "Compute",
    "Container",
    "Data",
    "Interactivity",
    "JupyterServer",
    "Notebook",
    "Singularity",
    "Storage",
    "VirtualMachine",
    "parse_count",
    "parse_size",
]

RangeLike = int | float | str | tuple[int | float | str | None, int | float | str | None]
"""A number, a ``(min, max)`` pair (either may be None), or text like ``"2-8GiB"``."""

# Multipliers to GiB.
_GIB = 2**30
_SIZE_UNITS: dict[str, float] = {
    "": 1.0,
    "gi": 1.0,
    "gib": 1.0,
    "ti": 1024.0,
    "tib": 1024.0,
    "mi": 1 / 1024,
    "mib": 1 / 1024,
    "g": 1e9 / _GIB,
    "gb": 1e9 / _GIB,
    "t": 1e12 / _GIB,
    "tb": 1e12 / _GIB,
    "m": 1e6 / _GIB,
    "mb": 1e6 / _GIB,
}
_AMOUNT = r"(\d+(?:\.\d+)?)\s*([a-z]*)"
_RANGE = re.compile(rf"{_AMOUNT}\s*(?:-|to|\.\.)\s*{_AMOUNT}")
_AT_LEAST = re.compile(rf"(?:>=|≥|at\s*least)\s*{_AMOUNT}|{_AMOUNT}\s*\+")
_AT_MOST = re.compile(rf"(?:<=|≤|at\s*most|up\s*to)\s*{_AMOUNT}")


def _gib(amount: str, unit: str, what: str) -> float:
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise InvalidRequest(f"{what}: unknown unit {unit!r} (use GiB, TiB, MiB, GB, TB)")
    return float(amount) * factor


def _bounds(value: Any, what: str, unitful: bool) -> tuple[float | None, float | None]:
    if isinstance(value, bool):
        raise InvalidRequest(f"{what}: expected a number or a range, not {value!r}")
    if isinstance(value, int | float):
        return float(value), float(value)
    if isinstance(value, tuple | list) and len(value) == 2:
        lo, hi = (None if v is None else _bounds(v, what, unitful)[0] for v in value)
        return lo, hi
    if not isinstance(value, str):
        raise InvalidRequest(f"{what}: expected a number, a (min, max) pair or text like '2-8'")
    text = re.sub(r"\s+", " ", value.strip().lower())
    if m := re.fullmatch(_AMOUNT, text):
        size = _gib(m[1], m[2], what) if unitful else _plain(m[1], m[2], what)
        return size, size
    if m := _RANGE.fullmatch(text):
        unit_hi = m[4]
        unit_lo = m[2] or unit_hi  # "2-8GiB": the unit of the maximum applies to both
        if unitful:
            return _gib(m[1], unit_lo, what), _gib(m[3], unit_hi, what)
        return _plain(m[1], unit_lo, what), _plain(m[3], unit_hi, what)
    if m := _AT_LEAST.fullmatch(text):
        amount, unit = (m[1], m[2]) if m[1] else (m[3], m[4])
        return (_gib(amount, unit, what) if unitful else _plain(amount, unit, what)), None
    if m := _AT_MOST.fullmatch(text):
        return None, (_gib(m[1], m[2], what) if unitful else _plain(m[1], m[2], what))
    example = "'8GiB', '2-8GiB', '>=4GiB'" if unitful else "'4', '1-4', '2+'"
    raise InvalidRequest(f"{what}: could not read {value!r} (e.g. {example})")


def _plain(amount: str, unit: str, what: str) -> float:
    if unit:
        raise InvalidRequest(f"{what}: a count has no unit (got {amount}{unit})")
    return float(amount)


def _minmax(lo: float | None, hi: float | None, what: str) -> MinMax:
    low = None if lo is None else math.ceil(lo - 1e-9)
    high = None if hi is None else math.floor(hi + 1e-9)
    if lo is not None and lo == hi:  # one exact amount: round it up, never ask for less
        high = low
    if low is not None and high is not None and high < low:
        raise InvalidRequest(f"{what}: the minimum ({lo:g}) is larger than the maximum ({hi:g})")
    if (low is not None and low < 0) or (high is not None and high < 0):
        raise InvalidRequest(f"{what}: must not be negative")
    return MinMax(min=low, max=high)


def parse_size(value: RangeLike, what: str = "size") -> MinMax:
    """``"2-8GiB"``, ``"8GiB"``, ``(2, 8)``, ``">=4GiB"``, ``16`` → a GiB range."""
    return _minmax(*_bounds(value, what, unitful=True), what)


def parse_count(value: RangeLike, what: str = "count") -> MinMax:
    """``4``, ``(1, 4)``, ``"1-4"``, ``"2+"`` → an integer range."""
    return _minmax(*_bounds(value, what, unitful=False), what)


def _meta(name: str | None) -> ComponentMetadata | None:
    return ComponentMetadata(name=name) if name else None


# -- executables -------------------------------------------------------------------------------


def Notebook(
    path: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    kernel: str | None = None,
    name: str | None = None,
) -> JupyterNotebook:
    """A notebook to run top to bottom, with papermill ``parameters`` (``jeb:parameters``).

    A relative path is made absolute against the current directory (a notebook's own
    directory in Jupyter): the broker does not share our working directory, only, at best,
    our file system. URLs are passed on unchanged.
    """
    text = os.fspath(path)
    if not urlsplit(text).scheme or len(urlsplit(text).scheme) == 1:  # "C:\..." is a path
        text = os.path.abspath(os.path.expanduser(text))
    return JupyterNotebook(
        location=text,
        parameters=dict(parameters) if parameters else None,
        kernel=kernel,
        meta=_meta(name),
    )


def _port(spec: int | str) -> DockerNetworkPort:
    text = str(spec).strip()
    number, _, protocol = text.partition("/")
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise InvalidRequest(f"port: expected a number like 8888 or '8888/tcp', not {spec!r}")
    return DockerNetworkPort(
        access=True,
        internal=DockerInternalPort(port=int(number)),
        protocol=(protocol or "tcp").upper(),
    )


def Container(
    image: str,
    *,
    digest: str | None = None,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    ports: Sequence[int | str] | None = None,
    entrypoint: str | None = None,
    privileged: bool | None = None,
    name: str | None = None,
) -> DockerContainer:
    """A Docker/OCI container: ``image`` (a registry reference), the ``digest`` to insist on,
    the ``command``, its environment and the ``ports`` it serves (reachable from outside)."""
    return DockerContainer(
        image=DockerImageSpec(locations=[image], digest=digest),
        command=list(command) if command is not None else None,
        environment={k: str(v) for k, v in env.items()} if env else None,
        network=DockerNetworkSpec(ports=[_port(p) for p in ports]) if ports else None,
        entrypoint=entrypoint,
        privileged=privileged,
        meta=_meta(name),
    )


def Singularity(location: str, *, name: str | None = None) -> SingularityContainer:
    """A Singularity/Apptainer image (``docker://...``, ``library://...`` or a ``.sif`` URL)."""
    return SingularityContainer(location=location, meta=_meta(name))


def JupyterServer(
    root_dir: str | os.PathLike[str] | None = None,
    *,
    notebook: str | None = None,
    command: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    name: str | None = None,
) -> JupyterServerKind:
    """An interactive Jupyter server (``urn:jeb:v1:executable:jupyter-server``); its URL
    appears as a connector once it answers."""
    return JupyterServerKind(
        root_dir=os.path.abspath(os.fspath(root_dir)) if root_dir is not None else None,
        notebook=notebook,
        command=list(command) if command is not None else None,
        environment={k: str(v) for k, v in env.items()} if env else None,
        meta=_meta(name),
    )


def VirtualMachine(
    image: str | None = None,
    *,
    flavor: str | None = None,
    user_data: str | os.PathLike[str] | None = None,
    ssh_key: str | os.PathLike[str] | None = None,
    http_port: int | None = None,
    http_path: str | None = None,
    name: str | None = None,
) -> VirtualMachineKind:
    """A virtual machine (``urn:jeb:v1:executable:virtual-machine``) booted from ``image``
    (the site's default when None), on the smallest flavor that gives the requested resources
    (matching ``flavor``, a name or a pattern like ``"g1.*"``), configured by cloud-init
    ``user_data`` (text, or a path to a file). ``ssh_key`` (a public key, or a ``.pub`` file)
    adds an SSH connector; ``http_port`` an HTTP connector to a service in the VM."""
    if http_port is not None and not (isinstance(http_port, int) and 0 < http_port < 65536):
        raise InvalidRequest(f"http_port: expected a port number 1-65535, not {http_port!r}")
    return VirtualMachineKind(
        image=image,
        flavor=flavor,
        user_data=_text_or_file(user_data, "user_data", lambda t: "\n" in t or t.startswith("#")),
        ssh_public_key=_text_or_file(
            ssh_key, "ssh_key", lambda t: t.startswith(("ssh-", "ecdsa-"))
        ),
        http_port=http_port,
        http_path=http_path,
        meta=_meta(name),
    )


def _looks_like_user_data(text: str) -> bool:
    return "\n" in text or text.startswith(("#", "Content-Type:"))


def _looks_like_public_key(text: str) -> bool:
    return text.startswith(("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-"))


def _text_or_file(
    value: str | os.PathLike[str] | None, what: str, is_text: Callable[[str], bool]
) -> str | None:
    """``value`` itself when it reads as content (``is_text``), else a file's content."""
    if value is None:
        return None
    if isinstance(value, str) and is_text(value):
        return value
    path = os.path.expanduser(os.fspath(value))
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise InvalidRequest(
            f"{what}: {value!r} is neither the content itself nor a readable file ({exc})"
        ) from None


# -- resources ---------------------------------------------------------------------------------


def Compute(
    cores: RangeLike | None = None,
    memory: RangeLike | None = None,
    *,
    gpus: RangeLike | None = None,
    gpu_model: str | None = None,
    gpu_memory: RangeLike | None = None,
    accelerators: Sequence[Accelerator] | None = None,
    name: str | None = None,
) -> SimpleComputeResource:
    """Cores and memory as numbers or ranges; ``gpus`` (a count or range) of ``gpu_model``
    (any model when None) with ``gpu_memory`` each. Other accelerators via ``accelerators``."""
    accs = list(accelerators or [])
    if gpus is not None:
        count = parse_count(gpus, "gpus")
        if count.max != 0:
            accs.append(
                Accelerator(
                    type=AcceleratorType.GPU,
                    model=gpu_model,
                    count=count,
                    memory=parse_size(gpu_memory, "gpu_memory") if gpu_memory else None,
                )
            )
    elif gpu_model or gpu_memory:
        raise InvalidRequest("gpu_model/gpu_memory need gpus=... (how many)")
    return SimpleComputeResource(
        cores=parse_count(cores, "cores") if cores is not None else None,
        memory=parse_size(memory, "memory") if memory is not None else None,
        accelerators=accs or None,
        meta=_meta(name),
    )


_BANDWIDTH_UNITS = {"": 1.0, "kbit/s": 1e-3, "kbps": 1e-3, "mbit/s": 1.0, "mbps": 1.0}
_BANDWIDTH_UNITS |= {"gbit/s": 1e3, "gbps": 1e3}
_LATENCY_UNITS = {"": 1.0, "ms": 1.0, "s": 1e3}


def _figure(value: float | str, units: Mapping[str, float], what: str) -> float:
    if isinstance(value, bool):
        raise InvalidRequest(f"{what}: expected a number or text like {next(iter(units))!r}")
    if isinstance(value, int | float):
        amount = float(value)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z/]*)\s*", str(value).lower())
        if not match or match[2] not in units:
            known = ", ".join(u for u in units if u)
            raise InvalidRequest(f"{what}: cannot read {value!r} (units: {known})") from None
        amount = float(match[1]) * units[match[2]]
    if not math.isfinite(amount) or amount <= 0:
        raise InvalidRequest(f"{what}: must be a positive number, not {value!r}")
    return amount


def Interactivity(
    bandwidth: float | str | None = None, latency: float | str | None = None
) -> InteractivityModel:
    """Network needs between you and the session (extension ``jeb:interactivity``): at least
    ``bandwidth`` (Mbit/s, or text like ``"1 Gbit/s"``) and a round-trip latency of at most
    ``latency`` (ms, or ``"30 ms"``). Brokers that know their network figures answer NO when
    they cannot meet them; others ignore it (``eb.brokers()`` shows which check it)."""
    if bandwidth is None and latency is None:
        raise InvalidRequest("Interactivity: give bandwidth= and/or latency=")
    return InteractivityModel(
        bandwidth=(
            MinMaxFloat(min=_figure(bandwidth, _BANDWIDTH_UNITS, "bandwidth"))
            if bandwidth is not None
            else None
        ),
        latency=(
            MinMaxFloat(max=_figure(latency, _LATENCY_UNITS, "latency"))
            if latency is not None
            else None
        ),
    )


def Storage(size: RangeLike, *, name: str | None = None) -> SimpleStorageResource:
    """Scratch storage: ``Storage("10GiB")``, ``Storage("10-100GiB")``."""
    return SimpleStorageResource(size=parse_size(size, "storage size"), meta=_meta(name))


def _s3(text: str, endpoint: str | None, name: str | None) -> S3DataResource:
    parts = urlsplit(text)
    if parts.scheme != "s3" or not parts.netloc:
        raise InvalidRequest(f"s3: expected s3://bucket/key, not {text!r}")
    key = parts.path.lstrip("/") or None
    return S3DataResource(endpoint=endpoint, bucket=parts.netloc, object=key, meta=_meta(name))


def Data(
    source: str | None = None,
    *,
    url: str | None = None,
    ivoid: str | None = None,
    s3: str | Mapping[str, str] | None = None,
    endpoint: str | None = None,
    name: str | None = None,
) -> AbstractDataResource:
    """Input data: a URL, an ``ivo://`` identifier or an ``s3://bucket/key`` object.

    ``Data("https://...")``, ``Data("ivo://org/collection?obs")`` and
    ``Data("s3://bucket/key", endpoint="https://s3.example.org")`` choose the kind from the
    text; ``url=``, ``ivoid=`` and ``s3=`` say it explicitly. ``name`` lets a volume mount
    refer to it.
    """
    given = [v for v in (source, url, ivoid, s3) if v is not None]
    if len(given) != 1:
        raise InvalidRequest("Data: give exactly one of a source, url=, ivoid= or s3=")
    if isinstance(s3, Mapping):
        return S3DataResource(**dict(s3), meta=_meta(name))
    if s3 is not None:
        return _s3(s3, endpoint, name)
    if ivoid is not None or (source or "").startswith("ivo://"):
        ident = ivoid or source
        return IvoaDataResource(ivoa=IvoaDataResourceBlock(ivoid=ident), meta=_meta(name))
    text = str(url or source)
    if text.startswith("s3://"):
        return _s3(text, endpoint, name)
    if not urlsplit(text).scheme:
        raise InvalidRequest(f"Data: {text!r} is not a URL (https://, ivo://, s3://)")
    return SimpleDataResource(location=text, meta=_meta(name))
