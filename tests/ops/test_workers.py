"""Worker processes: requests served in real child processes, and what happens when one dies."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support.worker_targets import Broken, Toy
from voice.ops.logs import call_scope
from voice.ops.workers import WorkerDied, WorkerFailed, WorkerPool, _Lineup


@pytest.fixture
async def pool():
    workers = WorkerPool("toy", Toy, size=2, request_timeout_s=2.0)
    yield workers
    workers.close()


async def until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_requests_run_in_the_workers(pool):
    assert await pool.call(Toy.echo, {"a": [1, 2]}) == {"a": [1, 2]}
    pids = set(pool.pids)
    assert len(pids) == 2 and os.getpid() not in pids
    assert await pool.call(Toy.pid) in pids
    assert pool.info["pid"] in pids


def held(gate: Path) -> int:
    """How many workers have taken a `Toy.hold(gate)` request."""
    return len(list(gate.parent.glob(f"{gate.name}.*")))


async def test_workers_serve_requests_at_the_same_time(tmp_path):
    workers = WorkerPool("toy", Toy, size=2)
    gate = tmp_path / "open"
    try:
        assert workers.busy is False
        both = asyncio.gather(*(workers.call(Toy.hold, str(gate)) for _ in range(2)))
        # Both requests are in the workers' hands at once: served one after the other, the
        # second would not start before the gate opens.
        await until(lambda: held(gate) == 2)
        assert workers.busy
        gate.touch()
        assert sorted(await both) == sorted(workers.pids)
        assert workers.busy is False
    finally:
        workers.close()


async def test_a_failing_request_leaves_the_worker_serving(pool):
    with pytest.raises(WorkerFailed, match="this request is bad"):
        await pool.call(Toy.fail)
    assert await pool.call(Toy.echo, 3) == 3
    assert pool.restarts == 0


async def test_a_worker_that_dies_mid_request_is_replaced(pool):
    before = set(pool.pids)
    with pytest.raises(WorkerDied):
        await pool.call(Toy.crash)
    await until(lambda: pool.restarts == 1 and pool.alive == 2)
    assert set(pool.pids) != before and len(set(pool.pids) & before) == 1
    assert await asyncio.gather(*(pool.call(Toy.echo, n) for n in range(4))) == [0, 1, 2, 3]


async def test_a_worker_killed_while_idle_is_replaced_before_it_is_needed(pool):
    await pool.call(Toy.echo, 1)
    victim = pool.pids[0]
    os.kill(victim, signal.SIGKILL)
    await until(lambda: pool.restarts == 1 and pool.alive == 2)
    assert victim not in pool.pids
    assert [await pool.call(Toy.echo, n) for n in range(3)] == [0, 1, 2]


async def test_other_requests_go_on_while_a_worker_dies(pool):
    slow = asyncio.create_task(pool.call(Toy.sleep, 0.8))
    await asyncio.sleep(0.1)
    with pytest.raises(WorkerDied):
        await pool.call(Toy.crash)
    assert await slow == 0.8


async def test_a_cancelled_request_keeps_its_worker_busy_until_it_ends(tmp_path):
    workers = WorkerPool("toy", Toy, size=1)
    gate = tmp_path / "open"
    try:
        waiting = asyncio.create_task(workers.call(Toy.hold, str(gate)))
        await until(lambda: held(gate) == 1)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert workers.busy
        following = asyncio.create_task(workers.call(Toy.echo, "next"))
        await asyncio.sleep(0.2)
        assert not following.done()  # it waits for the abandoned request
        gate.touch()
        assert await following == "next"
        assert not workers.busy and workers.restarts == 0
    finally:
        workers.close()


async def test_a_request_no_one_awaits_any_more_is_told_so_in_its_worker():
    """The target's `wanted()` turns False once the request it serves is cancelled (a
    transcript the caller's next words threw away: it is not read again when in doubt), and
    is True again for the next request."""
    workers = WorkerPool("toy", Toy, size=1)
    try:
        waiting = asyncio.create_task(workers.call(Toy.serve_while_wanted, 30.0))
        await until(lambda: workers.busy)
        await asyncio.sleep(0.1)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert await workers.call(Toy.unwanted_before) == (True, True)
    finally:
        workers.close()


async def test_a_request_awaited_to_its_end_is_wanted_throughout():
    workers = WorkerPool("toy", Toy, size=1)
    try:
        assert await workers.call(Toy.serve_while_wanted, 0.3) is False
    finally:
        workers.close()


async def test_a_hung_worker_is_killed_after_the_request_timeout():
    workers = WorkerPool("toy", Toy, size=1, request_timeout_s=0.5)
    try:
        hung = workers.pids[0]
        with pytest.raises(WorkerDied, match="hung"):
            await workers.call(Toy.sleep, 30)
        await until(lambda: workers.restarts == 1 and workers.alive == 1)
        assert hung not in workers.pids
        assert await workers.call(Toy.echo, "alive") == "alive"
    finally:
        workers.close()


async def test_a_hung_request_nobody_waits_for_any_more_is_killed_too():
    """Barge-in cancels its wait; the worker must not stay stuck behind the request."""
    workers = WorkerPool("toy", Toy, size=1, request_timeout_s=0.5)
    try:
        waiting = asyncio.create_task(workers.call(Toy.sleep, 30))
        await asyncio.sleep(0.1)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await until(lambda: workers.restarts == 1 and workers.alive == 1)
        assert await workers.call(Toy.echo, "free again") == "free again"
    finally:
        workers.close()


async def test_a_worker_that_stops_reading_does_not_hold_up_the_server():
    """A large request to a worker that reads nothing (stopped here; hung or swapped out in
    life) fills its pipe; the event loop and the other calls go on, and the timeout ends it."""
    workers = WorkerPool("toy", Toy, size=1, request_timeout_s=1.0)
    try:
        stopped = workers.pids[0]
        os.kill(stopped, signal.SIGSTOP)
        request = asyncio.create_task(workers.call(Toy.echo, b"x" * 4_000_000))  # > a pipe's 64 KiB
        lags = []
        while not request.done():
            ticked = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - ticked - 0.01)
        with pytest.raises(WorkerDied, match="hung"):
            await request
        # A loop blocked on the full pipe stalls until the 1 s timeout kills the worker (or for
        # good); a loaded machine delays a 10 ms sleep by far less than half of that.
        assert max(lags) < 0.5, max(lags)
        await until(lambda: workers.restarts == 1 and workers.alive == 1)
        assert stopped not in workers.pids
        assert await workers.call(Toy.echo, "served") == "served"
    finally:
        workers.close()


def test_a_worker_that_cannot_start_says_why():
    with pytest.raises(RuntimeError, match="no such model"):
        WorkerPool("broken", Broken)


async def test_close_ends_the_workers():
    workers = WorkerPool("toy", Toy, size=2)
    await workers.call(Toy.echo, 1)
    pids = workers.pids
    processes = [worker.process for worker in workers._workers]
    workers.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # They ended on the goodbye, not killed after waiting a second each.
    assert [process.exitcode for process in processes] == [0, 0]


async def test_urgent_requests_go_before_others_waiting(tmp_path):
    workers = WorkerPool("toy", Toy, size=1)
    gate = tmp_path / "open"
    try:
        finished: list[str] = []

        async def ask(name: str, urgent: bool) -> None:
            call = workers.call if urgent else workers.call_patiently
            await call(Toy.echo, name)
            finished.append(name)

        running = asyncio.create_task(workers.call(Toy.hold, str(gate)))  # the only worker
        await until(lambda: held(gate) == 1)
        later = [
            asyncio.create_task(ask("partial 1", urgent=False)),
            asyncio.create_task(ask("partial 2", urgent=False)),
        ]
        await asyncio.sleep(0.05)
        later.append(asyncio.create_task(ask("final", urgent=True)))
        await asyncio.sleep(0.05)  # all three wait in the line
        gate.touch()
        await asyncio.gather(running, *later)
        assert finished == ["final", "partial 1", "partial 2"]
    finally:
        workers.close()


async def test_a_request_cancelled_while_waiting_gives_up_its_place():
    workers = WorkerPool("toy", Toy, size=1)
    try:
        running = asyncio.create_task(workers.call(Toy.sleep, 0.3))
        await asyncio.sleep(0.1)
        gone = asyncio.create_task(workers.call(Toy.echo, "never"))
        await asyncio.sleep(0.05)
        gone.cancel()
        await asyncio.gather(running, gone, return_exceptions=True)
        assert await asyncio.wait_for(workers.call(Toy.echo, "next"), 5) == "next"
        assert not workers.busy
    finally:
        workers.close()


async def test_a_request_that_is_not_urgent_lets_urgent_ones_go_first_only_so_long():
    now = 0.0
    lineup = _Lineup(patience_s=2.0, clock=lambda: now)
    waiting: dict[str, asyncio.Task] = {}

    async def arrive(name: str, at: float, urgent: bool) -> None:
        nonlocal now
        now = at
        waiting[name] = asyncio.create_task(lineup.get(urgent, timeout_s=60))
        await asyncio.sleep(0)  # it takes its place in the line

    await arrive("partial at 0 s", 0.0, urgent=False)
    await arrive("final at 1 s", 1.0, urgent=True)  # before the partial: within its patience
    await arrive("final at 3 s", 3.0, urgent=True)  # after it: the partial waited long enough
    served = []
    for worker in ("w1", "w2", "w3"):
        lineup.put(worker)  # type: ignore[arg-type]
        await asyncio.sleep(0.01)  # its request's task resumes
        done = [name for name, task in waiting.items() if task.done() and name not in served]
        served += done
    assert served == ["final at 1 s", "partial at 0 s", "final at 3 s"]


async def test_a_call_that_asks_a_lot_waits_behind_the_others(tmp_path):
    """The attack: one call keeps the workers busy with request after request. Another call's
    request, made later, is served before the flooder's next ones."""
    workers = WorkerPool("toy", Toy, size=1)
    gate = tmp_path / "open"
    try:
        finished: list[str] = []

        async def ask(call: str, name: str) -> None:
            with call_scope(call):
                await workers.call(Toy.sleep, 0.05)
            finished.append(name)

        with call_scope("flooder"):
            running = asyncio.create_task(workers.call(Toy.hold, str(gate)))  # the only worker
        await until(lambda: held(gate) == 1)
        waiting = [asyncio.create_task(ask("flooder", f"flood {n}")) for n in range(1, 4)]
        await asyncio.sleep(0.05)
        waiting.append(asyncio.create_task(ask("caller", "caller")))
        await asyncio.sleep(0.05)  # all four wait in the line
        gate.touch()
        await asyncio.gather(running, *waiting)
        assert finished[0] == "caller"
        assert finished[1:] == ["flood 1", "flood 2", "flood 3"]
    finally:
        workers.close()


