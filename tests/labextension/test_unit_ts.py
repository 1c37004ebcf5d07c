"""The TypeScript unit tests (vitest, tests/labextension/unit/) as one pytest test, so that
``./dev test`` runs them. ``./dev setup`` installs node_modules from package-lock.json."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.fixtures.services import REPO_ROOT


def test_typescript_unit_tests_pass() -> None:
    npm = shutil.which("npm")
    assert npm, "npm is missing: install Node.js 20 (./dev setup needs it for the extension)"
    vitest = Path(REPO_ROOT) / "node_modules" / ".bin" / "vitest"
    assert vitest.exists(), f"{vitest} is missing: ./dev setup runs npm ci"
    done = subprocess.run(
        [npm, "run", "test:unit", "--silent"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
