"""``daybook projections``: the long-running projection runner and scheduler process."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from daybook.settings import Settings

log = logging.getLogger(__name__)


def run_forever(settings: Settings, database_url: str, redis_url: str) -> int:
    """Runs until SIGTERM/SIGINT; returns the process exit code."""
    stop = threading.Event()

    def request_stop(signum: int, _: FrameType | None) -> None:
        log.info("projections: received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log.info("projections: running")
    stop.wait()
    return 0
