"""The project installs as one package: pyproject.toml is the one source of its requirements."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.paths import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAME = PROJECT["name"]


def _normalised(requirement: str) -> str:
    """One spelling per requirement: no spaces, double quotes in markers."""
    return re.sub(r"\s+", "", requirement.split(" #")[0]).replace("'", '"')


def extra(name: str) -> set[str]:
    """Every requirement an install of ``[name]`` pins, the extras it names resolved."""
    found: set[str] = set()
    for requirement in PROJECT["optional-dependencies"][name]:
        nested = re.fullmatch(rf"{NAME}\[(?P<extras>[\w,-]+)\]", requirement)
        if nested:
            for other in nested["extras"].split(","):
                found |= extra(other)
        else:
            found.add(_normalised(requirement))
    return found | {_normalised(r) for r in PROJECT["dependencies"]}


def requirements_file(path: Path) -> set[str]:
    found: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("  #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            found |= requirements_file(path.parent / line.removeprefix("-r ").strip())
        else:
            found.add(_normalised(line))
    return found


@pytest.mark.parametrize(
    ("file", "extra_name"),
    [
        ("service-common.txt", "service-common"),
        ("service.txt", "service"),
        ("service-gpu.txt", "service-gpu"),
        ("train.txt", "train"),
        ("dev.txt", "dev"),
    ],
)
def test_requirements_files_pin_what_pyproject_pins(file: str, extra_name: str):
    assert requirements_file(REPO / "requirements" / file) == extra(extra_name)


def test_the_service_extras_leave_torch_out():
    for name in ("service", "service-gpu", "test"):
        assert not any(r.startswith(("torch", "torchvision")) for r in extra(name)), name


@pytest.mark.parametrize("script", sorted(PROJECT["scripts"]))
def test_every_console_script_is_installed_and_answers_help(script: str):
    """The environment the tests run in is an install of the project: its scripts are next to Python."""
    path = Path(sys.executable).parent / script
    assert path.is_file(), f"{script} is not installed (pip install -e '.[dev]')"
    result = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_no_code_changes_sys_path():
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("pipeline", "service", "training", "bench", "tests")
        for path in (REPO / folder).rglob("*.py")
        if "sys.path" in path.read_text() and path != Path(__file__)
    ]
    assert offenders == []
