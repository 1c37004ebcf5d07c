"""End to end on a real OpenStack: eb-broker --platform=openstack, real Keystone, Placement,
Glance and Nova (fake virt driver: servers really go BUILD → ACTIVE; nothing boots, so the
tests play the network (accessIPv4) and the guest where they need a service inside)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.broker.helpers import COMPUTE, NOTEBOOK, SERVER, accept
from tests.fixtures.kubernetes import wait_for
from tests.kubernetes.test_kubernetes_e2e import accept_first, book, messages, wait_phase
from tests.openstack.conftest import Site

VM = "urn:jeb:v1:executable:virtual-machine"
CONTAINER = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/docker-container.yaml"
FINAL = {"COMPLETED", "FAILED", "CANCELLED"}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJwZWFjaC1icm9rZXItdGVzdC1rZXktMDAwMDAwMDAw alice@lab"
USER_DATA = "#cloud-config\nruncmd:\n  - [sh, -c, 'docker compose -f /srv/app.yaml up -d']\n"


def vm_request(
    cores: dict[str, int], memory: dict[str, int] | None = None, **vm: Any
) -> dict[str, Any]:
    return {
        "executable": {"kind": VM, **vm},
        "compute": {"kind": COMPUTE, "cores": cores, "memory": memory or {"min": 1}},
        "schedule": {"requested": {"duration": "PT1H"}},
    }


def compute_of(offer: dict[str, Any]) -> tuple[int, int]:
    return offer["compute"]["cores"]["min"], offer["compute"]["memory"]["min"]


def server_of(site: Site, uuid: str) -> Any:
    return wait_for(lambda: site.project.server(f"eb-{uuid}"), 30, f"the server of {uuid}")


def test_vm_booked_for_later_created_at_the_slot_available_cancelled(
    os_site: Site, os_broker: Any
) -> None:
    """A VM booked 12 s ahead: offers are whole flavors within the request, nothing exists on
    the cloud until the slot (minus the preparation), then the server is created with the
    smallest flavor that gives the booked resources, the request's image, user data and SSH
    key, a security group of its own that opens port 22 and a floating IP (which waits for a
    port: these servers have no network); ACTIVE → RUNNING → AVAILABLE (console check) with an
    SSH connector; cancelling deletes the server, its keypair, security group and floating IP."""
    broker = os_broker(
        session_security_group=True, allowed_cidr="198.51.100.0/24", floating_network="eb-public"
    )
    start = (datetime.now(UTC) + timedelta(seconds=12)).replace(microsecond=0)
    body = vm_request(
        {"min": 2},
        {"min": 2},
        image="eb-cirros",
        user_data=USER_DATA,
        ssh_public_key=KEY,
    )
    body["schedule"]["requested"]["start"] = start.isoformat().replace("+00:00", "Z")
    with broker.client() as c:
        caps = c.get("/capabilities").json()
        assert caps["platform"] == "openstack", caps
        assert VM in caps["executables"], caps

        answer = c.post("/requests", json=body).json()
        assert answer["result"] == "YES", answer
        assert {compute_of(o) for o in answer["offers"]} == {(2, 2)}, "flavor eb.2c2g"
        url, offer = accept_first(c, answer)
        uuid = offer["meta"]["uuid"]
        assert offer["schedule"]["available"]["start"].startswith(
            start.strftime("%Y-%m-%dT%H:%M:%S")
        )

        # held in the ledger only: no server before the slot minus the preparation (2 s)
        time.sleep(max((start - datetime.now(UTC)).total_seconds() - 5, 0))
        assert site_server(os_site, uuid) is None, "no server before the slot"
        assert c.get(url).json()["phase"] == "WAITING"

        server = server_of(os_site, uuid)
        created = datetime.fromisoformat(server.created_at.replace("Z", "+00:00"))
        assert created >= start - timedelta(seconds=4), (created, start)
        assert server.flavor["original_name"] == "eb.2c2g"
        assert server.key_name == f"eb-{uuid}"
        assert "eb-broker:eb-broker" in server.tags
        assert server.metadata["eb-session"] == uuid and server.metadata["eb-owner"] == "alice"
        assert os_site.project.user_data(server.id) == USER_DATA
        member = os_site.project.member()
        try:
            group = member.network.find_security_group(f"eb-{uuid}", ignore_missing=False)
            rules = [
                (r["port_range_min"], r["remote_ip_prefix"]) for r in group.security_group_rules
            ]
            assert rules == [(22, "198.51.100.0/24")]
            (ip,) = member.network.ips(description=f"Execution Broker session {uuid}")
            assert ip.floating_ip_address.startswith("203.0.113.")
        finally:
            member.close()

        session = wait_phase(c, url, {"RUNNING", *FINAL})
        assert session["phase"] == "RUNNING", session
        wait_for(
            lambda: "waits for the server's network port" in messages(c.get(url).json()),
            30,
            "the floating IP waiting for a port",
        )
        wait_for(
            lambda: "waiting for the server's address" in messages(c.get(url).json()),
            30,
            "the broker waiting for an address",
        )
        assert c.get(url).json()["phase"] == "RUNNING"
        os_site.project.set_address(server.id, "192.0.2.17")  # as a network would
        session = wait_phase(c, url, {"AVAILABLE", *FINAL})
        assert session["phase"] == "AVAILABLE", (session, broker.log()[-3000:])
        (ssh,) = session["connectors"]
        assert ssh["kind"] == "urn:jeb:v1:connector:ssh"
        assert ssh["location"] == "ssh://ubuntu@192.0.2.17"
        assert session["jeb:outputs"]["flavor"] == "eb.2c2g"
        member = os_site.project.member()
        try:
            assert member.compute.find_keypair(f"eb-{uuid}") is not None

            assert accept(c, url, "CANCELLED").status_code == 200
            assert wait_phase(c, url, FINAL)["phase"] == "CANCELLED"
            wait_for(lambda: site_server(os_site, uuid) is None, 30, "the server deleted")
            assert member.compute.find_keypair(f"eb-{uuid}") is None
            assert member.network.find_security_group(f"eb-{uuid}") is None
            assert not list(member.network.ips(description=f"Execution Broker session {uuid}"))
        finally:
            member.close()


def site_server(site: Site, uuid: str) -> Any:
    return site.project.server(f"eb-{uuid}")


def test_jupyter_server_in_a_vm_answers_through_its_connector(
    os_site: Site, os_broker: Any
) -> None:
    """A JupyterServer request runs in the site's Jupyter image: the broker's cloud-config
    starts `jupyter server` with a token; once the service answers (the test plays the guest
    and runs exactly that), the session is AVAILABLE with a working connector."""
    broker = os_broker(profiles={"jupyter-server": {"image": "eb-jupyter"}}, server_port=18888)
    body = {
        "executable": {"kind": SERVER},
        "compute": {"kind": COMPUTE, "cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {"requested": {"duration": "PT1H"}},
    }
    with broker.client() as c:
        url, offer = book(c, body)
        uuid = offer["meta"]["uuid"]
        server = server_of(os_site, uuid)
        wait_for(lambda: os_site.project.server(f"eb-{uuid}").status == "ACTIVE", 60, "ACTIVE")
        assert server.flavor["original_name"] == "eb.1c1g"
        assert c.get(url).json()["phase"] in ("PREPARING", "RUNNING")
        guest = os_site.guest(server.id)
        session = wait_phase(c, url, {"AVAILABLE", *FINAL}, timeout=120)
        assert session["phase"] == "AVAILABLE", (session, guest.output()[-2000:])
        (connector,) = session["connectors"]
        assert connector["kind"] == "urn:jeb:v1:connector:jupyter-server"
        assert connector["location"].startswith(f"http://{guest.address}:18888/?token=")
        status = connector["location"].replace("/?token=", "/api/status?token=")
        assert httpx.get(status, timeout=10).status_code == 200
        assert httpx.get(status.split("?")[0], timeout=10).status_code == 403  # token needed

        assert accept(c, url, "CANCELLED").status_code == 200
        assert wait_phase(c, url, FINAL)["phase"] == "CANCELLED"
        wait_for(lambda: site_server(os_site, uuid) is None, 30, "the server deleted")


def test_runs_in_vms_end_when_the_vm_powers_off_and_error_fails(
    os_site: Site, os_broker: Any
) -> None:
    """A notebook and a container run in the site's images (papermill / docker run in the
    user data); the run ends when its VM powers off (SHUTOFF). A server Nova cannot place
    (an s390x image) ends FAILED with Nova's fault message."""
    broker = os_broker(
        profiles={
            "jupyter-notebook": {"image": "eb-jupyter"},
            "docker-container": {"image": "eb-docker"},
        }
    )
    notebook = {
        "executable": {
            "kind": NOTEBOOK,
            "location": "https://example.org/nb.ipynb",
            "jeb:parameters": {"x": 21},
        },
        "compute": {"kind": COMPUTE, "cores": {"min": 1}, "memory": {"min": 2}},
        "schedule": {"requested": {"duration": "PT10M"}},
    }
    container = {
        "executable": {
            "kind": CONTAINER,
            "image": {"locations": ["docker.io/library/busybox:1.36"]},
            "command": ["sh", "-c", "echo hi"],
        },
        "compute": {"kind": COMPUTE, "cores": {"min": 1}, "memory": {"min": 1}},
        "schedule": {"requested": {"duration": "PT10M"}},
    }
    with broker.client() as c:
        nb_url, nb_offer = book(c, notebook)
        box_url, box_offer = book(c, container)
        bad_url, _ = book(c, vm_request({"min": 1}, image="eb-s390x"))

        session = wait_phase(c, bad_url, FINAL)
        assert session["phase"] == "FAILED", session
        assert "No valid host was found" in messages(session), messages(session)
        assert "urn:execution-failed" in json.dumps(session["meta"]["messages"])

        for url, offer, _image, command in (
            (nb_url, nb_offer, "eb-jupyter", "papermill"),
            (box_url, box_offer, "eb-docker", "docker"),
        ):
            uuid = offer["meta"]["uuid"]
            assert wait_phase(c, url, {"RUNNING", *FINAL})["phase"] == "RUNNING"
            server = server_of(os_site, uuid)
            user_data = os_site.project.user_data(server.id)
            assert f'ExecStart="{command}"' in user_data, user_data
            assert "jeb-exit: $$EXIT_STATUS" in user_data and "poweroff" in user_data
            os_site.project.power_off(server.id)  # what the unit does when the run ends
            session = wait_phase(c, url, FINAL)
            assert session["phase"] == "COMPLETED", session
            assert "no exit status" in messages(session)  # the fake driver's console
            wait_for(lambda u=uuid: site_server(os_site, u) is None, 30, "the server deleted")


