"""The process's inference thread: every model load and call of a ``ModelCache`` runs on one long-lived thread.

Why one thread, not ``asyncio.to_thread``: the default executor hands each call to whichever of its threads is
free, and a thread that is new to torch pays for it. Measured with the shipped checkpoint (generate + decode
of 8 clips, ``docs/performance.md``), inference on a worker thread touched ~28,000 fresh pages per call that the
main thread never touches: glibc gives each thread's heap back to the kernel as soon as its free top grows past
a threshold it keeps adjusting, so the next call faults it all in again. Here the allocator keeps what it freed
(``keep_freed_memory``, fixed thresholds: no page faults per call, on any thread) and the same thread, with
torch's thread count set on it, serves every call, so OpenMP's team and torch's per-thread state are built once.
One thread also means one inference at a time per process, which is what 2 cores can serve anyway.
What it does not fix: with 2 torch threads a non-main thread still runs generate + decode ~1.6x slower than the
main thread (0.32 + 0.28 s against 0.19 + 0.19 s for a batch of 8), and the API's generation throughput stayed at
0.48 of the in-process pipeline (docs/performance.md). A standalone worker therefore runs its models on its main
thread instead (``main_thread_inference``); this thread serves the API process and its in-process worker.

    thread = InferenceThread()
    result = await thread.call(work, model)     # off the event loop, always on the same thread
    thread.close()                              # running work finishes, queued work is dropped
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

THREAD_NAME = "soundalike-inference"
# glibc mallopt parameters; setting them also turns off glibc's moving thresholds.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD = 256 * 1024 * 1024  # free heap top kept before it is given back (a batch of 8 uses ~110 MB)
MMAP_THRESHOLD = 32 * 1024 * 1024  # larger blocks are mapped per allocation (glibc's own maximum)
_allocator_tuned = False


def keep_freed_memory() -> bool:
    """Fix glibc's trim and mmap thresholds for the process (once); False where the C library is not glibc."""
    global _allocator_tuned
    if _allocator_tuned:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _allocator_tuned = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
    return _allocator_tuned


def torch_threads() -> int:
    """The intra-op threads inference uses: the CPUs this process may run on (``OMP_NUM_THREADS`` wins)."""
    configured = os.environ.get("OMP_NUM_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare_thread(threads: int) -> None:
    """Run on the inference thread before its first task: torch's thread count is per thread under OpenMP."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; loaders in tests may not need it
        return
    torch.set_num_threads(threads)


class InferenceThread:
    def __init__(self, threads: int | None = None) -> None:
        self._threads = threads or torch_threads()
        self._executor: ThreadPoolExecutor | None = None
        self._ident: int | None = None
        self._lock = threading.Lock()

    @property
    def ident(self) -> int | None:
        """The thread's id once it has started (``threading.get_ident`` on it)."""
        return self._ident

    def _start(self) -> None:
        self._ident = threading.get_ident()
        prepare_thread(self._threads)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                keep_freed_memory()
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=THREAD_NAME, initializer=self._start)
            return self._executor

    async def call(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on the inference thread; cancelling the caller leaves a started call to finish."""
        return await asyncio.get_running_loop().run_in_executor(self._pool(), work, *args)

    def close(self) -> None:
        """Stop the thread: queued calls are cancelled, a running one finishes (its result is dropped)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
