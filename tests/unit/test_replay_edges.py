"""Replaying several recordings at once: each GPU its own identity even where one
probe.json names both, and the end of the replay said once however the GPUs' threads
interleave."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import pytest

from fakenvml import FIXTURES
from greenops_exporter.backends.base import DeviceReadError, ReadPlan
from greenops_exporter.backends.replay import ReplayBackend

H100_UUID = "GPU-e8b6b100-c246-322a-802b-56ddb5cc4c04"  # tests/fixtures/h100/probe.json


def two_recordings(tmp_path: Path, lines: int = 30) -> list[Path]:
    """Two recordings beside the single-GPU probe.json (its `static` entry names one H100)."""
    shutil.copy(FIXTURES / "probe.json", tmp_path / "probe.json")
    out = []
    for name in ("trace_a.jsonl", "trace_a2.jsonl"):
        text = (FIXTURES / name).read_text().splitlines(keepends=True)[:lines]
        (tmp_path / name).write_text("".join(text))
        out.append(tmp_path / name)
    return out


def test_recordings_sharing_a_probe_entry_replay_as_distinct_gpus(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = two_recordings(tmp_path)
    backend = ReplayBackend(files)
    with caplog.at_level(logging.WARNING, "greenops_exporter.backends.replay"):
        first = backend.open()
        backend.close()
        again = backend.open()  # `serve` opens it to check, then again to play
    assert first == again
    assert [i.uuid for i in first] == [H100_UUID, f"{H100_UUID}-replay1"]
    assert [i.pci_bus_id for i in first] == ["00000000:00:06.0", "replay:1"]
    assert [i.name for i in first] == ["NVIDIA H100 80GB HBM3"] * 2  # the model is kept
    said = [r.getMessage() for r in caplog.records if "same GPU" in r.getMessage()]
    assert said == [
        f"replay: {files[1]} is of the same GPU (uuid {H100_UUID}, bus 00000000:00:06.0) "
        f"as an earlier recording (one probe.json entry for both): replayed as "
        f"{H100_UUID}-replay1, bus replay:1"
    ]
    # the same file twice too
    twice = ReplayBackend([files[0], files[0]]).open()
    assert len({i.uuid for i in twice}) == len({i.pci_bus_id for i in twice}) == 2


class SlowHandler(logging.Handler):
    """A log line that takes a while to write, as `serve`'s stderr into a busy pipe does:
    the other GPU's thread runs meanwhile."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        time.sleep(0.005)
        self.messages.append(record.getMessage())


def test_the_end_of_every_recording_is_said_once_when_gpus_end_together(
    tmp_path: Path,
) -> None:
    """The collector reads GPUs in parallel threads: two ending in the same cycle both saw
    "every recording has reached its end" and logged it twice (seen on `serve
    --no-replay-loop` with two recordings of one length). Two threads released together,
    over a few rounds."""
    files = two_recordings(tmp_path, lines=3)
    handler = SlowHandler()
    logger = logging.getLogger("greenops_exporter.backends.replay")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    now = [0.0]
    rounds = 10
    try:
        for _ in range(rounds):
            backend = ReplayBackend(files, loop=False, clock=lambda: now[0], exact_once=False)
            now[0] = 0.0
            backend.open()
            now[0] = 1000.0  # both recordings are over
            gate = threading.Barrier(2)

            def read(index: int, backend: ReplayBackend, gate: threading.Barrier) -> None:
                gate.wait()
                with pytest.raises(DeviceReadError):
                    backend.read(index, ReadPlan())

            threads = [threading.Thread(target=read, args=(i, backend, gate)) for i in (0, 1)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    ends = [m for m in handler.messages if m == "replay: every recording has reached its end"]
    assert len(ends) == rounds
    assert len([m for m in handler.messages if "reached its end; its GPU" in m]) == 2 * rounds
