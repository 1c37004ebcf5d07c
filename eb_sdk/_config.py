"""Which brokers to ask, and with which credentials.

Sources, in this order (the first that names a broker wins for that name):

1. explicit ``brokers=`` arguments (URLs, ``name=url`` strings, :class:`Broker` objects, names
   of configured brokers) — when given, they are the only brokers asked;
2. ``EB_BROKERS``: comma separated ``name=url`` or bare URL entries;
3. the config file ``$EB_CONFIG`` or ``~/.config/eb/brokers.yaml`` (``$XDG_CONFIG_HOME``);
4. inside JupyterHub (``JUPYTERHUB_API_TOKEN`` set) and nothing else configured: the hub
   service ``$EB_HUB_SERVICE`` (default ``eb-broker``), looked up through the hub's API.

Credentials: a broker's own ``token``/``token_env``/``username``+``password`` (or
``user:password@`` in its URL). Otherwise the environment's tokens, but only for the brokers
they belong to, so that a URL typed into ``brokers=`` (or found in someone else's notebook)
never receives them:

* ``EB_TOKEN_<NAME>``: brokers of that name from ``EB_BROKERS`` or the config file;
* ``EB_TOKEN``: brokers from ``EB_BROKERS`` (the pair ``./dev demo`` and spawners set);
* ``JUPYTERHUB_API_TOKEN`` (a broker run as a hub service checks it with the hub): the hub
  service found through the hub's API, brokers from ``EB_BROKERS`` (a spawner puts the
  hub's broker there), and brokers on the hub's own host (the host of ``JUPYTERHUB_API_URL``
  or of the hub's public URL);
* an explicit URL that is the URL of a configured broker gets that broker's credentials.

Nothing here does I/O except reading the config file; the hub lookup happens in the client.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import yaml

from ._errors import ConfigError

__all__ = ["Broker", "BrokerSpec", "config_path", "configured_brokers", "resolve_brokers"]

#: Scheme of the placeholder URL of a broker found through the JupyterHub API.
HUB_SCHEME = "jupyterhub-service"


@dataclass(frozen=True)
class Broker:
    """One broker: a name (shown with its offers), a base URL and credentials.

    ``eb.Broker("https://eb.example.org", token="...")`` is how a notebook names a broker
    that is not configured anywhere. Secrets are left out of ``repr``.
    """

    url: str
    name: str = ""
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    source: str = "explicit"

    def __post_init__(self) -> None:
        url, user, password = _split_userinfo(self.url.strip())
        if not re.match(r"https?://[^/]", url) and not url.startswith(HUB_SCHEME + ":"):
            raise ConfigError(f"broker URL must start with http:// or https://, not {self.url!r}")
        object.__setattr__(self, "url", url.rstrip("/"))
        if user and self.username is None:
            object.__setattr__(self, "username", user)
            object.__setattr__(self, "password", password)
        if not self.name:
            object.__setattr__(self, "name", _default_name(url))

    @property
    def hub_service(self) -> str | None:
        """The JupyterHub service name when the URL must be looked up through the hub."""
        if self.url.startswith(HUB_SCHEME + ":"):
            return self.url.split(":", 1)[1]
        return None

    def auth_headers(self) -> dict[str, str]:
        """``Authorization`` for this broker: Bearer token, or HTTP Basic credentials."""
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is not None:
            raw = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode("ascii")}
        return {}

    @property
    def has_credentials(self) -> bool:
        return bool(self.token) or self.username is not None

    def with_defaults(self, environ: Mapping[str, str]) -> Broker:
        """This broker with the environment's token filled in when it has no credentials of
        its own, and only a token meant for it (see the module's docstring)."""
        if self.has_credentials:
            return self
        configured = self.source != "explicit"
        token = (
            (environ.get(_token_var(self.name)) if configured else None)
            or (environ.get("EB_TOKEN") if self.source == "EB_BROKERS" else None)
            or (environ.get("JUPYTERHUB_API_TOKEN") if _hub_trusts(self, environ) else None)
        )
        return replace(self, token=token) if token else self


def _hub_trusts(broker: Broker, environ: Mapping[str, str]) -> bool:
    """May the user's hub token go to ``broker``? The hub's service, the spawner's
    ``EB_BROKERS`` and the hub's own host: yes; any other URL: no."""
    if broker.source in ("JupyterHub", "EB_BROKERS") or broker.hub_service:
        return True
    host = urlsplit(broker.url).hostname
    hub_urls = ("JUPYTERHUB_API_URL", "JUPYTERHUB_PUBLIC_URL", "JUPYTERHUB_PUBLIC_HUB_URL")
    hub_hosts = {urlsplit(environ[v]).hostname for v in hub_urls if environ.get(v)}
    return host is not None and host in hub_hosts


BrokerSpec = str | Broker | Mapping[str, str] | Sequence[str | Broker]
"""What ``brokers=`` accepts: a URL, ``name=url``, a configured name, a Broker, or a list."""


def _split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    parts = urlsplit(url)
    if not parts.username:
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, unquote(parts.username), unquote(parts.password or "")


def _default_name(url: str) -> str:
    if url.startswith(HUB_SCHEME + ":"):
        return "hub"
    parts = urlsplit(url)
    return (parts.netloc or url) + (parts.path.rstrip("/") if parts.path.strip("/") else "")


def _token_var(name: str) -> str:
    return "EB_TOKEN_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _parse_entry(entry: str, source: str) -> Broker:
    text = entry.strip()
    name, sep, url = text.partition("=")
    if sep and not re.match(r"https?://", text):
        return Broker(url=url.strip(), name=name.strip(), source=source)
    return Broker(url=text, source=source)


def _from_env(environ: Mapping[str, str]) -> list[Broker]:
    raw = environ.get("EB_BROKERS", "")
    return [_parse_entry(e, "EB_BROKERS") for e in raw.split(",") if e.strip()]


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The broker config file: ``$EB_CONFIG``, else ``$XDG_CONFIG_HOME/eb/brokers.yaml``."""
    env = os.environ if environ is None else environ
    if env.get("EB_CONFIG"):
        return Path(env["EB_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "eb" / "brokers.yaml"


def _from_file(path: Path, environ: Mapping[str, str]) -> list[Broker]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    entries: Any = data.get("brokers", []) if isinstance(data, dict) else data
    if isinstance(entries, dict):  # {name: {url: ...}} or {name: url}
        entries = [
            {"name": k, **(v if isinstance(v, dict) else {"url": v})} for k, v in entries.items()
        ]
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: 'brokers' must be a list of {{name, url, token}}")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("url"):
            raise ConfigError(f"{path}: every broker needs a 'url' (got {entry!r})")
        out.append(_file_entry(entry, path, environ))
    return out


def _secret(entry: Mapping[str, Any], key: str, environ: Mapping[str, str], path: Path) -> Any:
    if entry.get(key) is not None:
        return str(entry[key])
    var = entry.get(f"{key}_env")
    if var is None:
        return None
    if str(var) not in environ:
        raise ConfigError(f"{path}: broker {entry.get('name')!r} reads ${var}, which is not set")
    return environ[str(var)]


def _file_entry(entry: Mapping[str, Any], path: Path, environ: Mapping[str, str]) -> Broker:
    return Broker(
        url=str(entry["url"]),
        name=str(entry.get("name") or ""),
        token=_secret(entry, "token", environ, path),
        username=str(entry["username"]) if entry.get("username") is not None else None,
        password=_secret(entry, "password", environ, path),
        source=str(path),
    )


def _from_hub(environ: Mapping[str, str]) -> list[Broker]:
    if not (environ.get("JUPYTERHUB_API_TOKEN") and environ.get("JUPYTERHUB_API_URL")):
        return []
    service = environ.get("EB_HUB_SERVICE", "eb-broker")
    return [Broker(url=f"{HUB_SCHEME}:{quote(service)}", name="hub", source="JupyterHub")]


def configured_brokers(environ: Mapping[str, str] | None = None) -> list[Broker]:
    """Every broker the environment and the config file name, with credentials filled in."""
    env = os.environ if environ is None else environ
    found: dict[str, Broker] = {}
    for broker in [*_from_env(env), *_from_file(config_path(env), env)]:
        found.setdefault(broker.name, broker)
    if not found:
        for broker in _from_hub(env):
            found[broker.name] = broker
    return [b.with_defaults(env) for b in found.values()]


def _explicit(spec: BrokerSpec) -> list[str | Broker]:
    if isinstance(spec, str | Broker):
        return [spec]
    if isinstance(spec, Mapping):
        return [f"{name}={url}" for name, url in spec.items()]
    return list(spec)


def resolve_brokers(
    spec: BrokerSpec | None = None, environ: Mapping[str, str] | None = None
) -> list[Broker]:
    """The brokers to ask: ``spec`` if given (names looked up in the configuration), else all
    configured ones. Raises :class:`ConfigError` when there are none or a name is unknown."""
    env = os.environ if environ is None else environ
    if spec is None or (not isinstance(spec, str | Broker) and not spec):
        brokers = configured_brokers(env)
        if not brokers:
            raise ConfigError(
                "no brokers configured: pass brokers=[...], set EB_BROKERS "
                f"(name=url,...) or write {config_path(env)}"
            )
        return brokers
    out: list[Broker] = []
    for item in _explicit(spec):
        if isinstance(item, Broker):
            out.append(_explicit_credentials(item, env))
        elif re.match(r"https?://", item.strip()) or "=" in item:
            out.append(_explicit_credentials(_parse_entry(item, "explicit"), env))
        else:
            configured = {b.name: b for b in configured_brokers(env)}
            if item not in configured:
                known = ", ".join(configured) or "none"
                raise ConfigError(f"no broker named {item!r} is configured (known: {known})")
            out.append(configured[item])
    return _unique(out)


def _explicit_credentials(broker: Broker, env: Mapping[str, str]) -> Broker:
    """An explicit broker: the configured broker of the same URL lends its credentials (and
    its name, when the explicit one has none of its own); otherwise only the hub's token, and
    only on the hub's host."""
    if broker.has_credentials:
        return broker
    try:
        same = [b for b in configured_brokers(env) if b.url == broker.url]
    except ConfigError:  # a broken config file does not stop explicit brokers
        same = []
    if same:
        named = broker.name != _default_name(broker.url)
        return replace(
            same[0],
            name=broker.name if named else same[0].name,
            source=broker.source,
        )
    return broker.with_defaults(env)


def _unique(brokers: Iterable[Broker]) -> list[Broker]:
    seen: set[str] = set()
    out = []
    for broker in brokers:
        if broker.url not in seen:
            seen.add(broker.url)
            out.append(broker)
    return out
