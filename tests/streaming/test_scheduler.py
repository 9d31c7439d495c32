"""LoopScheduler: reactivex's asyncio scheduler semantics, with a lean schedule()."""

from __future__ import annotations

import asyncio

import reactivex as rx
from reactivex import operators as ops
from reactivex.disposable import Disposable

from rxsse import LoopScheduler
from tests.conftest import wait_until


async def test_items_arrive_on_later_loop_iterations_in_order():
    scheduler = LoopScheduler(asyncio.get_running_loop())
    seen: list[int] = []
    done = asyncio.Event()
    rx.range(5).subscribe(seen.append, on_completed=done.set, scheduler=scheduler)
    assert seen == []  # nothing runs inside subscribe()
    await asyncio.wait_for(done.wait(), timeout=5)
    assert seen == [0, 1, 2, 3, 4]


async def test_disposing_before_the_action_runs_cancels_it():
    scheduler = LoopScheduler(asyncio.get_running_loop())
    ran: list[bool] = []
    scheduled = scheduler.schedule(lambda s, st: ran.append(True))
    scheduled.dispose()
    probe = asyncio.Event()
    scheduler.schedule(lambda s, st: probe.set())
    await asyncio.wait_for(probe.wait(), timeout=5)
    assert ran == []


async def test_disposing_after_the_action_ran_disposes_what_it_returned():
    scheduler = LoopScheduler(asyncio.get_running_loop())
    disposed: list[bool] = []
    scheduled = scheduler.schedule(lambda s, st: Disposable(lambda: disposed.append(True)))
    await wait_until(lambda: scheduled.result is not None)  # type: ignore[attr-defined]
    scheduled.dispose()
    assert disposed == [True]


async def test_disposing_a_range_midway_stops_it():
    scheduler = LoopScheduler(asyncio.get_running_loop())
    seen: list[int] = []
    subscription = rx.range(1_000_000).subscribe(seen.append, scheduler=scheduler)
    await wait_until(lambda: len(seen) >= 10)
    subscription.dispose()
    count = len(seen)
    probe = asyncio.Event()
    scheduler.schedule(lambda s, st: probe.set())
    await asyncio.wait_for(probe.wait(), timeout=5)
    assert len(seen) == count


async def test_timed_operators_still_work():
    scheduler = LoopScheduler(asyncio.get_running_loop())
    done = asyncio.get_running_loop().create_future()
    rx.interval(0.01).pipe(ops.take(3), ops.to_list()).subscribe(
        done.set_result, scheduler=scheduler
    )
    assert await asyncio.wait_for(done, timeout=5) == [0, 1, 2]


async def test_actions_due_now_run_in_batches_that_let_the_loop_serve_others():
    scheduler = LoopScheduler(asyncio.get_running_loop())
    seen: list[int] = []
    done = asyncio.Event()
    rx.range(1000).subscribe(seen.append, on_completed=done.set, scheduler=scheduler)
    await asyncio.sleep(0)  # one loop iteration: one batch, not one item, and not all
    after_one_iteration = len(seen)
    await asyncio.wait_for(done.wait(), timeout=5)
    assert seen == list(range(1000))
    assert 1 < after_one_iteration < 1000


async def test_an_action_that_raises_is_reported_and_the_others_still_run():
    loop = asyncio.get_running_loop()
    reported: list[BaseException] = []
    loop.set_exception_handler(lambda _, context: reported.append(context["exception"]))
    try:
        scheduler = LoopScheduler(loop)
        ran: list[int] = []

        def fail(_: object, __: object) -> None:
            raise RuntimeError("boom")

        scheduler.schedule(lambda s, st: ran.append(1))
        scheduler.schedule(fail)
        scheduler.schedule(lambda s, st: ran.append(2))
        await wait_until(lambda: len(ran) == 2)
        assert [str(error) for error in reported] == ["boom"]
    finally:
        loop.set_exception_handler(None)
