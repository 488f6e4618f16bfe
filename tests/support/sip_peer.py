"""An independent SIP phone for tests: Debian's `baresip`, on loopback, with its own config.

It plays a WAV file into the call as its microphone (baresip's `aufile` source; the file must
outlast the call, or baresip hangs up at its end) and records what it receives (the `sndfile`
filter writes `dump-*-dec.wav`). Commands go to its console on standard input.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import wave
from pathlib import Path

import numpy as np

from tests.support.ci import unavailable

BARESIP = shutil.which("baresip")


def need_baresip() -> None:
    """Skip (fail, under CI) unless baresip is installed (.ci/run installs it)."""
    if BARESIP is not None:
        return
    unavailable("baresip is not installed (apt-get install baresip)")


CONFIG = """\
poll_method		epoll
sip_listen		127.0.0.1:{port}
audio_player		aufile,/dev/null
audio_source		aufile,{source}
audio_alert		aufile,/dev/null
module_path		/usr/lib/baresip/modules
module			stdio.so
module			{codec}.so
module			aufile.so
module			sndfile.so
module_app		account.so
module_app		menu.so
snd_path		{directory}
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    """`audio` (float32 in [-1, 1) or int16) as a 16-bit mono WAV."""
    if audio.dtype != np.int16:
        audio = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(audio.tobytes())


class Baresip:
    """One baresip process, calling from `127.0.0.1:port`.

    Args:
        directory: where its config and the recordings go.
        microphone: what it sends, int16 or float32 at `rate`; silence follows for 60 s.
        codec: "g711" (PCMU/PCMA) or "g722".
        user: the user part of its SIP address: the caller id the server sees.
    """

    def __init__(
        self,
        directory: Path,
        microphone: np.ndarray,
        rate: int = 8000,
        codec: str = "g711",
        user: str = "tester",
    ) -> None:
        self.directory = directory
        self.port = free_udp_port()
        self.log: list[str] = []
        directory.mkdir(parents=True, exist_ok=True)
        silence = np.zeros(rate * 60, dtype=microphone.dtype)
        source = directory / "microphone.wav"
        write_wav(source, np.concatenate([microphone, silence]), rate)
        (directory / "config").write_text(
            CONFIG.format(port=self.port, source=source, directory=directory, codec=codec)
        )
        (directory / "accounts").write_text(f"<sip:{user}@127.0.0.1:{self.port}>;regint=0\n")
        self._process: asyncio.subprocess.Process | None = None
        self._reading: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Baresip:
        assert BARESIP is not None, "baresip is not installed (apt-get install baresip)"
        self._process = await asyncio.create_subprocess_exec(
            BARESIP,
            "-f",
            str(self.directory),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reading = asyncio.create_task(self._read())
        await self.wait_for_log("baresip is ready", timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        process = self._process
        assert process is not None
        if process.returncode is None:
            with contextlib.suppress(ConnectionError):
                await self.command("/quit")
            try:
                await asyncio.wait_for(process.wait(), 3)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reading is not None:
            await asyncio.gather(self._reading, return_exceptions=True)

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        while line := await self._process.stdout.readline():
            self.log.extend(line.decode(errors="replace").replace("\r", "\n").splitlines())

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def command(self, text: str) -> None:
        assert self._process is not None and self._process.stdin is not None
        self._process.stdin.write(text.encode() + b"\n")
        await self._process.stdin.drain()

    async def dial(self, uri: str) -> None:
        await self.command(f"/dial {uri}")

    async def key(self, digit: str) -> None:
        """Press a keypad digit in the call (RFC 4733 telephone-event)."""
        await self.command(digit)

    async def hang_up(self) -> None:
        await self.command("/hangup")

    async def wait_for_log(self, text: str, timeout: float) -> str:
        """The first log line holding `text`, waiting for it up to `timeout` s."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.log:
                    if text in line:
                        return line
                await asyncio.sleep(0.05)

    def received(self) -> tuple[np.ndarray, int]:
        """What the call brought to this phone (int16) and its sample rate."""
        dumps = sorted(self.directory.glob("dump-*-dec.wav"))
        assert dumps, "baresip recorded nothing"
        with wave.open(str(dumps[-1])) as recording:
            rate = recording.getframerate()
            data = recording.readframes(recording.getnframes())
        return np.frombuffer(data, dtype=np.int16), rate
