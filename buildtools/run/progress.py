"""The progress display of a build: a bar on a terminal, a line per finished step otherwise."""
from __future__ import annotations

import re
import shutil
import time
from typing import TextIO

from buildtools.cmake import ninja

__all__ = ["Progress"]


class Progress:
    """A one-line bar on a terminal; one line per finished step otherwise.

    Through a pipe ninja reports a step when it *finishes*, so during one long
    compile nothing arrives; on a terminal a ticker redraws the bar (elapsed time,
    steps still running) twice a second so it never looks stuck.
    """

    TICK_S = 0.5

    def __init__(self, out: TextIO, tty: bool | None = None) -> None:
        import threading

        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self._drawn = False
        self._last: ninja.Status | None = None
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.TICK_S):
            with self._lock:
                if self._stop.is_set():
                    break
                if self._last is not None:
                    self._draw(self._last)
                else:  # nothing finished yet: say that it runs
                    self.out.write(f"\rbuilding... {time.monotonic() - self._start:4.0f}s")
                    self.out.flush()
                    self._drawn = True

    @staticmethod
    def _what(st: ninja.Status) -> str:
        m = re.search(r"object (\S+)$", st.description)
        return ninja.source_of(m[1]) if m else st.description

    def _draw(self, st: ninja.Status) -> None:
        width = shutil.get_terminal_size((80, 20)).columns
        bar_w = 24
        done = int(bar_w * st.finished / st.total) if st.total else 0
        elapsed = time.monotonic() - self._start
        running = f" ({st.running} running)" if st.running and st.finished < st.total else ""
        line = f"[{'#' * done}{'.' * (bar_w - done)}] {st.finished}/{st.total} {elapsed:4.0f}s{running} done: {self._what(st)}"
        self.out.write("\r" + line[: width - 1].ljust(width - 1))
        self.out.flush()
        self._drawn = True

    def update(self, st: ninja.Status) -> None:
        if not self.tty:
            self.out.write(f"[{st.finished}/{st.total}] {self._what(st)}\n")
            self.out.flush()
            return
        with self._lock:
            self._last = st
            self._draw(st)

    def clear(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            if self._drawn:
                width = shutil.get_terminal_size((80, 20)).columns
                self.out.write("\r" + " " * (width - 1) + "\r")
                self.out.flush()
                self._drawn = False
