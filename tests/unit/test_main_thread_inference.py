"""Model calls served on the main thread while the event loop runs on another (the standalone worker)."""

import asyncio
import threading

import pytest
import torch

from service.domain.models.main_thread_inference import HostClosed, MainThreadInference


def serve_loop(host: MainThreadInference, jobs) -> dict:
    """``jobs(host)`` on an event loop in a thread, the host on this (main) thread; what the jobs returned."""
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = asyncio.run(jobs(host))
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            out["error"] = exc

    loop_thread, threads_before = threading.Thread(target=run), torch.get_num_threads()
    loop_thread.start()
    try:
        host.serve(until=loop_thread)
        loop_thread.join()
    finally:
        torch.set_num_threads(threads_before)  # serve set this (main) thread's count
    return out


def test_calls_run_on_the_main_thread_and_their_errors_reach_the_caller():
    async def jobs(host):
        threads = await asyncio.gather(*(host.call(lambda: threading.current_thread().name) for _ in range(4)))
        with pytest.raises(ValueError, match="bad clip"):
            await host.call(lambda: (_ for _ in ()).throw(ValueError("bad clip")))
        return threads, await host.call(lambda a, b: a + b, 2, 3), await host.call(torch.get_num_threads)

    out = serve_loop(MainThreadInference(threads=1), jobs)
    assert out == {"result": (["MainThread"] * 4, 5, 1)}


def test_a_cancelled_caller_drops_its_call_and_a_closed_host_refuses_new_ones():
    ran = []

    async def jobs(host):
        blocker = threading.Event()
        first = asyncio.ensure_future(host.call(blocker.wait, 5))  # the main thread is busy with this
        second = asyncio.ensure_future(host.call(ran.append, "second"))
        await asyncio.sleep(0.05)
        second.cancel()
        await asyncio.sleep(0.05)  # the cancellation reaches the call's future before the main thread is free
        blocker.set()
        assert await first is True
        await asyncio.sleep(0.05)
        host.close()
        with pytest.raises(HostClosed):
            await host.call(ran.append, "after close")

    out = serve_loop(MainThreadInference(threads=1), jobs)
    assert out == {"result": None} and ran == []


def test_serve_refuses_to_run_off_the_main_thread():
    host, errors = MainThreadInference(threads=1), []

    def off_main() -> None:
        try:
            host.serve(until=threading.current_thread())
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=off_main)
    thread.start()
    thread.join()
    assert errors and "main thread" in errors[0]
