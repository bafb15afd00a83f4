"""The wheel carries what the app reads from disk: its stylesheet and the shipped themes.

The themes live at the top of the repository (themes/) and install as the
package `supervisor.ui.themes.shipped`; a wheel that left them out would
start an app with no theme. Built here without network (the test extra
brings setuptools), and opened from a fresh directory so nothing of the
checkout is on the path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import ROOT


def test_the_wheel_ships_the_themes_and_the_stylesheet(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: building writes build/ beside the sources
    source.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    for part in ("supervisor", "themes"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("agent_supervisor-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(p.name for p in (ROOT / "themes").glob("*.toml"))
    assert shipped, "the repository ships themes"
    for name in shipped:
        assert f"supervisor/ui/themes/shipped/{name}" in names
    assert "supervisor/ui/app.tcss" in names
    # Loaded from the unpacked wheel: `-S` keeps site-packages, and with it the
    # editable install of this checkout, off the path; textual is added back after.
    import textual

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    libs = str(Path(textual.__file__).parents[1])
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.path.append(sys.argv[2]); "
        "import supervisor; assert supervisor.__file__.startswith(sys.argv[1]); "
        "from supervisor.ui.themes import all_themes; "
        "themes, problems = all_themes(); print(sorted(t.name for t in themes), problems)"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(site), libs],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    expected = sorted(name.removesuffix(".toml") for name in shipped)
    assert out.stdout.strip() == f"{expected} []"
