"""The wheel installs whole: every module under supervisor/, the stylesheet, the themes.

Packages are found automatically (pyproject.toml); a package listed by hand and
forgotten (as `supervisor.pg` once was) made every `postgresql://` command fail
with ModuleNotFoundError when installed from the wheel, while the editable
install CI used hid it. Built here without network (the test extra brings
setuptools), and run from the unpacked wheel alone: `-S` keeps site-packages,
and with it the editable install of this checkout, off the path; the
dependencies' directory is appended after.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (building writes build/ beside them)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    source.mkdir()
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    shutil.copytree(
        ROOT / "supervisor", source / "supervisor", ignore=shutil.ignore_patterns("__pycache__")
    )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(tmp), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    [found] = tmp.glob("cubeloop_supervisor-*.whl")
    return found


@pytest.fixture(scope="module")
def unpacked(wheel: Path) -> Path:
    site = wheel.parent / "site"
    zipfile.ZipFile(wheel).extractall(site)
    return site


def run_from(site: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Python code run with the unpacked wheel first and the dependencies after."""
    import textual

    libs = str(Path(textual.__file__).parents[1])
    prelude = "import sys; sys.path.insert(0, sys.argv[1]); sys.path.append(sys.argv[2]); "
    return subprocess.run(
        [sys.executable, "-S", "-c", prelude + code, str(site), libs, *args],
        capture_output=True,
        text=True,
        cwd=site.parent,
    )


def test_the_wheel_holds_every_module_the_stylesheet_and_the_themes(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "supervisor").rglob("*.py")
        if "__pycache__" not in p.parts
    )
    assert "supervisor/pg/store.py" in modules
    assert [m for m in modules if m not in names] == []
    shipped = sorted(p.name for p in (ROOT / "supervisor/ui/themes/shipped").glob("*.toml"))
    assert shipped, "the repository ships themes"
    for name in shipped:
        assert f"supervisor/ui/themes/shipped/{name}" in names
    assert "supervisor/ui/app.tcss" in names


def test_the_unpacked_wheel_loads_its_themes(unpacked: Path) -> None:
    code = (
        "import supervisor; assert supervisor.__file__.startswith(sys.argv[1]); "
        "from supervisor.ui.themes import all_themes; "
        "themes, problems = all_themes(); print(sorted(t.name for t in themes), problems)"
    )
    out = run_from(unpacked, code)
    assert out.returncode == 0, out.stderr
    shipped = (ROOT / "supervisor/ui/themes/shipped").glob("*.toml")
    expected = sorted(p.name.removesuffix(".toml") for p in shipped)
    assert out.stdout.strip() == f"{expected} []"


@pytest.mark.postgres
def test_the_unpacked_wheel_lists_a_postgres_database(unpacked: Path, pg_dsn: str) -> None:
    code = (
        "import supervisor.cli; assert supervisor.cli.__file__.startswith(sys.argv[1]); "
        "sys.argv[1:] = ['list', sys.argv[3], '--json']; sys.exit(supervisor.cli.main())"
    )
    out = run_from(unpacked, code, pg_dsn)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("[")
