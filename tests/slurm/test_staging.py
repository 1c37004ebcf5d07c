"""Data staging on a real Slurm cluster: the data is staged on the shared file system before
the job is submitted, and the notebook on the node reads it where the volume mount says."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.broker.helpers import accept
from tests.fixtures.data_server import DataServer
from tests.fixtures.slurm import SlurmCluster
from tests.slurm.conftest import SlurmBroker, wait_phase, write_notebook
from tests.slurm.test_broker import ask, messages_of, precise
from tests.staging.helpers import data_request


def test_notebook_on_a_node_reads_the_staged_data(
    slurm_broker: SlurmBroker, slurm: SlurmCluster, tmp_path: Path
) -> None:
    server = DataServer(tmp_path / "files", rate=4 * 1024 * 1024).start()
    try:
        url = server.file("obs.bin", 1024 * 1024)
        digest = hashlib.sha256((server.root / "obs.bin").read_bytes()).hexdigest()
        notebook = write_notebook(
            tmp_path / "read.ipynb",
            "import hashlib, os\n"
            "path = os.path.join(os.environ['EB_MOUNT_ROOT'], 'data', 'obs.bin')\n"
            f"assert hashlib.sha256(open(path, 'rb').read()).hexdigest() == {digest!r}\n"
            "assert os.environ['EB_DATA_OBS'] == path",
        )
        body = data_request(
            str(notebook),
            {"obs": url},
            mounts={"obs": ("/data/obs.bin", "READONLY")},
            duration="PT2M",
        )
        broker = slurm_broker('--DataStaging.trusted_hosts=["127.0.0.1"]')
        with broker.client() as c:
            answer = ask(c, body)
            assert answer["result"] == "YES", answer
            offer = precise(answer)[0]
            assert offer["jeb:staging"]["bytes"] == 1024 * 1024
            assert accept(c, offer["meta"]["url"]).status_code == 200
            done = wait_phase(c, offer["meta"]["uuid"], "COMPLETED", "FAILED", "CANCELLED")
        assert done["phase"] == "COMPLETED", messages_of(done)
        assert done["jeb:staging"]["state"] == "staged"
        link = Path(done["jeb:outputs"]["log"]).parent / "data" / "obs.bin"
        assert link.is_symlink() and ".eb-staging" in str(link.resolve())
    finally:
        server.stop()
