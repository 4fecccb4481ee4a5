"""The grid's job processes: which device and how many threads each gets, running them, Ctrl-C.

Each job (a multitask stage, a cell, or a batch of cells run by one ``mtft-nlp cells`` process) is a subprocess in
its own process group that dies with its parent (Linux ``PR_SET_PDEATHSIG``); ``workers`` of them run at a time,
each in a free worker slot: one GPU slot (:func:`assign_devices`) or ``cores // workers`` CPU threads. One Ctrl-C
(or SIGTERM) stops the running jobs and starts no new one (:class:`Interrupted`); finished results stay, so a rerun
resumes.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import itertools
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

__all__ = [
    "Interrupted",
    "assign_devices",
    "device_envs",
    "grid_command_signals",
    "run_jobs",
    "run_interruptible",
    "run_timed",
    "schedule_jobs",
    "stop_running_jobs",
]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``run_plan``: the running job processes were stopped; rerunning resumes."""


_STOP = threading.Event()  # set on Ctrl-C: no new job process is started
_RUNNING: Dict[int, subprocess.Popen] = {}
_RUNNING_LOCK = threading.Lock()


def _child_setup():  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the thread that started it dies (e.g. ``kill -9`` of ``mtft-nlp run``)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _run_process(cmd: List[str], log_path: Path, env: Optional[Dict] = None) -> int:
    """Run one job process, output to ``log_path``. It runs in its own process group (so a terminal
    Ctrl-C reaches only ``mtft-nlp run``, which then stops it) and dies with its parent on Linux."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        with _RUNNING_LOCK:
            if _STOP.is_set():
                return -2
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_child_setup if sys.platform.startswith("linux") else None,
            )
            _RUNNING[proc.pid] = proc
        try:
            return proc.wait()
        finally:
            with _RUNNING_LOCK:
                _RUNNING.pop(proc.pid, None)


def _last_progress(log_path: Path) -> Optional[str]:
    """The last ``progress:`` line a job wrote to its log (see ``cli.step_progress_callback``)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = [ln for ln in tail.splitlines() if ln.startswith("progress: ")]
    return lines[-1][len("progress: ") :] if lines else None


def stop_running_jobs(grace: float = 5.0) -> None:
    """Start no new job; SIGTERM every running job's process group, SIGKILL what is left after ``grace`` s."""
    import signal

    _STOP.set()
    with _RUNNING_LOCK:
        procs = list(_RUNNING.values())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.time() + grace
        while time.time() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.05)
        if all(p.poll() is not None for p in procs):
            break


def assign_devices(workers: int, n_gpus: int, cells_per_device: int = 1) -> List[Optional[int]]:
    """The GPU index of each worker slot (``None``: the CPU).

    Without a GPU there are ``workers`` CPU slots. With ``n_gpus`` GPUs there are
    ``max(workers, n_gpus * cells_per_device)`` slots, assigned round-robin (slot i on GPU
    ``i % n_gpus``), so every GPU holds ``cells_per_device`` cell processes (or, when ``workers``
    asks for more, the GPUs' loads differ by at most one).
    """
    workers, cells_per_device = max(1, int(workers)), max(1, int(cells_per_device))
    if n_gpus <= 0:
        return [None] * workers
    return [i % n_gpus for i in range(max(workers, n_gpus * cells_per_device))]


