"""A read-only stand-in for Neutron, so a real Nova serves servers booted with networks "none".

Nova asks Neutron about a server's ports, floating IPs and security groups even when it has no
network (server show, delete); this answers every list with an empty one, a GET of one object
with 404, and DELETE with 204. It is not a network service: nothing network-related can be
tested with it (docs/testing.md).

    python neutron_stub.py PORT
"""

from __future__ import annotations

import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 19696
LIST = re.compile(r"^/v2\.0/([a-z-]+)$")


class Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, body: Any = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "":
            link = {"href": f"http://127.0.0.1:{PORT}/v2.0/", "rel": "self"}
            self._send(200, {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [link]}]})
        elif path == "/v2.0":
            self._send(200, {"resources": []})
        elif path == "/v2.0/extensions":
            self._send(200, {"extensions": []})
        elif match := LIST.match(path):
            self._send(200, {match.group(1).replace("-", "_"): []})
        else:
            self._send(404, {"NeutronError": {"type": "NotFound", "message": path, "detail": ""}})

    def do_DELETE(self) -> None:
        self._send(204)

    def log_message(self, *args: Any) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
