"""The domain modules work headless: importing them never loads Textual."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

DOMAIN = [
    "supervisor.store",
    "supervisor.states",
    "supervisor.jobs",
    "supervisor.report",
    "supervisor.demo",
    "supervisor.cli",
]


def test_domain_modules_import_with_textual_blocked() -> None:
    code = (
        "import sys\n"
        "sys.modules['textual'] = None  # any import of textual now fails\n"
        + "".join(f"import {m}\n" for m in DOMAIN)
        + "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_import_linter_contract_holds() -> None:
    done = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout
