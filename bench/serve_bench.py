"""`make bench`: the serving process as the OS counts it, beside nvitop-exporter.

Both exporters run as their own processes, at the same time, against the same stand-in
pynvml (`bench/standin.py`: the H100 recording trace_a2 played live at wall-clock speed,
one phase looped with monotonic counters, each NVML call burning the CPU it took on a real
H100 per tests/fixtures/nvml_costs/h100.json): greenops-exporter `serve` at its defaults
(nvml backend, 1 s collection) and nvitop-exporter 1.7.2 at its default 1 s interval.
For 1 and 8 GPUs, idle (no GPU process) and busy (a bf16 matmul phase, its process a live
one here), after a warm-up, each repetition is a steady window with no scrapes and one
scraped once a second. CPU is psutil's user + system time of each process and its
children over the window. Prints figures and ratios; asserts nothing.

    python bench/serve_bench.py [--quick] [--window 30] [--reps 3] [--sizes 1,8]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_exporter import free_port  # noqa: E402
from progress import Progress  # noqa: E402
from serve_report import print_report  # noqa: E402

EXPORTERS = ("greenops", "nvitop")
MODES = ("none", "scraped")


@dataclass
class Window:
    seconds: float
    cpu: float  # process CPU seconds over the window
    charged: dict[str, int]  # cost-table entries charged (their count) over the window
    calls: dict[str, int]  # NVML calls made over the window


@dataclass
class Result:
    exporter: str
    gpus: int
    load: str
    windows: dict[str, list[Window]] = field(default_factory=lambda: {m: [] for m in MODES})
    latencies: list[float] = field(default_factory=list)
    rss: int = 0
    series: int = 0
    body_bytes: int = 0


class Running:
    """One exporter process on the stand-in."""

    def __init__(
        self, exporter: str, gpus: int, load: str, pid: int, tmp: Path, standin: bool = True
    ) -> None:
        """`standin=False` runs the exporter itself, on whatever GPUs the machine has."""
        self.exporter = exporter
        self.standin = standin
        self.port = free_port()
        self.calls_file = tmp / f"{exporter}-{gpus}-{load}.json"
        if exporter == "greenops":
            args = ["serve", "--backend", "nvml", "--log-level", "warning"]
            args += ["--listen-address", f"127.0.0.1:{self.port}"]
        else:
            args = ["--bind-address", "127.0.0.1", "--port", str(self.port), "--interval", "1"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENOPS_")}
        env["PYTHONPATH"] = str(ROOT / "exporter")
        if standin:
            cmd = [sys.executable, str(ROOT / "bench" / "standin.py"), "--devices", str(gpus)]
            cmd += ["--load", load, "--pid", str(pid), "--calls-file", str(self.calls_file)]
            cmd.append(exporter)
        else:
            cmd = [sys.executable, "-m", f"{exporter}_exporter"]
        self.proc = subprocess.Popen(
            [*cmd, *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ps = psutil.Process(self.proc.pid)
        self.conn: http.client.HTTPConnection | None = None
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.exporter} exited with {self.proc.returncode}")
            try:
                self.scrape()
                return
            except OSError:
                self.conn = None
                time.sleep(0.2)
        raise SystemExit(f"{self.exporter} did not answer on port {self.port}")

    def scrape(self) -> tuple[float, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        started = time.perf_counter()
        self.conn.request("GET", "/metrics")
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"{self.exporter} answered {response.status}")
        return time.perf_counter() - started, body

    def cpu(self) -> float:
        """User + system seconds of the process, its live children and its reaped ones."""
        times = self.ps.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in self.ps.children(recursive=True):
            with_child = child.cpu_times()
            total += with_child.user + with_child.system
        return total

    def counts(self) -> dict[str, dict[str, int]]:
        """The stand-in's call and charge counts so far (it writes them on SIGUSR1)."""
        if not self.standin:
            return {"calls": {}, "charged": {}}
        self.calls_file.unlink(missing_ok=True)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not self.calls_file.exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.exporter} did not write its NVML call counts")
            time.sleep(0.01)
        data: dict[str, dict[str, int]] = json.loads(self.calls_file.read_text())
        return data

    def stop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def window(running: list[Running], seconds: float, scraped: bool, results: list[Result]) -> None:
    """One steady window for all exporters at once: counts and CPU before and after."""
    before = [r.counts() for r in running]
    cpu0 = [r.cpu() for r in running]
    started = time.monotonic()
    if scraped:
        tick = started
        while tick < started + seconds:
            for r, result in zip(running, results, strict=True):
                latency, body = r.scrape()
                result.latencies.append(latency)
                lines = [x for x in body.split(b"\n") if x and not x.startswith(b"#")]
                result.series, result.body_bytes = len(lines), len(body)
            tick += 1.0
            time.sleep(max(tick - time.monotonic(), 0.0))
    else:
        time.sleep(seconds)
    elapsed = time.monotonic() - started
    cpu1 = [r.cpu() for r in running]
    after = [r.counts() for r in running]
    for i, result in enumerate(results):
        result.windows["scraped" if scraped else "none"].append(
            Window(
                elapsed,
                cpu1[i] - cpu0[i],
                diff(after[i]["charged"], before[i]["charged"]),
                diff(after[i]["calls"], before[i]["calls"]),
            )
        )