def test_gpu_flavor_from_placement_inventory(os_site: Site, os_broker: Any) -> None:
    """Accelerators come from Placement's inventory of a resource class (here CUSTOM_MAGIC on a
    nested provider of the fake hypervisor); the booked flavor asks for one unit, and Nova
    really schedules it."""
    broker = os_broker()
    gpu = {"jeb:accelerators": [{"type": "GPU", "count": {"min": 1}}]}
    with broker.client() as c:
        caps = c.get("/capabilities").json()
        assert "gpu:magic" in json.dumps(caps), caps
        body = vm_request({"min": 1})
        body["compute"].update(gpu)
        answer = c.post("/requests", json=body).json()
        assert answer["result"] == "YES", answer
        url, offer = accept_first(c, answer)
        accels = offer["compute"]["jeb:accelerators"]
        assert accels[0]["count"]["min"] == 1 and "magic" in json.dumps(accels)
        server = server_of(os_site, offer["meta"]["uuid"])
        assert server.flavor["original_name"] == "eb.magic"
        session = wait_phase(c, url, {"AVAILABLE", *FINAL})
        assert session["phase"] == "AVAILABLE", session
        assert accept(c, url, "CANCELLED").status_code == 200
        wait_phase(c, url, FINAL)


def test_quota_and_foreign_servers_bound_offers(os_site: Site, os_broker: Any) -> None:
    """The project's quota bounds the offers (NO with a message naming the quota when a
    request cannot fit it), and servers the broker did not start count against it."""
    admin = os_site.cloud.admin()
    try:
        admin.compute.update_quota_set(os_site.project.id, cores=3, ram=4096)
    finally:
        admin.close()
    member = os_site.project.member()
    try:
        image = member.image.find_image("eb-cirros", ignore_missing=False)
        flavor = member.compute.find_flavor("eb.1c1g", ignore_missing=False)
        foreign = member.compute.create_server(
            name="not-the-broker", image_id=image.id, flavor_id=flavor.id, networks="none"
        )
        member.compute.wait_for_server(foreign, wait=60)
    finally:
        member.close()
    broker = os_broker()
    with broker.client() as c:
        no = c.post("/requests", json=vm_request({"min": 4})).json()
        assert no["result"] == "NO", no
        text = json.dumps(no["meta"]["messages"])
        assert "quota" in text and "maxTotalCores=3" in text, text
        assert "1 used by servers the broker did not start" in text, text
        assert "urn:resource-limit" in text

        answer = c.post("/requests", json=vm_request({"min": 1, "max": 8})).json()
        assert answer["result"] == "YES", answer
        assert {compute_of(o)[0] for o in answer["offers"]} == {1, 2}, "3 cores - 1 foreign"


