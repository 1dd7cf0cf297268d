"""Runs the parts of ``daybook serve`` as child processes and keeps them running.

Until the service is ready (the API listens), a child that exits is a failed start: the
supervisor stops the others and returns 1, rather than restarting a child that cannot
start (a port in use) in a loop. Once ready, a child that dies is reported, what it left
running in its process group is killed, and it is restarted
(with backoff; a child that keeps dying stops the whole service rather than flapping
forever). SIGINT/SIGTERM stop every child: one SIGTERM to its main process, which stops
its own workers (uvicorn and dramatiq forward it; a second signal would make dramatiq
kill its workers mid-message), then SIGKILL to its process group after a grace period.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.2
STOP_GRACE_S = 15.0
READY_TIMEOUT_S = 120.0
RESTART_BACKOFF_MAX_S = 30.0
RESTARTS_MAX_PER_WINDOW = 10
RESTART_WINDOW_S = 120.0


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    next_start_at: float = 0.0

    def start(self, env: Mapping[str, str]) -> None:
        """Starts the process in its own session, so a terminal's Ctrl-C reaches only us."""
        self.process = subprocess.Popen(list(self.argv), env=dict(env), start_new_session=True)  # noqa: S603
        log.info("started %s", self.name, extra={"pid": self.process.pid})


@dataclass(frozen=True)
class Readiness:
    """When the service counts as started, and what to do then.

    Attributes:
        check: true once the service answers (the API listens).
        on_ready: called once, when ``check`` first holds.
        timeout_s: how long a start may take.
    """

    check: Callable[[], bool]
    on_ready: Callable[[], None]
    timeout_s: float = READY_TIMEOUT_S


class Supervisor:
    """Starts children, restarts the ones that die, stops them all on a signal."""

    def __init__(self, children: Sequence[Child], env: Mapping[str, str], readiness: Readiness | None = None) -> None:
        self.children = list(children)
        self.env = env
        self.readiness = readiness
        self._stopping = False

    def run(self) -> int:
        """Runs until a stop signal (exit code 0), a failed start or a child that keeps dying (exit code 1)."""
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                child.start(self.env)
            if self.readiness is not None and not self._await_ready(self.readiness):
                return 0 if self._stopping else 1
            while not self._stopping:
                if not self._tend():
                    return 1
                time.sleep(POLL_INTERVAL_S)
            return 0
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _await_ready(self, readiness: Readiness) -> bool:
        """Waits until ready; ``False`` when a child exited first, time ran out or a stop was asked."""
        deadline = time.monotonic() + readiness.timeout_s
        while not self._stopping:
            for child in self.children:
                code = child.process.poll() if child.process is not None else None
                if code is not None:
                    log.error("%s exited with code %s before Daybook was ready; stopping", child.name, code)
                    return False
            if readiness.check():
                readiness.on_ready()
                return True
            if time.monotonic() > deadline:
                log.error("Daybook was not ready within %.0f s; stopping", readiness.timeout_s)
                return False
            time.sleep(POLL_INTERVAL_S)
        return False

    def _request_stop(self, signum: int, _: FrameType | None) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        self._stopping = True

    def _tend(self) -> bool:
        now = time.monotonic()
        for child in self.children:
            if child.process is None:
                if now >= child.next_start_at:
                    child.start(self.env)
                continue
            code = child.process.poll()
            if code is None:
                continue
            log.error("%s exited with code %s; restarting", child.name, code)
            # What it started and left behind goes with it (a server's worker process would
            # otherwise keep the port, and its own committer, after its parent was killed).
            _signal_group(child.process, signal.SIGKILL)
            child.process = None
            child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_S] + [now]
            if len(child.restarts) > RESTARTS_MAX_PER_WINDOW:
                log.error(
                    "%s died %d times in %.0f s; giving up",
                    child.name,
                    len(child.restarts),
                    RESTART_WINDOW_S,
                )
                return False
            child.next_start_at = now + min(RESTART_BACKOFF_MAX_S, 0.5 * 2 ** (len(child.restarts) - 1))
        return True

    def stop_all(self) -> None:
        """One SIGTERM to each child's main process; SIGKILL to the group of those still running after the grace."""
        running = [c for c in self.children if c.process is not None and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in %.0f s; killing it", child.name, STOP_GRACE_S)
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait(timeout=5)
            # Whatever it started and left behind goes with it.
            _signal_group(child.process, signal.SIGKILL)
            log.info("%s stopped (exit code %s)", child.name, child.process.returncode)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
