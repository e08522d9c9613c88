"""pyproject.toml as setuptools reads it: `pip install -e .` (`make run`) prints no warning."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

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