def test_a_calls_share_counts_its_open_requests_and_the_worker_time_it_used_lately():
    from voice.ops.workers import SHARE_S, USED_HALF_LIFE_S, _Shares

    now = 100.0
    shares = _Shares(clock=lambda: now)
    assert shares.wait_s("quiet") == 0.0
    for _ in range(10):  # a flood: one request after another, each 0.3 s of worker time
        shares.begin("flood")
        shares.end("flood", 0.3)
    shares.begin("flood")  # one more being served
    assert shares.wait_s("flood") == pytest.approx(SHARE_S + 3.0)
    assert shares.wait_s("flood") > 2.0, "longer than a later clause's patience"
    now += USED_HALF_LIFE_S
    assert shares.wait_s("flood") == pytest.approx(SHARE_S + 1.5)
    shares.end("flood", 0.0)
    now += 10 * USED_HALF_LIFE_S
    assert shares.wait_s("flood") < 0.01
    assert shares.wait_s("quiet") == 0.0


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
async def test_workers_yield_the_cores_to_the_servers_event_loop(pool):
    from voice.ops.workers import WORKER_NICENESS

    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert await pool.call(Toy.niceness) == min(ours + WORKER_NICENESS, 19)


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc_trim")
async def test_a_worker_gives_freed_memory_back_between_requests():
    workers = WorkerPool("toy", Toy, size=1)
    try:
        before = await workers.call(Toy.resident)
        # 160 MB in 64 KiB buffers, all freed but the last: glibc keeps them in its heap.
        peak = await workers.call(Toy.churn, 2500, 64 * 1024)
        assert peak - before > 120_000_000
        await asyncio.sleep(0.2)  # the worker is idle, and trims, before the next request
        after = await workers.call(Toy.resident)
        assert after - before < 40_000_000, f"{(after - before) / 1e6:.0f} MB kept"
    finally:
        workers.close()
