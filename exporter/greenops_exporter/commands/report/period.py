"""The report's period: --from/--to or --last, aligned to the step, cut into buckets
(days where the period is whole days, else steps) that the queries evaluate one by one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from greenops_exporter.commands.carbon import parse_duration
from greenops_exporter.config.errors import UsageError

DAY = 86400


@dataclass(frozen=True)
class Period:
    start: int  # Unix seconds, exclusive: the first bucket is (start, start + bucket]
    end: int
    step: int
    bucket: int

    @property
    def buckets(self) -> int:
        return (self.end - self.start) // self.bucket

    def bucket_end(self, index: int) -> int:
        return self.start + (index + 1) * self.bucket

    def index(self, t: float) -> int:
        return round((t - self.start) / self.bucket) - 1


def parse_time(flag: str, text: str) -> float:
    """RFC 3339 / ISO 8601 (a date alone is midnight UTC) or Unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"{flag} {text!r}: expected a time like 2026-11-01, 2026-11-01T12:00:00Z or "
            "Unix seconds"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def make_period(
    start: str | None, end: str | None, last: str | None, step: str, now: float
) -> Period:
    step_s = parse_duration(step).total_seconds()
    if not (math.isfinite(step_s) and step_s >= 1 and step_s == int(step_s)):
        raise UsageError(f"--step {step!r}: must be whole seconds, 1 s or more")
    s = int(step_s)
    if last is not None and (start is not None or end is not None):
        raise UsageError("--last and --from/--to: give one or the other")
    t1: float
    if last is not None:
        t1 = math.floor(now / s) * s
        t0 = t1 - parse_duration(last).total_seconds()
    elif start is not None:
        t0 = parse_time("--from", start)
        t1 = parse_time("--to", end) if end is not None else math.floor(now / s) * s
    else:
        raise UsageError("the period: give --last DURATION (e.g. 30d) or --from T [--to T]")
    a, b = math.floor(t0 / s) * s, math.floor(t1 / s) * s
    if b - a < s:
        raise UsageError(f"the period from {iso(t0)} to {iso(t1)} is shorter than one step ({s} s)")
    bucket = DAY if (b - a) % DAY == 0 and DAY % s == 0 else s
    return Period(int(a), int(b), s, bucket)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
