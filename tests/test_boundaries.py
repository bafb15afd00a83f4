"""The package's shape holds: no module outside supervisor/ui loads Textual, no import cycle.

The import contracts (pyproject.toml) name packages, not lists of modules, so
a module added anywhere is covered; the first test also imports every module
outside `supervisor/ui` with Textual made unimportable, which catches an import
the static graph cannot see.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def domain_modules() -> list[str]:
    """Every module under supervisor/ but the app's (and `__main__`, which runs)."""
    found = []
    for path in sorted((ROOT / "supervisor").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if "ui" in parts or parts[-1] == "__main__":
            continue
        found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_every_module_outside_the_app_imports_with_textual_blocked() -> None:
    modules = domain_modules()
    assert "supervisor.location" in modules and "supervisor.pg.store" in modules
    code = (
        "import sys\n"
        "sys.modules['textual'] = None  # any import of textual now fails\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_import_contracts_hold() -> None:
    done = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Nothing outside supervisor.ui imports Textual KEPT" in done.stdout
    assert "No cycles" in done.stdout and "2 kept, 0 broken" in done.stdout
