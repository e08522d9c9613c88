"""The serve path imports only what the default config uses (RSS, issue 18)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_serve_path_leaves_out_what_defaults_do_not_use() -> None:
    code = (
        "import sys, json; import greenops_exporter.commands.serve, greenops_exporter.http.server, "
        "greenops_exporter.backends.nvml; print(json.dumps(sorted(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "exporter")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    loaded = {m.split(".")[0] for m in json.loads(done.stdout)}
    # bcrypt only with basic auth, grpc only with pod-resources on
    assert not loaded & {"bcrypt", "grpc"}
    assert "aiohttp" in loaded  # it did import the serve path
