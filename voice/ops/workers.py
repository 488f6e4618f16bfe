"""Models in worker processes: a crash in native code, or a worker the kernel kills, costs the
requests it was serving, never the server; the pool starts a new worker in its place.

Each worker process builds its object once (a loaded faster-whisper or Piper model) and serves
one request at a time over a pipe: a method of that object's class and its arguments, so a
request is checked like a call of the method (`pool.call(Transcriber.transcribe_blocking,
audio)`). `WorkerPool.call` is used from one event loop; a thread per
worker waits on its pipe and hands results back to the loop, and requests are written to the
pipes from sender threads, so a worker that stops reading never holds up the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import heapq
import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

from voice.ops.logs import CALL_ID

if TYPE_CHECKING:  # the models load only in the workers that need them
    import numpy as np

    from asr.settings import AsrSettings
    from asr.whisper import Transcriber, Transcript
    from tts.piper import Synthesizer
    from tts.settings import TtsSettings

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
"""Longest a new worker may take to load its model."""

T = TypeVar("T")
"""The object each worker of a pool holds."""
P = ParamSpec("P")
R = TypeVar("R")


class WorkerDied(Exception):
    """The worker process ended (crashed, was killed, or hung past its timeout) while it served
    the request. The pool has started another one."""


class WorkerFailed(Exception):
    """The request raised in the worker; the worker is fine. The message is the error's repr."""


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    info: Any
    """What the worker's object told about itself at start (`describe()`)."""
    abandoned: ctypes.c_byte
    """A byte shared with the worker: set while no one awaits the request it serves (a
    target with a `wanted` attribute is told so, and may stop short)."""
    pending: asyncio.Future[Any] | None = None
    deadline: asyncio.TimerHandle | None = None
    """Kills the worker if its request runs past the timeout."""
    sending: Future[None] | None = None
    """The sender thread's write of the last request."""
    alive: bool = True


PATIENCE_S = 2.0
"""How long a request that is not urgent lets urgent ones go first; after that it takes its
turn among them, so a stream of urgent requests can hold it back, but not for ever."""
SHARE_S = 0.5
"""For each request a call already has waiting or being served, its next one lets the other
calls' requests go first for this long."""
USED_HALF_LIFE_S = 2.0
"""A call's next request also lets the others go first for as long as the worker time the call
used lately (each second of it counted at half after this long). A call that asks a lot (a flood
of typed questions) waits behind the others, longer than a later clause's `PATIENCE_S`, and
cannot push their replies back; a call that asks as much as any other call does waits as
long as they do."""
PRUNE_AT = 1000
WORKER_NICENESS = 5
"""Added to a worker process's nice value: the models' threads fill both cores while the
server's event loop paces every call's reply audio and listens to every caller, and that loop
must not wait its turn behind them (a late frame is a gap in a caller's reply). Below the
password-checking thread's (`voice.office.login.HASH_NICENESS`), which yields to both.
The threads a model's library starts while the worker imports it, before this applies, keep
the server's priority; recognition's second compute thread is one. Lowering them as well made
more replies stall under load, not fewer (docs/benchmarks.md, "Where the stalls fall")."""


