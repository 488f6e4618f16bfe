"""Objects for worker-process tests: importable by the spawned workers (top-level, picklable)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


class Toy:
    """A worker object with a method for each thing a worker can do."""

    def __init__(self) -> None:
        self.wanted: Callable[[], bool] = lambda: True
        """Set by its worker: whether the request being served is still awaited."""
        self.told_unwanted: bool | None = None

    def describe(self) -> dict[str, int]:
        return {"pid": os.getpid()}

    def echo(self, value: object) -> object:
        return value

    def pid(self) -> int:
        return os.getpid()

    def fail(self) -> None:
        raise ValueError("this request is bad")

    def crash(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def niceness(self) -> int:
        """This worker's nice value (of the thread serving it: on Linux, a thread's own)."""
        return os.getpriority(os.PRIO_PROCESS, 0)

    def churn(self, blocks: int, size: int) -> int:
        """Allocate `blocks` buffers of `size` bytes from the C heap and free all but the last,
        which the worker keeps: it holds the heap's top, so the heap cannot shrink there.
        Returns the resident memory while all are held."""
        buffers = [np.ones(size, np.uint8) for _ in range(blocks)]
        resident = self.resident()
        self.kept = buffers[-1]
        return resident

    def resident(self) -> int:
        """Resident memory of this worker, bytes."""
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def hold(self, gate: str) -> int:
        """Serve until the file `gate` exists, having created `gate.<pid>` to say this worker
        holds the request: a test orders events by files rather than by how long a sleep
        lasts on a loaded machine. Returns this worker's pid."""
        pid = os.getpid()
        Path(f"{gate}.{pid}").touch()
        while not os.path.exists(gate):
            time.sleep(0.005)
        return pid

    def serve_while_wanted(self, timeout_s: float) -> bool:
        """Serve until no one awaits this request (noted: True) or `timeout_s` passed."""
        deadline = time.monotonic() + timeout_s
        while self.wanted() and time.monotonic() < deadline:
            time.sleep(0.005)
        self.told_unwanted = not self.wanted()
        return self.told_unwanted

    def unwanted_before(self) -> tuple[bool | None, bool]:
        """Whether the last `serve_while_wanted` was told no one awaited it, and whether
        this request is wanted."""
        return self.told_unwanted, self.wanted()


class Broken:
    """A worker object that cannot be built (a model file that is missing)."""

    def __init__(self) -> None:
        raise FileNotFoundError("no such model")
