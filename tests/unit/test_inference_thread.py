"""The process's inference thread: one long-lived thread, torch's thread count set on it, the allocator tuned."""

import asyncio
import sys
import threading

import pytest
import torch

from service.domain.models import inference_thread
from service.domain.models.inference_thread import InferenceThread


def test_every_call_runs_on_the_same_named_thread_with_torch_threads_set_on_it():
    async def main():
        thread = InferenceThread(threads=1)
        try:
            return await asyncio.gather(
                *(thread.call(lambda: (threading.current_thread().name, torch.get_num_threads())) for _ in range(5))
            ), thread.ident
        finally:
            thread.close()

    seen, ident = asyncio.run(main())
    assert ident is not None and ident != threading.get_ident()
    assert len(set(seen)) == 1
    name, threads = seen[0]
    assert name.startswith(inference_thread.THREAD_NAME) and threads == 1


def test_thread_count_follows_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert inference_thread.torch_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert inference_thread.torch_threads() >= 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_allocator_thresholds_are_fixed_once():
    assert inference_thread.keep_freed_memory() is True
    assert inference_thread.keep_freed_memory() is True


def test_the_model_threads_setting_reaches_the_inference_thread():
    from service.jobs.runtime import Runtime
    from service.settings import ModelSettings, Settings

    async def main():
        runtime = Runtime.create(
            "postgresql+psycopg://nobody@127.0.0.1:1/none", Settings(model=ModelSettings(threads=1))
        )
        try:
            return await runtime.models.inference.call(torch.get_num_threads)
        finally:
            runtime.models.close()
            await runtime.engine.dispose()

    assert asyncio.run(main()) == 1
