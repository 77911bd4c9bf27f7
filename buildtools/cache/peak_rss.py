"""Run one compile and append its peak RSS to the build dir's record: ``peak_rss.py CMD ARGS...``.

A compiler launcher (ccache's ``CCACHE_PREFIX``, so cache hits are not measured; or the
launcher itself when there is no cache). It runs as ``python -I -S`` with the stdlib's ``os``
only, ~10 ms, next to compiles of seconds. ``os.wait4`` gives the child's peak with its
descendants folded in: the heaviest single process (cc1plus, cicc, ptxas), which is what a job
costs per nvcc thread. One line per successful compile goes to ``.kernloop-tu-peaks.log`` in the
working directory (ninja runs compiles in the build dir) with one ``O_APPEND`` write, so
concurrent compiles never interleave; ``buildtools.cache.peaks`` reads it. The exit status is
the compiler's; a failure to record never fails the compile.
"""
import os
import signal
import sys

LOG_NAME = ".kernloop-tu-peaks.log"  # buildtools.cache.peaks reads this name from here
FORMAT = "1"
_INSIDE = "KERNLOOP_PEAK_RSS_INSIDE"  # set for the compile: a second recorder in the chain steps aside


_SOURCE_SUFFIXES = (".c", ".cc", ".cp", ".cpp", ".cxx", ".c++", ".C", ".cu")


def _source(args: list[str]) -> str | None:
    """The TU: the last argument with a source suffix that is not ``-o``'s (ccache moves ``-c``)."""
    found = None
    for before, arg in zip(["", *args], args):
        if before != "-o" and not arg.startswith("-") and arg.endswith(_SOURCE_SUFFIXES):
            found = arg
    return found


def _threads(args: list[str]) -> int:
    for arg in args:
        if arg.startswith("--threads="):
            value = arg.partition("=")[2]
            return int(value) if value.isdigit() and int(value) > 0 else 1
    return 1


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: peak_rss.py COMPILER ARGS...\n")
        return 2
    if os.environ.get(_INSIDE):
        os.execvp(argv[0], argv)
    try:
        pid = os.posix_spawnp(argv[0], argv, {**os.environ, _INSIDE: "1"})
    except OSError as exc:
        sys.stderr.write(f"error: cannot run {argv[0]}: {exc.strerror or exc}\n")
        return 127
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except KeyboardInterrupt:  # ninja's Ctrl-C reaches the compiler too: wait for it
            continue
    code = os.waitstatus_to_exitcode(status)
    source = _source(argv)
    if code == 0 and source is not None and "\t" not in source and "\n" not in source:
        kind = "CUDA" if source.endswith(".cu") else "CXX"
        line = f"{FORMAT}\t{kind}\t{usage.ru_maxrss}\t{_threads(argv)}\t{os.path.abspath(source)}\n"
        try:
            fd = os.open(LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # a read-only or full build dir: the compile still counts
    if code < 0:  # killed by a signal: die the same way, so ninja reports it as such
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