def _visible_gpus() -> List[str]:
    """The ids to put in ``CUDA_VISIBLE_DEVICES`` for each GPU this process sees (respecting a
    ``CUDA_VISIBLE_DEVICES`` already set, e.g. ``2,5``)."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:n] if len(listed) >= n else [str(i) for i in range(n)]


def device_envs(workers: int, cells_per_device: int = 1, gpus: Optional[Sequence[str]] = None) -> List[Dict]:
    """One environment per worker slot (see :func:`assign_devices`): each slot on a GPU sees only that
    GPU; with several slots each gets ``cores // slots`` CPU threads (``OMP_NUM_THREADS``, unless set).
    ``gpus`` (default: the visible ones) lists the device ids, for tests."""
    gpus = _visible_gpus() if gpus is None else list(gpus)
    slots = assign_devices(workers, len(gpus), cells_per_device)
    threads = str(max(1, (os.cpu_count() or 1) // len(slots)))
    envs = []
    for device in slots:
        env = dict(os.environ)
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpus[device]
        if len(slots) > 1:
            env.setdefault("OMP_NUM_THREADS", threads)
        envs.append(env)
    return envs


def unit_results(futures: Dict, progress=None, finished=None, poll: float = 2.0, on_end=None):
    """(future, job, return code, seconds) for each job of each unit, as it ends.

    A batch unit (several cells in one process) is watched while it runs: each cell is given out as soon as
    ``finished(cell)`` is true (its seconds: since the unit's previous cell), the rest when the process ends
    (the remaining seconds shared out); a batch's return code is left to ``finished`` (0 here). With ``progress``
    (``progress(job, line)``), each running single-job unit's newest progress line is passed on meanwhile (the
    multitask stages print one every few steps). ``futures`` may grow while this runs: ``on_end(future)``, called
    when a unit's process ends and before its jobs are given out, may submit more."""
    ended, shown, since, given = set(), {}, {}, {}
    while True:
        pending = [fut for fut in futures if fut not in ended]
        if not pending:
            return
        done, running = cf.wait(pending, timeout=poll, return_when=cf.FIRST_COMPLETED)
        now = time.time()
        for fut in running:
            unit = futures[fut]
            if len(unit) == 1 and progress:
                line = _last_progress(unit[0]["dir"].with_suffix(".log"))
                if line and shown.get(fut) != line:
                    shown[fut] = line
                    progress(unit[0], line)
            elif len(unit) > 1 and finished and fut.running():
                since.setdefault(fut, now)
                out = given.setdefault(fut, set())
                for i, job in enumerate(unit):
                    if i not in out and finished(job):
                        out.add(i)
                        yield fut, job, 0, now - since[fut]
                        since[fut] = now
        for fut in done:
            ended.add(fut)
            if on_end:
                on_end(fut)
            unit = futures[fut]
            rc, seconds = fut.result()
            rest = [job for i, job in enumerate(unit) if i not in given.get(fut, ())]
            left = now - since[fut] if fut in since else seconds
            for job in rest:
                yield fut, job, rc if len(unit) == 1 else 0, left / len(rest)


def run_timed(cmd, log, env):
    """Run one job's command line (its output to ``log``, environment ``env``); (return code, seconds)."""
    t0 = time.time()
    rc = _run_process(cmd, log, env)
    return rc, time.time() - t0


def schedule_jobs(
    units: List[List[Dict]],
    submit: Callable[[List[tuple]], List[cf.Future]],
    report: Callable[[Dict, int, float], None],
    progress: Optional[Callable[[Dict, str], None]] = None,
    finished: Optional[Callable[[Dict], bool]] = None,
    ready: Optional[Callable[[List[Dict]], bool]] = None,
    slots: Optional[int] = None,
) -> List[List[Dict]]:
    """The scheduling loop every backend shares: start the waiting units that are ready, report each job as it
    ends, start more whenever a unit ends. ``submit([(unit, slot), ...])`` starts units and returns one future of
    ``(return code, seconds)`` each; with ``slots`` at most that many units run at a time, each in a free slot
    (``None``: no limit, the backend queues them). Returns the units never started (see :func:`run_jobs`)."""
    waiting, futures, slot_of = list(units), {}, {}
    free: Optional[List[int]] = list(range(slots)) if slots else None

    def start():
        while not _STOP.is_set() and (free is None or free):
            picked = list(itertools.islice((u for u in waiting if ready is None or ready(u)), _maybe_len(free)))
            if not picked:
                return
            waiting[:] = [unit for unit in waiting if not any(unit is p for p in picked)]
            taken = [free.pop(0) for _ in picked] if free is not None else [None] * len(picked)
            for unit, slot, fut in zip(picked, taken, submit(list(zip(picked, taken)))):
                futures[fut], slot_of[fut] = unit, slot

    def on_end(fut):
        slot = slot_of.pop(fut)
        if free is not None:
            free.append(slot)
            free.sort()
        start()

    start()
    for _fut, job, rc, seconds in unit_results(futures, progress, finished, on_end=on_end):
        report(job, rc, seconds)
    return waiting


