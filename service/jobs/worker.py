"""Running a worker: standalone (`soundalike worker`) or beside the API (`soundalike serve`).

A standalone worker runs its job loop on a thread and its model calls on the main thread
(``service.domain.models.main_thread_inference``: a model runs ~1.6x faster there in this torch build); beside
the API the loop owns the main thread and models run on the inference thread.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import procrastinate

from service.domain.models.main_thread_inference import MainThreadInference
from service.jobs.queue import JOB_QUEUES
from service.jobs.runtime import Runtime
from service.net import ensure_port_free
from service.settings import MetricsSettings

log = logging.getLogger(__name__)


async def run_worker(app: procrastinate.App, runtime: Runtime, install_signal_handlers: bool = True) -> None:
    """Process jobs until cancelled (or until SIGINT/SIGTERM when signal handlers are installed)."""
    settings = runtime.settings.jobs
    await app.run_worker_async(
        queues=list(JOB_QUEUES),
        concurrency=settings.concurrency,
        additional_context={"runtime": runtime},
        update_heartbeat_interval=settings.heartbeat_seconds,
        stalled_worker_timeout=settings.stalled_after_seconds,
        install_signal_handlers=install_signal_handlers,
        delete_jobs="successful",
    )


def run_with_main_thread_inference(
    jobs: Callable[[MainThreadInference], Coroutine[Any, Any, None]], threads: int | None = None
) -> None:
    """``jobs(host)`` on an event loop in a thread while this (main) thread runs the model calls it sends to
    ``host``. SIGINT/SIGTERM cancel ``jobs``: a worker stops taking jobs and lets running ones finish; a second
    signal cancels those too. Returns when the loop has ended; re-raises what ended it, if not a stop. ``threads``:
    torch threads per model call (``MainThreadInference``)."""
    host, loop_state, ended = MainThreadInference(threads), {}, {}

    async def main() -> None:
        loop_state["loop"], loop_state["task"] = asyncio.get_running_loop(), asyncio.current_task()
        if not loop_state.get("stop"):  # a signal that came before the loop was up
            await jobs(host)

    def run_loop() -> None:
        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
            ended["error"] = exc

    def stop(signum: int, frame) -> None:
        log.info("worker: %s received, stopping (running jobs finish; send it again to cancel them)", signum)
        loop_state["stop"] = True
        if "loop" in loop_state:
            loop_state["loop"].call_soon_threadsafe(loop_state["task"].cancel)

    thread = threading.Thread(target=run_loop, name="soundalike-jobs")
    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        thread.start()
        host.serve(until=thread)
        thread.join()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if "error" in ended:
        raise ended["error"]


def serve_metrics(settings: MetricsSettings) -> str | None:
    """Serve this worker's metrics (jobs, model loads and inference, failures) on the configured port, in a
    background thread; returns where, or None when no port is set."""
    if settings.worker_port is None:
        return None
    from prometheus_client import start_http_server

    ensure_port_free(settings.worker_host, settings.worker_port)
    start_http_server(settings.worker_port, settings.worker_host)
    return f"http://{settings.worker_host}:{settings.worker_port}/metrics"
