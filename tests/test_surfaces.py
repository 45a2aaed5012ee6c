"""Every streaming style on the one event stream: callbacks, handles, raw tokens, asyncio,
and the scheduler underneath (cancellation, queue bound, concurrency)."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import keel
from keel.loaded import load_location
from keel.models import resolve_model

PROMPT = "Tell me a long story about a lighthouse keeper."


def test_callback_stop_at_k_gives_exactly_the_first_k_pieces(model_name):
    kwargs = dict(model=model_name, max_new_tokens=40, temperature=0.7, seed=2)
    full = [event.text for event in keel.stream_generate(PROMPT, **kwargs)]
    for k in (1, 5, 12):
        delivered = []

        def callback(piece, k=k, delivered=delivered):
            delivered.append(piece)
            return len(delivered) < k

        result = keel.generate_streaming(PROMPT, callback, **kwargs)
        assert delivered == full[:k]
        assert result.text == "".join(full[:k])
        assert result.finish_reason == "cancelled"
    complete = keel.generate_streaming(PROMPT, lambda piece, event: None, **kwargs)
    assert complete.text == "".join(full) and complete.finish_reason == "length"


def test_cancel_mid_stream_frees_the_worker_at_once():
    handle = keel.start_generation(PROMPT, max_new_tokens=400)
    for count, _ in enumerate(handle, start=1):
        if count == 3:
            handle.cancel()
            break
    started = time.perf_counter()
    result = handle.result()  # returns once the worker has let go of the model
    assert result.finish_reason == "cancelled" and len(result.tokens) == 3
    first = next(iter(keel.stream_generate("Hi", max_new_tokens=2)))
    assert time.perf_counter() - started < 2.0  # the 400-token run would take ~8 s
    assert first.time_to_first_token < 2.0


def test_breaking_out_of_a_loop_cancels_the_job():
    stream = keel.stream_generate(PROMPT, max_new_tokens=400)
    next(stream)
    started = time.perf_counter()
    stream.close()
    keel.generate("Hi", max_new_tokens=2)
    assert time.perf_counter() - started < 2.0


def test_queue_full_is_a_typed_error_with_a_retry_hint(monkeypatch):
    monkeypatch.setenv("KEEL_QUEUE_DEPTH", "1")
    monkeypatch.setenv("KEEL_SLOTS", "1")  # one generation at a time, so the next one waits
    running = keel.start_generation(PROMPT, max_new_tokens=300)
    events = iter(running)  # kept: a dropped iterator would cancel its generation
    next(events)  # the worker is busy with it
    waiting = keel.start_generation(PROMPT, max_new_tokens=300, seed=1)
    with pytest.raises(keel.QueueFullError) as caught:
        keel.start_generation(PROMPT, max_new_tokens=300, seed=2)
    assert caught.value.retry_after > 0
    waiting.cancel()
    running.cancel()
    assert running.result().finish_reason == "cancelled"


def test_stream_tokens_gives_ids_then_the_final_info():
    items = list(keel.stream_tokens("Hi there", max_new_tokens=12))
    *ids, info = items
    assert ids == [e.token for e in keel.stream_generate("Hi there", max_new_tokens=12)]
    assert info.finish_reason in {"stop", "length"} and info.generation_tps > 0
    assert info.time_to_first_token > 0 and info.peak_memory > 0


def test_handle_result_equals_generate():
    with keel.start_generation(PROMPT, max_new_tokens=16, seed=4, temperature=0.5) as handle:
        result = handle.result()
    assert result.text == keel.generate(PROMPT, max_new_tokens=16, seed=4, temperature=0.5)


def _jobs():
    return [
        dict(model=model, seed=seed, temperature=temperature, max_new_tokens=12)
        for model in ("smollm2-135m", "gemma3-270m")
        for seed, temperature in ((1, 0.0), (2, 0.8), (3, 1.2), (4, 0.5))
    ] * 2  # 16 requests


def test_solo_equals_concurrent_from_threads_and_asyncio():
    jobs = _jobs()
    solo = [keel.generate(PROMPT, **job) for job in jobs]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda job: keel.generate(PROMPT, **job), jobs))
    assert threaded == solo

    async def gather():
        return await asyncio.gather(*(keel.agenerate(PROMPT, **job) for job in jobs))

    assert asyncio.run(gather()) == solo


def test_async_surfaces_do_not_block_the_event_loop():
    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        text = await keel.agenerate(PROMPT, max_new_tokens=40)
        pieces = [piece async for piece in keel.agenerate_iter(PROMPT, max_new_tokens=40)]
        events = [event async for event in keel.astream_generate(PROMPT, max_new_tokens=40)]
        stop.set()
        await task
        return ticks, text, pieces, events

    started = time.perf_counter()
    ticks, text, pieces, events = asyncio.run(main())
    elapsed = time.perf_counter() - started
    assert text == "".join(pieces) == "".join(e.text for e in events)
    assert text == keel.generate(PROMPT, max_new_tokens=40)
    assert ticks >= 0.5 * elapsed / 0.005  # the loop kept ticking while the model worked


def test_async_handle_cancel():
    async def main():
        handle = keel.start_generation(PROMPT, max_new_tokens=300)
        count = 0
        async for _ in handle:
            count += 1
            if count == 4:
                handle.cancel()
                break
        return await handle.aresult()

    result = asyncio.run(main())
    assert result.finish_reason == "cancelled" and len(result.tokens) == 4


def test_a_job_the_worker_cannot_place_fails_instead_of_hanging(monkeypatch):
    worker = load_location(resolve_model("smollm2-135m")).lanes[0].worker

    def no_slot(generation, placing):
        raise RuntimeError("no slot for this job")

    monkeypatch.setattr(worker, "_pick_slot", no_slot)
    handle = keel.start_generation("Hi", max_new_tokens=4)
    with ThreadPoolExecutor(1) as pool:
        consumed = pool.submit(lambda: list(handle))
        with pytest.raises(RuntimeError, match="no slot"):
            consumed.result(timeout=30)
    monkeypatch.undo()
    assert keel.generate("Hi", max_new_tokens=4)  # the worker goes on serving