def _maybe_len(items: Optional[list]) -> Optional[int]:
    return None if items is None else len(items)


def run_interruptible(body: Callable[[], List[List[Dict]]], stop: Callable[[], None]) -> List[List[Dict]]:
    """Run ``body()``; on Ctrl-C or SIGTERM call ``stop()`` (with both signals ignored meanwhile, so a second
    Ctrl-C does not interrupt the clean-up) and raise :class:`Interrupted`."""
    _STOP.clear()
    restore = _terminate_as_interrupt()
    try:
        return body()
    except KeyboardInterrupt:
        import signal

        main = threading.current_thread() is threading.main_thread()
        previous_int = signal.getsignal(signal.SIGINT) if main else None
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C or kill does not interrupt the clean-up
            if main:
                signal.signal(sig, signal.SIG_IGN)
        _STOP.set()
        stop()
        if main:  # the caller's Ctrl-C again (SIGTERM: restored below); processes started later inherit it
            signal.signal(signal.SIGINT, previous_int)
        raise Interrupted() from None
    finally:
        restore()


def run_jobs(
    units: List[List[Dict]],
    commands: Callable[[List[Dict]], tuple],
    envs: List[Dict],
    report: Callable[[Dict, int, float], None],
    progress: Optional[Callable[[Dict, str], None]] = None,
    finished: Optional[Callable[[Dict], bool]] = None,
    ready: Optional[Callable[[List[Dict]], bool]] = None,
) -> List[List[Dict]]:
    """Run each unit's command (``commands(unit) -> (argv, log path)``) on the worker slots ``envs``, one unit per
    slot at a time, and call ``report(job, return code, seconds)`` for each job as it ends (see
    :func:`unit_results`: a batch's jobs one by one when ``finished(job)`` tells that one is done).

    Whenever a slot is free, the first waiting unit for which ``ready(unit)`` is true starts there (all are ready
    without ``ready``), so a unit that waits for another's output (a cell for its multitask stage) lets later
    ones pass. Returns the units never started: those still not ready when nothing was left running. Ctrl-C, or
    SIGTERM (``kill``, a batch scheduler's time limit), stops the running jobs (their process groups), starts no
    new one, and raises :class:`Interrupted`."""
    pool = cf.ThreadPoolExecutor(max_workers=len(envs))

    def submit(pairs):
        return [pool.submit(run_timed, *commands(unit), envs[slot]) for unit, slot in pairs]

    def stop():
        stop_running_jobs()
        pool.shutdown(wait=True, cancel_futures=True)

    left = run_interruptible(
        lambda: schedule_jobs(units, submit, report, progress, finished, ready, slots=len(envs)), stop
    )
    pool.shutdown(wait=True)
    return left


@contextlib.contextmanager
def grid_command_signals() -> Iterator[None]:
    """A whole grid command (``mtft-nlp run``/``sweep``) under Ctrl-C and SIGTERM alike, at every phase: loading the
    config, task selection, the jobs (where :func:`run_interruptible` stops them), recording, the report. Either
    signal raises KeyboardInterrupt; whatever phase it reaches, no job process is left running when it leaves this
    block (both signals ignored while they are stopped, so a second Ctrl-C cannot cut the clean-up short)."""
    import signal

    main = threading.current_thread() is threading.main_thread()
    previous_int = signal.getsignal(signal.SIGINT) if main else None
    restore = _terminate_as_interrupt()
    try:
        yield
    except KeyboardInterrupt:
        if main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)
        stop_running_jobs()  # (none, unless a second signal cut run_interruptible's own clean-up short)
        raise
    finally:
        restore()
        if main:
            signal.signal(signal.SIGINT, previous_int)


def _terminate_as_interrupt() -> Callable[[], None]:
    """In the main thread, make SIGTERM raise KeyboardInterrupt (the clean stop of Ctrl-C) until the returned
    function restores the previous handler."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)
