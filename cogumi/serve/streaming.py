"""Async glue: run blocking generation in a thread (stoppable), and format Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

_END = object()
T = TypeVar("T")


async def call_in_thread(fn: Callable[[threading.Event], T]) -> T:
    """``await fn(stop)`` run in a worker thread; cancelling the awaiting task sets ``stop``.

    Args:
        fn: blocking call that ends soon after its ``threading.Event`` is set.

    Without the event, a cancelled request (client gone, Serve cancelling the
    handle call) would leave its thread generating to the end.
    Each call gets its own thread, not one of the loop's default pool (6 threads on
    2 cores), so a batching replica can hold more requests in flight than that pool.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    stop = threading.Event()

    def settle(ok: bool, value: Any) -> None:
        if not done.done():
            (done.set_result if ok else done.set_exception)(value)

    def run() -> None:
        try:
            result: Any = (True, fn(stop))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            result = (False, exc)
        try:
            loop.call_soon_threadsafe(settle, *result)
        except RuntimeError:  # loop closed: nobody waits any more
            pass

    threading.Thread(target=run, daemon=True, name="cogumi-call").start()
    try:
        return await done
    finally:
        stop.set()  # no effect once fn has returned


async def iterate_in_thread(make_iter: Callable[[threading.Event], Iterator[Any]]) -> AsyncIterator[Any]:
    """Yield the items of a blocking iterator produced in a worker thread.

    Args:
        make_iter: builds the iterator; it gets a ``threading.Event`` that is set when
            the consumer stops early (cancelled, closed), and should end soon after.

    Exceptions raised by the iterator are re-raised here. When the consumer goes
    away, the event is set and the thread finishes its current item on its own.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def put(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # loop closed: nobody is listening any more
            stop.set()

    def run() -> None:
        try:
            for item in make_iter(stop):
                put(("item", item))
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(("error", exc))
        finally:
            put(_END)

    thread = threading.Thread(target=run, daemon=True, name="cogumi-stream")
    thread.start()
    try:
        while True:
            msg = await queue.get()
            if msg is _END:
                return
            kind, value = msg
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


def sse(data: dict[str, Any] | str) -> bytes:
    """One Server-Sent Event ``data:`` line (``[DONE]`` passes through as text)."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


async def primed(agen: AsyncIterator[Any]) -> tuple[list[Any], AsyncIterator[Any]]:
    """Pull the first item now (so errors surface before a response starts).

    Returns:
        ([first] or [] when empty, the rest of the iterator).
    """
    try:
        first = await agen.__anext__()
    except StopAsyncIteration:
        return [], agen
    return [first], agen
