"""Run an exporter against the stand-in pynvml played live, for `make bench`.

    python bench/standin.py --devices 8 --load busy --pid 1234 --calls-file F \\
        greenops [serve arguments] | nvitop [nvitop-exporter arguments]

It puts `tests/fakenvml_live.LiveFakeNvml` (the H100 recording trace_a2, one phase looped
at wall-clock speed, each call burning the CPU it took on a real H100) in place of
`pynvml`, then runs the exporter's own entry point in this process, so that the process
the OS counts is the exporter's. On SIGUSR1 it writes the NVML calls made so far and the
cost-table entries charged for them (name -> count) to the calls file: the bench counts
calls per second per function, and the table's NVML CPU, from two such writes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fakenvml import FIXTURES, load_trace  # noqa: E402
from fakenvml_live import LiveFakeNvml, idle_rows, phase_rows  # noqa: E402

BUSY_PHASE = "compute_matmul_bf16"


def make_standin(devices: int, load: str, pid: int | None, costs: bool = True) -> LiveFakeNvml:
    trace = load_trace(FIXTURES / "trace_a2.jsonl")
    rows = idle_rows(trace) if load == "idle" else phase_rows(trace, BUSY_PHASE)
    fake = LiveFakeNvml(trace, rows, devices=devices, pid=pid)
    if costs:
        fake.load_costs()
    return fake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--load", choices=["idle", "busy"], default="idle")
    parser.add_argument("--pid", type=int, help="the live process the recorded GPU process is")
    parser.add_argument("--calls-file", type=Path)
    parser.add_argument("--no-costs", action="store_true", help="stand-in calls cost nothing")
    parser.add_argument("exporter", choices=["greenops", "nvitop"])
    args, rest = parser.parse_known_args()
    fake = make_standin(args.devices, args.load, args.pid, costs=not args.no_costs)
    sys.modules["pynvml"] = fake

    calls_file = args.calls_file

    def dump(_signum: int, _frame: FrameType | None) -> None:
        if calls_file is not None:
            tmp = calls_file.with_suffix(".tmp")
            counts = {"calls": dict(fake.calls), "charged": dict(fake.charged)}
            tmp.write_text(json.dumps(counts))
            os.replace(tmp, calls_file)

    signal.signal(signal.SIGUSR1, dump)
    if args.exporter == "greenops":
        from greenops_exporter.cli import main as greenops_main

        sys.argv = ["greenops-exporter", *rest]
        sys.exit(greenops_main())
    from nvitop_exporter.cli import main as nvitop_main

    sys.argv = ["nvitop-exporter", *rest]
    sys.exit(nvitop_main())


if __name__ == "__main__":
    main()
