"""``pip install .`` from a clean checkout builds the extension; the wheel then installs
into a fresh virtualenv with no Node on the PATH, both halves enabled.

The checkout is a copy of the files git knows (tracked, or new and not ignored): no
node_modules, no build output. Building it runs hatch-jupyter-builder, which runs npm from
package.json and package-lock.json. The wheel is installed with its ``lab`` extra from PyPI
into a virtualenv whose PATH holds nothing but the virtualenv, and ``jupyter labextension
list`` / ``jupyter server extension list`` must show the extension enabled.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from eb_sdk import __version__
from tests.fixtures.services import REPO_ROOT

pytestmark = pytest.mark.slow

DATA = f"jupyter_execution_broker-{__version__}.data/data"


def clean_checkout(dest: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = Path(REPO_ROOT) / name
        if source.is_file():  # a deleted file is still listed until committed
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    output = f"$ {' '.join(cmd)}\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
    assert done.returncode == 0, output
    return str(done.stdout + done.stderr)


def test_the_wheel_ships_the_built_extension_and_installs_without_node(tmp_path: Path) -> None:
    src = clean_checkout(tmp_path / "checkout")
    assert not (src / "node_modules").exists()
    assert not (src / "eb_labextension" / "labextension").exists()

    env = {**os.environ, "npm_config_prefer_offline": "true", "npm_config_fund": "false"}
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
        env=env,
    )
    [wheel] = (tmp_path / "dist").glob("jupyter_execution_broker-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    ext = f"{DATA}/share/jupyter/labextensions/jupyter-execution-broker"
    assert f"{ext}/package.json" in names
    assert f"{ext}/install.json" in names
    assert f"{ext}/schemas/jupyter-execution-broker/plugin.json" in names
    assert any(n.startswith(f"{ext}/static/remoteEntry.") for n in names)
    assert f"{DATA}/etc/jupyter/jupyter_server_config.d/eb_labextension.json" in names
    assert "eb_labextension/handlers.py" in names

    venv = tmp_path / "fresh"
    run([sys.executable, "-m", "venv", str(venv)])
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    bare.update({"PATH": str(venv / "bin"), "JUPYTER_CONFIG_DIR": str(tmp_path / "jcfg")})
    assert shutil.which("node", path=bare["PATH"]) is None
    assert shutil.which("npm", path=bare["PATH"]) is None
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[lab]"], env=bare)

    labext = run([str(venv / "bin" / "jupyter"), "labextension", "list"], env=bare)
    line = next(x for x in labext.splitlines() if "jupyter-execution-broker" in x)
    assert "enabled" in line and "OK" in line and "python, jupyter-execution-broker" in line, labext
    assert str(venv) in labext

    server = run([str(venv / "bin" / "jupyter"), "server", "extension", "list"], env=bare)
    lines = server.splitlines()
    at = next(i for i, x in enumerate(lines) if x.strip().startswith("eb_labextension"))
    assert "enabled" in lines[at], server
    assert "eb_labextension" in lines[at + 2] and "OK" in lines[at + 2], server
