"""Inference on the process's main thread, for a process whose event loop can run on another one
(``soundalike worker``).

Why: in this torch build a model called from any thread but the main one runs generate + decode ~1.6x slower
(0.32 + 0.28 s against 0.19 + 0.19 s for a batch of 8; ``inference_thread`` says what was ruled out). A
standalone worker has nothing else for its main thread to do, so the job loop moves to a thread and the main
thread serves the model calls the loop sends it, one at a time, as ``InferenceThread`` does:

    host = MainThreadInference()
    jobs = threading.Thread(target=lambda: asyncio.run(run_jobs(host)))   # ModelCache(..., inference=host)
    jobs.start()
    host.serve(until=jobs)              # on the main thread: returns when the job loop's thread has ended

``call`` has ``InferenceThread.call``'s contract: cancelling the caller drops a call that has not started and
leaves a started one to finish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from service.domain.models.inference_thread import keep_freed_memory, prepare_thread, torch_threads

T = TypeVar("T")
POLL_SECONDS = 0.5  # how often ``serve`` checks that the loop's thread is still there (signals arrive meanwhile)


class HostClosed(RuntimeError):
    """The main thread no longer serves model calls (the worker is stopping)."""


class MainThreadInference:
    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads or torch_threads()
        self._calls: queue.SimpleQueue[tuple[concurrent.futures.Future, Callable, tuple] | None] = queue.SimpleQueue()
        self._closed = threading.Event()

    async def call(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on the main thread, awaited from the event loop's thread."""
        if self._closed.is_set():
            raise HostClosed("the worker is stopping: no more model calls")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._calls.put((future, work, args))
        return await asyncio.wrap_future(future)

    def serve(self, until: threading.Thread) -> None:
        """Run calls as they come until ``until`` has ended; call it on the main thread."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("MainThreadInference.serve runs on the main thread")
        keep_freed_memory()
        prepare_thread(self._threads)
        while until.is_alive():
            try:
                item = self._calls.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            if item is not None:
                _run(*item)
        self.close()

    def close(self) -> None:
        """Refuse new calls and fail the queued ones (the loop that awaits them is going away)."""
        self._closed.set()
        self._calls.put(None)
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                return
            if item is not None and item[0].set_running_or_notify_cancel():
                item[0].set_exception(HostClosed("the worker stopped before this model call ran"))


def _run(future: concurrent.futures.Future, work: Callable, args: tuple) -> None:
    if not future.set_running_or_notify_cancel():
        return  # its caller was cancelled before it started
    try:
        future.set_result(work(*args))
    except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, as an executor does
        future.set_exception(exc)
