"""A stand-in for Neutron, so a real Nova serves servers booted with networks "none".

Nova asks Neutron about a server's ports, floating IPs and security groups even when it has no
network (create, show, delete). This answers those calls from memory:

* two networks, ``eb-public`` (external: floating IPs come from it) and ``eb-private``;
* security groups and their rules, and floating IPs: created, listed (filtered by the query's
  fields, e.g. ``?name=``), shown, updated and deleted like Neutron's API does;
* every other collection (ports, subnets ...) lists empty, and a GET of one object is a 404.

It is not a network service: nothing is filtered, routed or given an address, and servers
have no ports (docs/testing.md).

    python neutron_stub.py PORT
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 19696
PATH = re.compile(r"^/v2\.0/([a-z-]+)(?:/([^/]+))?$")
#: Collections kept in memory, with the singular name of their objects.
KEPT = {
    "networks": "network",
    "security-groups": "security_group",
    "security-group-rules": "security_group_rule",
    "floatingips": "floatingip",
}
NETWORKS = [
    {"name": "eb-public", "router:external": True},
    {"name": "eb-private", "router:external": False},
]

lock = threading.Lock()
store: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in KEPT}
addresses = (f"203.0.113.{n}" for n in itertools.count(10))
for net in NETWORKS:
    net_id = str(uuid.uuid4())
    store["networks"][net_id] = {
        "id": net_id,
        "status": "ACTIVE",
        "admin_state_up": True,
        "shared": True,
        "subnets": [],
        "tenant_id": "",
        "project_id": "",
        **net,
    }


def created(collection: str, body: dict[str, Any]) -> dict[str, Any]:
    """A new object of ``collection`` from a POST body, with Neutron's defaults."""
    obj = {"id": str(uuid.uuid4()), "tenant_id": "", "project_id": "", **body}
    obj["project_id"] = obj["tenant_id"] = obj.get("project_id") or obj.get("tenant_id") or ""
    if collection == "security-groups":
        obj.setdefault("description", "")
        obj["security_group_rules"] = []
    elif collection == "security-group-rules":
        group = store["security-groups"].get(str(obj.get("security_group_id")))
        if group is None:
            raise LookupError(f"security group {obj.get('security_group_id')} not found")
        group["security_group_rules"].append(obj)
    elif collection == "floatingips":
        if str(obj.get("floating_network_id")) not in store["networks"]:
            raise LookupError(f"network {obj.get('floating_network_id')} not found")
        obj.update(floating_ip_address=next(addresses), status="ACTIVE")
        obj.setdefault("port_id", None)
        obj.setdefault("fixed_ip_address", None)
    return obj


def matches(obj: dict[str, Any], query: dict[str, list[str]]) -> bool:
    for key, wanted in query.items():
        if key in ("fields", "tenant_id", "project_id", "limit", "marker", "sort_key", "sort_dir"):
            continue
        if str(obj.get(key)) not in wanted and not (obj.get(key) in (None, "") and "" in wanted):
            return False
    return True


class Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, body: Any = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self, what: str) -> None:
        self._send(404, {"NeutronError": {"type": "NotFound", "message": what, "detail": ""}})

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        data = json.loads(self.rfile.read(length) or b"{}")
        return data if isinstance(data, dict) else {}

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/")
        query = parse_qs(url.query, keep_blank_values=True)
        if path == "":
            link = {"href": f"http://127.0.0.1:{PORT}/v2.0/", "rel": "self"}
            return self._send(
                200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [link]}]}
            )
        if path == "/v2.0":
            return self._send(200, {"resources": []})
        if path == "/v2.0/extensions":
            return self._send(200, {"extensions": []})
        match = PATH.match(path)
        if not match:
            return self._not_found(path)
        collection, item = match.groups()
        key = collection.replace("-", "_")
        with lock:
            objects = list(store.get(collection, {}).values())
        if item is not None:
            found = [o for o in objects if o["id"] == item]
            if not found:
                return self._not_found(f"{KEPT.get(collection, collection)} {item}")
            return self._send(200, {KEPT[collection]: found[0]})
        fields = query.get("fields")
        listed = [o for o in objects if matches(o, query)]
        if fields:
            listed = [{k: v for k, v in o.items() if k in fields} for o in listed]
        self._send(200, {key: listed})

    def do_POST(self) -> None:
        match = PATH.match(urlsplit(self.path).path.rstrip("/"))
        if not match or match.group(1) not in KEPT or match.group(2):
            return self._send(
                400, {"NeutronError": {"type": "BadRequest", "message": "not supported"}}
            )
        collection = match.group(1)
        body = self._body().get(KEPT[collection]) or {}
        with lock:
            try:
                obj = created(collection, body)
            except LookupError as exc:
                return self._not_found(str(exc))
            store[collection][obj["id"]] = obj
        self._send(201, {KEPT[collection]: obj})

    def do_PUT(self) -> None:
        match = PATH.match(urlsplit(self.path).path.rstrip("/"))
        if not match or match.group(1) not in KEPT or not match.group(2):
            return self._not_found(self.path)
        collection, item = match.groups()
        body = self._body().get(KEPT[collection]) or {}
        with lock:
            obj = store[collection].get(item)
            if obj is None:
                return self._not_found(item)
            obj.update(body)
        self._send(200, {KEPT[collection]: obj})

    def do_DELETE(self) -> None:
        match = PATH.match(urlsplit(self.path).path.rstrip("/"))
        if not match or not match.group(2):
            return self._send(204)
        collection, item = match.groups()
        if collection not in KEPT:
            return self._send(204)
        with lock:
            obj = store[collection].pop(item, None)
            if obj is not None and collection == "security-group-rules":
                group = store["security-groups"].get(str(obj.get("security_group_id")))
                if group:
                    group["security_group_rules"].remove(obj)
        return self._send(204) if obj is not None else self._not_found(item)

    def log_message(self, *args: Any) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