def standin_rss(gpus: int) -> float:
    """RSS (MiB) of a Python holding only the stand-in: both exporters carry it."""
    code = (
        "import sys, psutil; sys.path.insert(0, 'bench'); import standin; "
        f"f = standin.make_standin({gpus}, 'busy', None); print(psutil.Process().memory_info().rss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 s windows, 5 s warm-up")
    parser.add_argument("--window", type=float, default=30.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before the first")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", default="1,8", help="GPU counts, comma-separated")
    parser.add_argument("--loads", default="idle,busy")
    parser.add_argument("--exporters", default=",".join(EXPORTERS))
    args = parser.parse_args()
    if args.quick:
        args.window, args.warmup = 10.0, 5.0
    sizes = [int(s) for s in args.sizes.split(",")]
    loads = args.loads.split(",")
    exporters = args.exporters.split(",")
    if "nvitop" in exporters:
        try:
            import nvitop_exporter  # noqa: F401
        except ImportError:
            raise SystemExit(
                "nvitop-exporter is not installed: pip install -e '.[bench]'"
            ) from None
    configs = [(g, load) for g in sizes for load in loads]
    per_config = args.warmup + args.reps * 2 * args.window + 3
    progress = Progress(len(configs) * (1 + 2 * args.reps), per_config * len(configs))
    # the busy phase's GPU process: a live one, so that both exporters find it in /proc
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(86400)"])
    results: list[Result] = []
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for gpus, load in configs:
                label = f"{gpus} GPU{'s' if gpus > 1 else ''} {load}"
                progress.step(f"{label}: starting, warm-up {args.warmup:g} s")
                running = [Running(e, gpus, load, holder.pid, Path(tmp)) for e in exporters]
                batch = [Result(e, gpus, load) for e in exporters]
                try:
                    time.sleep(args.warmup)
                    for rep in range(args.reps):
                        for mode in MODES:
                            progress.step(
                                f"{label}: repetition {rep + 1}/{args.reps}, "
                                f"{'scraped 1/s' if mode == 'scraped' else 'no scrapes'}"
                            )
                            window(running, args.window, mode == "scraped", batch)
                    for r, result in zip(running, batch, strict=True):
                        result.rss = r.ps.memory_info().rss
                finally:
                    for r in running:
                        r.stop()
                results.extend(batch)
    finally:
        holder.kill()
        holder.wait()
        progress.done()
    costs = json.loads((ROOT / "tests/fixtures/nvml_costs/h100.json").read_text())
    print_report(
        results,
        costs,
        standin={g: standin_rss(g) for g in sizes},
        minutes=(time.monotonic() - started) / 60,
        window=args.window,
        reps=args.reps,
    )


if __name__ == "__main__":
    main()
