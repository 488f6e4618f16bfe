"""Objects for worker-process tests: importable by the spawned workers (top-level, picklable)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


class Toy:
    """A worker object with a method for each thing a worker can do."""

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

    def hold(self, gate: str) -> int:
        """Serve until the file `gate` exists, having created `gate.<pid>` to say this worker
        holds the request: a test orders events by files rather than by how long a sleep
        lasts on a loaded machine. Returns this worker's pid."""
        pid = os.getpid()
        Path(f"{gate}.{pid}").touch()
        while not os.path.exists(gate):
            time.sleep(0.005)
        return pid


class Broken:
    """A worker object that cannot be built (a model file that is missing)."""

    def __init__(self) -> None:
        raise FileNotFoundError("no such model")
