"""A parallel batch runner for file conversions: one bad file never stops the batch.

`run_batch(tasks, work)` calls `work(task.payload)` for every task in a pool of worker processes
and shows a tqdm bar. `work` returns the files it produced as `{path: text or bytes}`; it never
writes them itself. Design choices, each for one promise of the data scripts:
- Parallel on all cores: a small pool of our own (`multiprocessing` pipes), not `Pool`, because a
  `Pool` cannot stop one hung task. Each worker runs one task at a time; a task still running
  after `timeout` seconds gets its worker killed and replaced, and fails with "timeout". A worker
  that dies (segfault, out of memory) fails its task with "worker crashed" and is replaced.
- No half-written outputs: only this (parent) process writes, each file atomically through
  `notagen.io`, and a task whose files cannot all be written has the ones it did write removed.
  A killed worker therefore never leaves anything behind.
- Resume: a task whose `outputs` all exist is skipped, so re-running a stage finishes the rest.
- Accounting: every failure is kept with its reason; `BatchReport.summary()` gives the line
  "N converted, M failed (reason: count, ...), K skipped (already done)" and the failure log file
  lists `name<TAB>reason` for every failure, control characters of both escaped (`\\t`, `\\n`,
  `\\x..`) so a file name cannot forge a record. Reasons are grouped by the text before their first
  colon, which is why `AbcError` messages start with a short category.
- Workers die with the runner: on Linux each asks the kernel for SIGKILL when its parent dies
  (`kill -9`, SIGTERM, a crash) and checks it still has that parent, and it closes its copy of the
  parent's pipe end and of the output streams, so nobody waits on a dead run's pipes.
- Temporary files that an interrupted atomic write left beside this batch's outputs are removed
  at the start of the next run.
Workers are forked where the platform can (fast start, any callable works); elsewhere they are
spawned, and then `work` and the payloads must be picklable.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..io import DiskFullError, atomic_open, atomic_write_text, log_safe

Outputs = Mapping["str | Path", "str | bytes"]
MAX_REASON_CHARS = 400


@dataclass(frozen=True)
class Task:
    """One unit of work: `name` identifies it in logs (usually the source path)."""
    name: str
    payload: Any
    outputs: tuple[Path, ...] = ()  # files that exist once the task is done (resume check)

    def is_done(self) -> bool:
        return bool(self.outputs) and all(Path(path).exists() for path in self.outputs)


def failure_reason(exc: BaseException) -> str:
    """One log line for an exception: AbcError messages as they are, others prefixed with their type."""
    from .errors import AbcError
    text = str(exc) if isinstance(exc, AbcError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:MAX_REASON_CHARS]


def reason_category(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


@dataclass
class BatchReport:
    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (task name, reason)
    unknown: list[str] = field(default_factory=list)  # input files of a type the stage does not read
    seconds: float = 0.0

    @property
    def failed(self) -> list[str]:
        return [name for name, _ in self.failures]

    def reason_counts(self) -> Counter:
        return Counter(reason_category(reason) for _, reason in self.failures)

    def summary(self) -> str:
        by_count = sorted(self.reason_counts().items(), key=lambda item: (-item[1], item[0]))
        reasons = ", ".join(f"{category}: {count}" for category, count in by_count)
        line = f"{len(self.converted)} converted, {len(self.failures)} failed"
        line += f" ({reasons})" if reasons else ""
        line += f", {len(self.skipped)} skipped (already done)" if self.skipped else ""
        if self.unknown:
            names = ", ".join(log_safe(Path(name).name) for name in self.unknown[:3])
            line += f", {len(self.unknown)} skipped (unknown type: {names}{', ...' if len(self.unknown) > 3 else ''})"
        return line + f" in {self.seconds:.1f} s"


def _die_with_parent(parent: int) -> None:
    """Linux: SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def _serve(connection, parent_end, parent: int, work: Callable[[Any], Outputs | None]) -> None:
    """Worker loop: run jobs from the pipe until told to stop (None) or the parent goes away."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if parent_end is not None:
        parent_end.close()  # else the pipe never reaches end-of-file when the parent dies
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (1, 2):  # a reader of the parent's output must not wait on workers
        os.dup2(devnull, stream)
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        index, payload = job
        try:
            result = (index, True, dict(work(payload) or {}))
        except Exception as exc:
            result = (index, False, failure_reason(exc))
        try:
            connection.send(result)
        except Exception as exc:  # an output that cannot be pickled
            connection.send((index, False, f"unsendable result: {failure_reason(exc)}"))


class _Worker:
    def __init__(self, context, work):
        self.connection, child_end = context.Pipe()
        forked = context.get_start_method() == "fork"  # a spawned child holds no copy of our end
        self.process = context.Process(target=_serve, daemon=True,
                                       args=(child_end, self.connection if forked else None, os.getpid(), work))
        self.process.start()
        child_end.close()
        self.job: int | None = None
        self.started = 0.0

    def submit(self, index: int, payload) -> None:
        self.connection.send((index, payload))
        self.job, self.started = index, time.monotonic()

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()

    def stop(self) -> None:
        try:
            self.connection.send(None)
        except (OSError, ValueError):
            pass
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.kill()
        else:
            self.connection.close()


def _context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def write_outputs(outputs: Outputs) -> None:
    """Write every file atomically; if one fails, remove those already written, then re-raise."""
    written: list[Path] = []
    try:
        for path, content in outputs.items():
            if isinstance(content, bytes):
                with atomic_open(path, "wb") as handle:
                    handle.write(content)
            else:
                atomic_write_text(path, content)
            written.append(Path(path))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def write_failure_log(path: str | Path, report: BatchReport) -> None:
    lines = [f"# {report.summary()}\n"] + [f"{log_safe(name)}\t{log_safe(reason)}\n"
                                           for name, reason in report.failures]
    lines += [f"# skipped (unknown type): {log_safe(name)}\n" for name in report.unknown]
    atomic_write_text(path, "".join(lines))


def remove_stale_temporaries(tasks: Iterable[Task]) -> int:
    """Delete `.<name>.<random>.tmp` files (notagen.io's temporaries) of this batch's outputs."""
    names: dict[Path, set[str]] = {}
    for task in tasks:
        for output in task.outputs:
            names.setdefault(Path(output).parent, set()).add(Path(output).name)
    removed = 0
    for folder, outputs in names.items():
        if not folder.is_dir():
            continue
        for temporary in folder.glob(".*.tmp"):
            if temporary.name[1:].rsplit(".", 2)[0] in outputs:
                temporary.unlink(missing_ok=True)
                removed += 1
    return removed


class _Pool:
    """Worker processes running `work` on `todo`, one task each at a time; a worker that crashes or
    runs past `timeout` is killed and replaced, and its task is reported as failed."""

    def __init__(self, todo: list[Task], work, size: int, timeout: float | None, report: BatchReport, bar):
        self.todo, self.work, self.size, self.timeout = todo, work, size, timeout
        self.report, self.bar = report, bar
        self.context = _context()
        self.workers: list[_Worker] = []
        self.queue = deque(range(len(todo)))

    def running(self) -> bool:
        return bool(self.queue) or any(worker.job is not None for worker in self.workers)

    def fill(self) -> None:
        """Give every idle worker a task; start workers up to the pool size."""
        for worker in self.workers:
            if worker.job is None and self.queue:
                self._submit(worker)
        while self.queue and len(self.workers) < self.size:
            self.workers.append(_Worker(self.context, self.work))
            self._submit(self.workers[-1])

    def collect(self) -> None:
        """Wait for results (at most until the oldest task's deadline) and record them."""
        busy = {worker.connection: worker for worker in self.workers if worker.job is not None}
        wait_for = None
        if self.timeout:
            wait_for = max(0.0, min(w.started for w in busy.values()) + self.timeout - time.monotonic())
        for connection in wait(list(busy), timeout=wait_for):
            worker = busy[connection]
            try:
                _, ok, value = connection.recv()
            except (EOFError, OSError):
                worker.process.join(timeout=1)
                self._retire(worker, f"worker crashed: exit code {worker.process.exitcode}")
                continue
            self._finish(worker, ok, value)

    def expire(self) -> None:
        if not self.timeout:
            return
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.job is not None and now - worker.started > self.timeout:
                self._retire(worker, f"timeout: no result after {self.timeout:g} s")

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()

    def _submit(self, worker: _Worker) -> None:
        index = self.queue.popleft()
        worker.submit(index, self.todo[index].payload)

    def _finish(self, worker: _Worker, ok: bool, value) -> None:
        task = self.todo[worker.job]
        worker.job = None
        if ok:
            try:
                write_outputs(value)
                self.report.converted.append(task.name)
            except DiskFullError:
                raise  # every later write would fail too: stop, as the failure log is written
            except Exception as exc:
                self.report.failures.append((task.name, f"write failed: {failure_reason(exc)}"))
        else:
            self.report.failures.append((task.name, value))
        self.bar.update(1)
        self.bar.set_postfix(failed=len(self.report.failures), refresh=False)

    def _retire(self, worker: _Worker, reason: str) -> None:
        # `fill` starts a fresh worker if work remains
        worker.kill()
        self._finish(worker, False, reason)
        self.workers.remove(worker)


def run_batch(tasks: Iterable[Task], work: Callable[[Any], Outputs | None], *, workers: int = 0,
              timeout: float | None = 120.0, failure_log: str | Path | None = None,
              desc: str = "converting", progress: bool = True, skip_done: bool = True,
              known_failures: Iterable[tuple[str, str]] = (), unknown: Iterable[str] = ()) -> BatchReport:
    """Run `work` on every task in parallel; see the module docstring for the guarantees.

    workers: processes to use, 0 = every core. timeout: seconds per task (None = no limit).
    known_failures: (name, reason) pairs found before running (e.g. name clashes), reported alike.
    unknown: input files of a type the stage does not read, counted and named as skipped.
    """
    from tqdm import tqdm

    started = time.monotonic()
    report = BatchReport(failures=list(known_failures), unknown=list(unknown))
    tasks = list(tasks)
    remove_stale_temporaries(tasks)
    todo: list[Task] = []
    for task in tasks:
        if skip_done and task.is_done():
            report.skipped.append(task.name)
        else:
            todo.append(task)
    size = max(1, min(workers if workers > 0 else (os.cpu_count() or 1), len(todo)))
    bar = tqdm(total=len(todo), desc=desc, unit="file", disable=not progress or not todo,
               dynamic_ncols=True, file=sys.stderr)
    pool = _Pool(todo, work, size, timeout, report, bar)
    try:
        while pool.running():
            pool.fill()
            pool.collect()
            pool.expire()
    finally:
        pool.close()
        bar.close()
        report.seconds = time.monotonic() - started
        if failure_log is not None:
            write_failure_log(failure_log, report)
    return report