def test_nova_api_outage_refuses_requests_and_sessions_recover(
    os_site: Site, os_broker: Any
) -> None:
    """nova-api stopped: new requests get NO (urn:platform-unavailable), a running VM keeps
    its phase, a cancel waits (RELEASING); when nova-api is back the cancel completes (the
    server is deleted) and offers come again."""
    broker = os_broker()
    cloud = os_site.cloud
    body = vm_request({"min": 1})
    with broker.client() as c:
        kept_url, _ = book(c, body)
        cancelled_url, cancelled = book(c, body)
        for url in (kept_url, cancelled_url):
            session = wait_phase(c, url, {"AVAILABLE", *FINAL})
            assert session["phase"] == "AVAILABLE", (session, broker.log()[-3000:])
        cloud.stop_nova_api()
        try:

            def refused() -> dict[str, Any] | None:
                answer = dict(c.post("/requests", json=body).json())
                return answer if answer["result"] == "NO" else None

            answer = wait_for(refused, 40, "a NO while nova-api is down", every=0.5)
            kinds = {m["kind"] for m in answer["meta"]["messages"]}
            assert "urn:platform-unavailable" in kinds, answer
            assert "cannot reach OpenStack" in json.dumps(answer["meta"]["messages"])
            assert accept(c, cancelled_url, "CANCELLED").status_code == 200
            for _ in range(5):
                assert c.get(kept_url).json()["phase"] == "AVAILABLE"
                assert c.get(cancelled_url).json()["phase"] in ("AVAILABLE", "RELEASING")
                time.sleep(0.3)
        finally:
            cloud.start_nova_api()
        session = wait_phase(c, cancelled_url, FINAL, timeout=60)
        assert session["phase"] == "CANCELLED", session
        uuid = cancelled["meta"]["uuid"]
        wait_for(lambda: site_server(os_site, uuid) is None, 30, "its server deleted after")

        def offered() -> dict[str, Any] | None:
            answer = dict(c.post("/requests", json=body).json())
            return answer if answer["result"] == "YES" else None

        wait_for(offered, 40, "offers again once nova-api is back", every=0.5)
        assert c.get(kept_url).json()["phase"] == "AVAILABLE"
        assert accept(c, kept_url, "CANCELLED").status_code == 200
        assert wait_phase(c, kept_url, FINAL)["phase"] == "CANCELLED"
