"""pyproject.toml as setuptools reads it: `pip install -e .` (`make run`) prints no warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from documentation import documentation

ROOT = Path(__file__).resolve().parents[2]


def test_setuptools_reads_the_metadata_without_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build backend's own reading of pyproject.toml (what pip runs for `pip install -e .`);
    a deprecated form, like `license = { text = ... }`, warns here as it does in `make run`."""
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(ROOT)  # license-files are globs relative to the project
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert dist.metadata.license_expression == "Apache-2.0"
    assert dist.metadata.license_files == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_pip_installs_from_a_clone_as_the_readme_says(tmp_path: Path) -> None:
    """issue 20: the README named no Python version and no way in without `make`. A copy of
    the tracked files (what a clone holds) builds with pip into a wheel that needs Python
    3.11 or newer, as the README says, and installs the `greenops-exporter` command."""
    import shutil
    import subprocess
    import sys
    import zipfile

    readme = documentation()
    assert "Python 3.11 or newer" in readme
    assert "python3 -m venv .venv && .venv/bin/pip install ." in readme
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    clone = tmp_path / "clone"
    for name in files:
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(clone),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("greenops_exporter-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "Requires-Python: >=3.11" in archive.read(metadata).decode()
        assert "greenops-exporter = " in archive.read(entry_points).decode()
    assert "greenops_exporter/cli/main.py" in names
    assert any(n.startswith("greenops_exporter/scenarios/") for n in names)  # the demo fleet
