"""GPUs as the node-local dcgm-exporter sees them: one GET of its page per cycle, for all.

For clusters that already run NVIDIA's dcgm-exporter (the GPU Operator installs it): no
second agent polls NVML beside DCGM, and the readings are the same as the nvml backend's,
so analysis, metrics, dashboards and alerts work unchanged. What is lost is in the README.

`read` blocks (the collection loop runs it in a worker thread). The first device to come
back for a page it has already read fetches the next one; the other devices of that cycle
wait on the lock and read the same page. So a cycle costs one request, failed or not.

dcgm-exporter caches field values for its collect interval (30 s by default). A GPU whose
series are all unchanged since the last page is not a new sample: its previous Reading
(same timestamp) is handed back, which every accumulator takes as an empty interval.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from greenops_exporter.backends.base import (
    BackendHealth,
    BackendUnavailable,
    DeviceInfo,
    DeviceReadError,
    Reading,
    ReadPlan,
)
from greenops_exporter.backends.dcgm_page import (
    GpuPage,
    PageError,
    device_info,
    parse_page,
    reading,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:9400/metrics"
MAX_PAGE_BYTES = 16 * 1024 * 1024  # 8 GPUs x 56 MIG instances of every field: under 2 MiB


def cache_hint(interval_seconds: float) -> str:
    """Why a page repeats its last sample, and the dcgm-exporter flag that changes it."""
    ms = max(round(interval_seconds * 1000), 100)
    return (
        "dcgm-exporter serves its cached sample between collections (every 30 s by default): "
        f"run it with -c {ms} (DCGM_EXPORTER_INTERVAL={ms}, milliseconds) for a new sample "
        f"every {interval_seconds:g} s"
    )


class FetchError(Exception):
    """One failed fetch; `operation` is 'fetch' (HTTP, network, deadline) or 'parse'."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(message)
        self.operation = operation


@dataclass(frozen=True, slots=True)
class _Fetched:
    """One fetch's outcome, read once by every device."""

    gpus: dict[str, GpuPage] | None
    error: FetchError | None


@dataclass
class _Device:
    info: DeviceInfo
    page: GpuPage | None = None
    reading: Reading | None = None
    plan: tuple[bool, bool, bool] | None = None


def fetch_page(url: str, timeout_seconds: float) -> str:
    """The page's text, with a deadline on the whole page and not only on each socket wait
    (a server that trickles bytes fails too), never through a proxy ($HTTP_PROXY set for
    the cluster's egress would send a node-local request elsewhere)."""
    deadline = time.monotonic() + timeout_seconds
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Accept": "text/plain"})
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(65536):
                size += len(chunk)
                if size > MAX_PAGE_BYTES:
                    raise FetchError("fetch", f"page larger than {MAX_PAGE_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise FetchError("fetch", f"page not read within {timeout_seconds:g} s")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise FetchError("fetch", f"HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out
        raise FetchError("fetch", str(getattr(exc, "reason", exc))) from exc
    return b"".join(chunks).decode("utf-8", errors="replace")


class DcgmBackend:
    name = "dcgm"
    local_pids = False  # its processes are pods with synthetic pids, not this machine's

    def __init__(
        self,
        url: str = DEFAULT_URL,
        timeout_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        kubernetes: bool | None = None,
    ) -> None:
        self.url = url
        self.kubernetes = kubernetes  # None: the page says whether its pod mapping is on
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._devices: list[_Device] = []
        self._lock = threading.Lock()
        self._fetched: _Fetched | None = None
        self._generation = 0
        self._seen: dict[int, int] = {}  # device position -> generation it read last
        self._up = False
        self._errors: dict[str, int] = {}
        self._health_lock = threading.Lock()  # never held across a fetch: health() is cheap
        # the last page and its parse: dcgm-exporter's cache is not parsed twice (None: no
        # page yet, so that an empty first page is parsed, and refused, too)
        self._text: str | None = None
        self._gpus: dict[str, GpuPage] = {}
        self.requests = 0

    def _fetch(self) -> _Fetched:
        self.requests += 1
        try:
            text = fetch_page(self.url, self.timeout_seconds)
            if text != self._text:
                self._gpus, self._text = parse_page(text, self.kubernetes), text
        except FetchError as exc:
            return _Fetched(None, exc)
        except PageError as exc:
            return _Fetched(None, FetchError("parse", str(exc)))
        return _Fetched(self._gpus, None)

    def open(self) -> list[DeviceInfo]:
        fetched = self._fetch()
        if fetched.error is not None:
            raise BackendUnavailable(f"dcgm-exporter at {self.url}: {fetched.error}")
        assert fetched.gpus is not None
        self._devices = [_Device(device_info(gpu)) for gpu in fetched.gpus.values()]
        self._up = True
        return [d.info for d in self._devices]

    def _page_for(self, position: int) -> _Fetched:
        """This cycle's page: fetched by the first device that has read the last one."""
        with self._lock:
            if self._fetched is None or self._seen.get(position) == self._generation:
                self._fetched = self._fetch()
                self._generation += 1
                self._note(self._fetched.error)
            self._seen[position] = self._generation
            return self._fetched

    def _note(self, error: FetchError | None) -> None:
        """Count failures; one log line when the page goes away and one when it is back."""
        was_up = self._up
        with self._health_lock:
            self._up = error is None
            if error is not None:
                self._errors[error.operation] = self._errors.get(error.operation, 0) + 1
        if error is None and not was_up:
            log.info("dcgm-exporter at %s answers again", self.url)
        elif error is not None and was_up:
            log.warning("dcgm-exporter at %s is down (retried every cycle): %s", self.url, error)

    def read(self, index: int, plan: ReadPlan) -> Reading:
        device = self._devices[index]
        fetched = self._page_for(index)
        if fetched.error is not None:
            raise DeviceReadError(fetched.error.operation, str(fetched.error))
        assert fetched.gpus is not None
        gpu = fetched.gpus.get(device.info.uuid)
        if gpu is None:
            raise DeviceReadError("missing", f"{device.info.uuid} is not on dcgm-exporter's page")
        wanted = (plan.gpm, plan.processes, plan.mig)
        if device.reading is None or gpu != device.page:
            self._refresh(device, gpu)
            stamp = self._clock()
        else:  # dcgm-exporter's cache: no new sample, so no new interval
            if wanted == device.plan:
                return device.reading
            stamp = device.reading.timestamp
        device.page, device.plan = gpu, wanted
        device.reading = reading(gpu, stamp, plan)
        return device.reading

    def _refresh(self, device: _Device, gpu: GpuPage) -> None:
        """Identity and capabilities follow the page (dcgm-exporter's field list can change)."""
        info = device_info(gpu)
        if info.capabilities != device.info.capabilities:
            gained = sorted(c.value for c in info.capabilities - device.info.capabilities)
            lost = sorted(c.value for c in device.info.capabilities - info.capabilities)
            log.info(
                "GPU %d (%s) capabilities changed on the page: +%s -%s",
                info.index,
                info.uuid,
                ",".join(gained) or "none",
                ",".join(lost) or "none",
            )
        device.info = info

    def health(self) -> BackendHealth:
        with self._health_lock:
            return BackendHealth(self._up, dict(self._errors))

    def device_info(self, index: int) -> DeviceInfo:
        return self._devices[index].info

    def page(self, index: int) -> GpuPage | None:
        """The GPU's series as last read, for `check` to show what the page offers."""
        return self._devices[index].page

    def close(self) -> None:
        self._fetched = None
        self._seen.clear()