class _Shares:
    """Each call's share of a pool: its requests waiting or being served, and the worker time
    it used lately. Used from one event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open: Counter[str] = Counter()
        self._used: dict[str, tuple[float, float]] = {}
        """Call → (worker seconds, when counted), decaying with `USED_HALF_LIFE_S`."""

    def wait_s(self, call: str) -> float:
        """How long the call's next request lets the other calls' go first."""
        return SHARE_S * self._open[call] + self._used_s(call)

    def begin(self, call: str) -> None:
        self._open[call] += 1

    def end(self, call: str, served_s: float) -> None:
        self._open[call] -= 1
        if self._open[call] <= 0:
            del self._open[call]
        if served_s > 0:
            self._used[call] = (self._used_s(call) + served_s, self._clock())
        if len(self._used) > PRUNE_AT:
            for gone in [c for c in self._used if self._used_s(c) < 0.01]:
                del self._used[gone]

    def _used_s(self, call: str) -> float:
        used, at = self._used.get(call, (0.0, 0.0))
        return used * 0.5 ** ((self._clock() - at) / USED_HALF_LIFE_S) if used else 0.0


class _Lineup:
    """Idle workers, handed to the requests waiting for one in order of arrival, where a request
    that is not urgent counts as arriving `patience_s` later than it did, and one of a call that
    has had more than its share (`_Shares`) as much later as the share says. Used from one event
    loop."""

    def __init__(
        self, patience_s: float = PATIENCE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._patience_s = patience_s
        self._clock = clock
        self._idle: deque[_Worker] = deque()
        self._waiting: list[tuple[float, int, asyncio.Future[_Worker]]] = []
        self._arrivals = itertools.count()

    def put(self, worker: _Worker) -> None:
        while self._waiting:
            _, _, waiter = heapq.heappop(self._waiting)
            if not waiter.done():  # else its request was cancelled or timed out
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    async def get(self, urgent: bool, timeout_s: float, after_s: float = 0.0) -> _Worker:
        """The next free worker for a request that lets the others go first for `after_s` more
        (its call's share); TimeoutError after `timeout_s`."""
        if self._idle and not self._waiting:
            return self._idle.popleft()
        waiter: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        rank = self._clock() + (0.0 if urgent else self._patience_s) + after_s
        heapq.heappush(self._waiting, (rank, next(self._arrivals), waiter))
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(waiter)
        except BaseException:  # cancelled or timed out: a worker already handed over goes back
            if waiter.done() and not waiter.cancelled():
                self.put(waiter.result())
            else:
                waiter.cancel()
            raise


class WorkerPool(Generic[T]):
    """`size` worker processes, each holding an object built by `factory` in the worker.

    `factory` must be picklable (a top-level class or a functools.partial of one, with
    picklable settings); the object it builds may have a `describe()` method whose result is
    kept as `info`. Requests wait for a free worker, the urgent ones first, then in the order
    they came.
    """

    def __init__(
        self,
        name: str,
        factory: Callable[[], T],
        size: int = 1,
        request_timeout_s: float = 60.0,
    ) -> None:
        """Start the workers and wait until each has built its object (blocks)."""
        self.name = name
        self._factory = factory
        self._size = max(1, size)
        self._timeout = request_timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: _Lineup | None = None
        self._workers: list[_Worker] = []
        self._in_flight = 0
        self._shares = _Shares()
        """Each call's (`voice.ops.logs.CALL_ID`) requests and the worker time it used lately."""
        self._restarting: set[asyncio.Task[None]] = set()
        self._senders = ThreadPoolExecutor(self._size, thread_name_prefix=f"{name}-sender")
        """Requests are written to the workers' pipes from these threads: a worker that stops
        reading (hung, stopped, swapped out) must not hold up the event loop."""
        self._closed = False
        self.restarts = 0
        """Workers started in place of one that died."""
        for _ in range(self._size):
            self._workers.append(self._spawn())
        self.info: Any = self._workers[0].info

    @property
    def busy(self) -> bool:
        """True while every worker is serving a request."""
        return self._in_flight >= self._size

    @property
    def in_flight(self) -> int:
        """Requests being served now."""
        return self._in_flight

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.alive and w.process.pid is not None]

    @property
    def alive(self) -> int:
        """Workers ready or serving now (fewer while one is being restarted)."""
        return sum(1 for w in self._workers if w.alive)

    async def call(
        self, method: Callable[Concatenate[T, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run `method(target, *args, **kwargs)` on a free worker's object (`target`) and
        return its result: `method` is a function of the object's class, found by its name in
        the worker (`Transcriber.transcribe_blocking`), its arguments and result pickled. An
        urgent request: see `call_patiently` for the others.

        The calls share the workers fairly (`SHARE_S`): the call is the one whose
        `voice.ops.logs.call_scope` the request is made in.

        Cancelling the call stops the waiting; a request already sent runs to its end and the
        worker stays busy until then. A request still running `request_timeout_s` after it was
        sent — waited for or not — gets its worker killed (and replaced).

        Raises:
            WorkerDied: the worker ended while serving it, or no worker came free within
                `request_timeout_s` (every one dead and not restartable, or all hung).
            WorkerFailed: the method raised in the worker.
        """
        return await self._request(True, method, args, kwargs)

    async def call_patiently(
        self, method: Callable[Concatenate[T, P], R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """`call`, for a request that is not urgent (a partial transcript, the next clause of
        a reply already playing): it lets the urgent ones go first, for up to `PATIENCE_S`."""
        return await self._request(False, method, args, kwargs)

    async def _request(
        self,
        urgent: bool,
        method: Callable[..., R],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> R:
        request = ForkingPickler.dumps((method.__name__, args, kwargs))  # as `Connection.send`
        idle = self._idle_queue()
        call = CALL_ID.get()
        after_s = self._shares.wait_s(call)
        self._shares.begin(call)
        try:
            while True:
                try:
                    worker = await idle.get(urgent, self._timeout, after_s)
                except TimeoutError:
                    raise WorkerDied(f"no {self.name} worker came free") from None
                if worker.alive:
                    break  # else it died while idle; its replacement is on its way
        except BaseException:
            self._shares.end(call, 0.0)
            raise
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        future: asyncio.Future[R] = loop.create_future()
        future.add_done_callback(_retrieve)  # an abandoned request's failure is not an error
        future.add_done_callback(lambda _: self._shares.end(call, time.monotonic() - began))
        worker.pending = future
        worker.deadline = loop.call_later(self._timeout, self._hung, worker, future)
        self._in_flight += 1
        worker.abandoned.value = 0
        worker.sending = self._senders.submit(self._send, worker, request)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if worker.pending is future:  # what the worker makes now is for no one
                worker.abandoned.value = 1
            raise

    def _send(self, worker: _Worker, request: memoryview) -> None:
        try:
            worker.conn.send_bytes(request)
        except Exception as err:  # the worker died (its pipe broke) or the pool closed
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed
                self._loop.call_soon_threadsafe(self._died, worker, f"the pipe failed: {err!r}")

    def _hung(self, worker: _Worker, future: asyncio.Future[Any]) -> None:
        if worker.pending is not future or not worker.alive:
            return
        log.error(
            "%s worker %s hung past %g s; killing it", self.name, worker.process.pid, self._timeout
        )
        worker.pending, worker.deadline = None, None  # a reply still coming is ignored
        self._in_flight -= 1
        future.set_exception(WorkerDied(f"the {self.name} worker hung past {self._timeout:g} s"))
        worker.process.kill()  # its pipe closes, and `_died` replaces it

    def close(self) -> None:
        """Stop every worker (they are killed if they do not end within a second)."""
        self._closed = True
        for task in self._restarting:
            task.cancel()
        self._senders.shutdown(wait=False, cancel_futures=True)
        for worker in self._workers:
            worker.alive = False
            self._close_pipe(worker)
            worker.process.join(1)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)

    # ------------------------------------------------------------ plumbing

    def _idle_queue(self) -> _Lineup:
        if self._idle is None:
            self._loop = asyncio.get_running_loop()
            self._idle = _Lineup()
            for worker in self._workers:
                self._idle.put(worker)
                self._watch(worker)
        return self._idle

    def _spawn(self) -> _Worker:
        """Start a worker and wait for its object to be built (blocks)."""
        ours, theirs = self._context.Pipe()
        abandoned = self._context.Value("b", 0, lock=False)
        process = self._context.Process(
            target=_serve,
            args=(theirs, self._factory, abandoned),
            name=f"voicedesk-{self.name}",
            daemon=True,
        )
        process.start()
        theirs.close()
        if not ours.poll(START_TIMEOUT_S):
            process.kill()
            raise RuntimeError(f"the {self.name} worker did not start within {START_TIMEOUT_S} s")
        try:
            ok, info = ours.recv()
        except EOFError:
            raise RuntimeError(f"the {self.name} worker died while starting") from None
        if not ok:
            raise RuntimeError(f"the {self.name} worker could not start: {info}")
        log.info("%s worker %d ready", self.name, process.pid)
        return _Worker(process, ours, info, abandoned)

    def _watch(self, worker: _Worker) -> None:
        """A thread that waits for the worker's replies and hands them to the loop."""
        thread = threading.Thread(
            target=self._read, args=(worker,), name=f"{self.name}-reader", daemon=True
        )
        thread.start()

    def _read(self, worker: _Worker) -> None:
        assert self._loop is not None
        while True:
            try:
                reply = worker.conn.recv()
            except (EOFError, OSError, TypeError, ValueError):
                # TypeError, ValueError: the pipe was closed under this thread, mid-message
                # (the server closing while a request was in flight).
                with contextlib.suppress(RuntimeError):  # the loop closed
                    self._loop.call_soon_threadsafe(self._died, worker, "its pipe closed")
                return
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._done, worker, reply)

    def _done(self, worker: _Worker, reply: tuple[bool, Any]) -> None:
        if worker.pending is None:  # the request hung and the worker is being killed
            return
        ok, value = reply
        self._stop_deadline(worker)
        future, worker.pending = worker.pending, None
        self._in_flight -= 1
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(WorkerFailed(value))
        assert self._idle is not None
        self._idle.put(worker)

    def _died(self, worker: _Worker, why: str) -> None:
        if not worker.alive:
            return
        worker.alive = False
        self._stop_deadline(worker)
        future, worker.pending = worker.pending, None
        if future is not None:
            self._in_flight -= 1
            if not future.done():
                future.set_exception(WorkerDied(f"the {self.name} worker died ({why})"))
        self._close_pipe(worker)
        if self._closed:
            return
        worker.process.join(0.1)
        log.error(
            "%s worker %s ended (%s, exit code %s); starting another",
            self.name,
            worker.process.pid,
            why,
            worker.process.exitcode,
        )
        task = asyncio.get_running_loop().create_task(self._replace(worker))
        self._restarting.add(task)
        task.add_done_callback(self._restarting.discard)

    @staticmethod
    def _close_pipe(worker: _Worker) -> None:
        """Close the worker's end of its pipe once no sender thread writes to it: a descriptor
        closed mid-write could be reused by the next worker's pipe and get the rest."""

        def close(_: object = None) -> None:
            with contextlib.suppress(OSError):
                worker.conn.send(None)  # goodbye: a worker reading its pipe ends at once
            with contextlib.suppress(OSError):
                worker.conn.close()

        if worker.sending is None:
            close()
        else:
            worker.sending.add_done_callback(close)  # at once if the write is over

    @staticmethod
    def _stop_deadline(worker: _Worker) -> None:
        if worker.deadline is not None:
            worker.deadline.cancel()
            worker.deadline = None

    async def _replace(self, dead: _Worker) -> None:
        delay = 0.5
        while not self._closed:
            try:
                worker = await asyncio.to_thread(self._spawn)
            except Exception as err:  # out of memory or processes: keep trying, with a pause
                log.error(
                    "%s worker could not be restarted (%s); retrying in %g s", self.name, err, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if self._closed:
                worker.process.kill()
                return
            self._workers[self._workers.index(dead)] = worker
            self.restarts += 1
            self._watch(worker)
            assert self._idle is not None
            self._idle.put(worker)
            return


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _serve(conn: Connection, factory: Callable[[], Any], abandoned: ctypes.c_byte) -> None:
    """A worker's life: build the object, then answer requests until the server says goodbye
    (None) or the pipe closes. An object with a `wanted` attribute gets a function there that
    says whether the request it serves is still awaited (`_Worker.abandoned`).

    Interrupt and terminate signals are ignored: the server decides when its workers end (it
    finishes its calls' turns first on SIGTERM), and closing the pipe ends a worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # before the model's threads start: they inherit it
        os.nice(WORKER_NICENESS)
    release = _memory_release()
    try:
        target = factory()
        if hasattr(target, "wanted"):
            target.wanted = lambda: not abandoned.value
        describe = getattr(target, "describe", None)
        conn.send((True, describe() if describe is not None else None))
    except Exception as err:  # reported to the parent, which refuses to start
        conn.send((False, repr(err)))
        return
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if request is None:  # the server said goodbye
            return
        try:
            conn.send(_answer(target, *request))
        except OSError:  # the server closed the pipe while this was at work: it is stopping
            return
        del request  # its audio is freed before the trim
        if not conn.poll(0):  # idle: no request is kept waiting for this
            release()


def _answer(
    target: object, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bool, Any]:
    """(True, what the method returned) or (False, the repr of what it raised)."""
    try:
        return True, getattr(target, method)(*args, **kwargs)
    except Exception as err:
        return False, repr(err)


def _memory_release() -> Callable[[], None]:
    """What gives a worker's freed memory back to the system between requests: glibc's
    `malloc_trim`, where the C library is glibc, else nothing.

    A model's buffers take a size of their own for each length of input, and glibc keeps in
    its heaps what they free: a recognition worker fed 200 questions of mixed lengths went from
    300 to 594 MB without this, to 456 MB with it (and, with whole-second windows as well,
    stayed near 255 MB; docs/benchmarks.md). A trim takes 2-10 ms."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the process runs on
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]

    def release() -> None:
        trim(0)

    return release


# ---------------------------------------------------------------- the models in workers


class RecognizerWorkers:
    """faster-whisper in `settings.workers` worker processes, with `Transcriber`'s interface."""

    def __init__(self, settings: AsrSettings) -> None:
        from asr.whisper import Transcriber

        one = dataclasses.replace(settings, workers=1)
        self.pool: WorkerPool[Transcriber] = WorkerPool(
            "asr", functools.partial(Transcriber, one), settings.workers
        )
        self.description: str = self.pool.info["description"]
        self._languages = frozenset(self.pool.info["languages"])

    def supports(self, language: str) -> bool:
        return language in self._languages

    @property
    def busy(self) -> bool:
        return self.pool.busy

    @property
    def idle(self) -> bool:
        return self.pool.in_flight == 0

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        hotwords: str | None = None,
        language: str | None = None,
        urgent: bool = True,
        once: bool = False,
    ) -> Transcript:
        from asr.whisper import Transcriber

        call = self.pool.call if urgent else self.pool.call_patiently
        return await call(Transcriber.transcribe_blocking, audio, hotwords, language, once)

    def close(self) -> None:
        self.pool.close()


class SynthesizerWorkers:
    """Piper in `settings.workers` worker processes, with `Synthesizer`'s interface."""

    def __init__(self, settings: TtsSettings, quiet: Callable[[], bool] = lambda: False) -> None:
        """`quiet`: as `Synthesizer`'s (no recognition under way)."""
        from tts.piper import Synthesizer

        one = dataclasses.replace(settings, workers=1)
        self.pool: WorkerPool[Synthesizer] = WorkerPool(
            "tts", functools.partial(Synthesizer, one), settings.workers
        )
        self.description: str = self.pool.info["description"]
        self.sample_rate: int = self.pool.info["sample_rate"]
        self._quiet = quiet

    async def synthesize(self, text: str, *, urgent: bool = True) -> np.ndarray:
        from tts.piper import Synthesizer

        if not urgent:
            return await self.pool.call_patiently(Synthesizer.synthesize_blocking, text)
        alone = self.pool.in_flight == 0 and self._quiet()
        return await self.pool.call(Synthesizer.synthesize_blocking, text, alone)

    def close(self) -> None:
        self.pool.close()
