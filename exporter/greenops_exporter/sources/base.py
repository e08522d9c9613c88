"""The one shape every source has: fetch, parse, keep the last good value with its age,
back off on failure, and report up, errors and age for the self-metrics.

A source that fails is marked down, its error counted, one line logged per state change,
and everything else carries on with the last good value (or none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import aiohttp

log = logging.getLogger(__name__)

T = TypeVar("T")


class SourceError(Exception):
    """A fetch that failed in a way worth one clear sentence (no secrets in it)."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    kind: str  # "kubelet", "vllm", "triton", …
    name: str
    up: bool
    errors: int
    age_seconds: float | None  # since the last good fetch
    last_error: str = ""


class PolledSource(Generic[T]):
    """Polls `fetch` every `interval`; after failures waits longer (doubling, capped)."""

    kind = "source"

    def __init__(
        self,
        name: str,
        interval_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        max_backoff_seconds: float = 300.0,
    ) -> None:
        self.name = name
        self.interval_seconds = interval_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._monotonic = monotonic
        self.value: T | None = None
        self.up = False
        self.errors = 0
        self.last_error = ""
        self._last_success: float | None = None
        self._failures_in_a_row = 0
        self._retry_after: float | None = None

    async def fetch(self) -> T:
        raise NotImplementedError

    async def poll_once(self) -> bool:
        """One fetch; True when it succeeded. Never raises."""
        try:
            value = await self.fetch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)
            return False
        self.value = value
        self._last_success = self._monotonic()
        if not self.up and (self.errors or self._failures_in_a_row):
            log.info("%s source %s is back", self.kind, self.name)
        self.up = True
        self._failures_in_a_row = 0
        self._retry_after = None
        return True

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        self._failures_in_a_row += 1
        message = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
        if self.up or self.errors == 1:
            log.warning("%s source %s is down: %s", self.kind, self.name, message)
        self.up = False
        self.last_error = message
        retry_after = getattr(exc, "retry_after", None)
        self._retry_after = float(retry_after) if retry_after is not None else None

    def next_delay(self) -> float:
        if self.up or self._failures_in_a_row == 0:
            return self.interval_seconds
        backoff = self.interval_seconds * float(2 ** min(self._failures_in_a_row - 1, 10))
        if self._retry_after is not None:
            backoff = max(backoff, self._retry_after)
        return min(backoff, self.max_backoff_seconds)

    def status(self) -> SourceStatus:
        age = None if self._last_success is None else self._monotonic() - self._last_success
        return SourceStatus(self.kind, self.name, self.up, self.errors, age, self.last_error)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.next_delay())


class RetryAfter(SourceError):
    """The server asked us to come back later (HTTP 429/503 with Retry-After)."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class HttpSource(PolledSource[T]):
    """A polled source over HTTP: one aiohttp session, a deadline on every request."""

    def __init__(
        self,
        name: str,
        interval_seconds: float,
        timeout_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name, interval_seconds, monotonic)
        self.timeout_seconds = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_seconds)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
