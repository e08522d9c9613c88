"""`--log-format json` (node_exporter's `--log.format=json`): every line on stderr is one
JSON object with the time, the level, the logger and the message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest


def record(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`record` on a sim where GPU 1 is lost from the start: info and warning lines."""
    (tmp_path / "sc.yaml").write_text(
        "gpus:\n  - {model: l4}\n  - {model: l4, lost_after_seconds: 0}\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("GREENOPS_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenops_exporter",
            "record",
            "--backend",
            "sim",
            "--scenario",
            str(tmp_path / "sc.yaml"),
            "--collect-interval",
            "0.25",
            "--duration",
            "1",
            "--out",
            str(tmp_path / "r.jsonl"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=base | (env or {}),
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_every_log_line_is_a_json_object(tmp_path: Path, how: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    if how == "flag":
        stderr = record(tmp_path, "--log-format", "json")
    else:
        stderr = record(tmp_path, env={"GREENOPS_LOG_FORMAT": "json"})
    lines = stderr.splitlines()
    assert len(lines) >= 2
    entries = [json.loads(line) for line in lines]  # each line alone is JSON
    after = datetime.now(UTC) + timedelta(seconds=1)
    for entry in entries:
        assert set(entry) == {"time", "level", "logger", "msg"}, entry
        assert entry["time"].endswith("Z")
        assert before <= datetime.fromisoformat(entry["time"]) <= after
        assert entry["level"] in ("debug", "info", "warning", "error")
        assert entry["logger"].startswith("greenops_exporter")
    assert any(e["level"] == "info" and e["msg"] == "backend sim: 2 device(s)" for e in entries)
    assert any(e["level"] == "warning" and "is stale" in e["msg"] for e in entries)


def test_text_stays_the_default(tmp_path: Path) -> None:
    lines = record(tmp_path).splitlines()
    assert any(
        line.endswith(" INFO greenops_exporter.collect.loop: backend sim: 2 device(s)")
        for line in lines
    )
    assert not any(line.startswith("{") for line in lines)


def test_an_unknown_log_format_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "greenops_exporter", "check", "--log-format", "xml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "argument --log-format: invalid choice: 'xml'" in result.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENOPS_")}
    bad = subprocess.run(
        [sys.executable, "-m", "greenops_exporter", "check", "--print-config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env | {"GREENOPS_LOG_FORMAT": "xml"},
    )
    assert bad.returncode == 2
    assert "log_format: Input should be 'text' or 'json'" in bad.stderr
    assert "[from $GREENOPS_LOG_FORMAT]" in bad.stderr
