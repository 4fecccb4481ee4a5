"""Where the grid's jobs run (``mtft-nlp run --backend``): this machine's worker processes (``local``, the default),
a Ray cluster (``ray``) or a SLURM cluster through submitit (``slurm``).

Every backend runs the same units of :func:`mtft_nlp.grid.plan.run_plan` (a multitask stage, a cell, or a batch of
cells) with the same command line, each writing its log next to its output folder and one result file at its end,
so the folders, the resume rule (a finished job is skipped) and the report do not depend on the backend; the
scheduling loop is :func:`mtft_nlp.grid.workers.schedule_jobs` for all of them. A cluster node runs the job's command
line with its own Python (:func:`run_on_node`), so the nodes need the shared filesystem, the data folder and the
package installed (docs/BACKENDS.md).

- ``local``: :func:`mtft_nlp.grid.workers.run_jobs`, the worker slots of this machine.
- ``ray``: one Ray task per unit, with its CPU and GPU request (fractional GPUs for cells: ``cells_per_device``
  cells share one GPU), on a running cluster (``ray.address``, ``--ray_address``, ``$RAY_ADDRESS``) or on a local
  one started here with ``workers`` x ``cpus_per_job`` CPUs; a cell is submitted once its stage is saved.
- ``slurm``: job arrays through submitit, the stages first and each stage's cells as an array that depends on it
  (``afterok``), so the whole grid is queued at once; submitit's files and each array task's log go to
  ``<output_dir>/slurm/``. ``slurm.cluster: local`` runs the same jobs through submitit's local executor (no
  dependencies there: a stage's cells are submitted once it is saved).

The extras (``pip install 'mtft-nlp[ray]'``, ``'mtft-nlp[slurm]'``) are imported here, when a backend is opened, so
nothing else needs them. Bad options, a missing extra, or a Ray cluster that does not answer fail in
:func:`open_backend`, before the output folder is made or anything is submitted.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import importlib
import os
import shlex
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..records import ExperimentConfig
from ..tasks import MtftError
from .workers import device_envs, run_interruptible, run_jobs, run_timed, schedule_jobs, stop_running_jobs

__all__ = ["Backend", "open_backend", "run_on_node", "sbatch_script", "slurm_parameters"]

# the package each backend's extra installs
EXTRAS = {"ray": "ray", "slurm": "submitit"}


def run_on_node(cmd: List[str], log: str, threads: int) -> Tuple[int, float]:
    """One job on a cluster node (a Ray task, a SLURM array task): the command line a local worker would run, with
    this node's Python, its output to the same log file (on the shared filesystem), ``threads`` CPU threads.
    Returns (return code, seconds). Cancelling the task (Ctrl-C of ``mtft-nlp run``, ``scancel``) stops the job's
    process group."""
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, int(threads))))
    try:
        return run_timed([sys.executable, *cmd[1:]], Path(log), env)
    except KeyboardInterrupt:
        stop_running_jobs()
        raise


def _node_args(commands: Callable[[List[Dict]], tuple], unit: List[Dict], threads: float) -> tuple:
    """The arguments of :func:`run_on_node` for ``unit``."""
    cmd, log = commands(unit)
    return cmd, str(log), max(1, int(threads))


def _import_extra(backend: str):
    try:
        return importlib.import_module(EXTRAS[backend])
    except ImportError:
        raise MtftError(
            f"backend {backend!r} needs the {backend} extra, which is not installed "
            f"(pip install 'mtft-nlp[{backend}]', package {EXTRAS[backend]!r})"
        ) from None


def _is_stage(unit: List[Dict]) -> bool:
    return "row" not in unit[0]  # a cell has a row; a multitask stage has none (experiments._kind)


def _job_future(src: cf.Future, started: float) -> cf.Future:
    """A running future of (return code, seconds) that ends with ``src``: an exception there (a cancelled task, a
    node that died) is a failed job (return code -1), reported like any other and not stopping the others."""
    out: cf.Future = cf.Future()
    out.set_running_or_notify_cancel()  # a batch's cells are reported one by one while it runs

    def done(fut):
        try:
            rc, seconds = fut.result()
        except BaseException:  # noqa: BLE001 - CancelledError, Ray's task and worker errors, submitit's job errors
            rc, seconds = -1, time.time() - started
        out.set_result((rc, seconds))

    src.add_done_callback(done)
    return out


def _positive(opts: Dict, section: str, names: Tuple[str, ...], minimum: float = 0, strict: bool = True) -> None:
    for name in names:
        value = opts[name]
        if value is not None and (value <= minimum if strict else value < minimum):
            raise MtftError(f"'{section}.{name}' is {value!r}, expected a number {'>' if strict else '>='} {minimum}")


class Backend(abc.ABC):
    """Runs the grid's units; :func:`open_backend` makes one from the configuration."""

    name = "local"
    parallel_jobs = 1  # units running at a time: cells are cut into batches that fill whole rounds of them

    @abc.abstractmethod
    def run(
        self,
        units: List[List[Dict]],
        commands: Callable[[List[Dict]], tuple],
        report: Callable[[Dict, int, float], None],
        progress: Optional[Callable[[Dict, str], None]],
        finished: Callable[[Dict], bool],
        ready: Callable[[List[Dict]], bool],
        stage_of: Callable[[List[Dict]], Optional[Path]],
    ) -> List[List[Dict]]:
        """Run ``units`` (``commands(unit) -> (argv, log path)``), a unit once ``ready(unit)`` (its stage is saved);
        ``stage_of(unit)`` is the folder of the stage it waits for (``None``: none). ``report(job, return code,
        seconds)`` each job as it ends. Returns the units never started; Ctrl-C stops or cancels what was started
        and raises :class:`mtft_nlp.grid.workers.Interrupted` (see :func:`mtft_nlp.grid.workers.run_jobs`)."""

    def close(self) -> None:
        """Give back what opening took (a Ray connection, a Ray cluster started here)."""


class LocalBackend(Backend):
    """This machine's worker slots (``workers``, ``cells_per_device``): :func:`mtft_nlp.grid.workers.run_jobs`."""

    def __init__(self, cfg: Dict):
        self.envs = device_envs(max(1, int(cfg.get("workers") or 1)), int(cfg.get("cells_per_device") or 1))
        self.parallel_jobs = len(self.envs)

    def run(self, units, commands, report, progress, finished, ready, stage_of):
        return run_jobs(units, commands, self.envs, report, progress, finished, ready)


def _address_error(address: Optional[str], why: str) -> MtftError:
    return MtftError(f"ray address {address!r} (--ray_address, ray.address or $RAY_ADDRESS): {' '.join(why.split())}")


def _check_answers(address: str, timeout: float) -> None:
    """Fail at once (one TCP connection, ``timeout`` s) when nothing listens at a Ray address ``host:port`` or
    ``ray://host:port``, instead of Ray's own long retries."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise _address_error(address, "expected host:port, ray://host:port or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise _address_error(address, f"no Ray cluster answers within {timeout:g}s ({exc})") from None


class RayBackend(Backend):
    """Each unit a Ray task running :func:`run_on_node`, with ``cpus_per_job`` CPUs and ``gpus_per_cell`` /
    ``gpus_per_stage`` GPUs."""

    name = "ray"

    def __init__(self, cfg: Dict):
        opts = ExperimentConfig.backend_options(cfg.get("ray") or {}, "ray")
        _positive(opts, "ray", ("cpus_per_job", "connect_timeout_s"))
        _positive(opts, "ray", ("gpus_per_cell", "gpus_per_stage"), strict=False)
        address = opts["address"] or os.environ.get("RAY_ADDRESS") or None
        ray = _import_extra("ray")
        self.ray, self.cpus = ray, opts["cpus_per_job"]
        if address not in (None, "auto", "local"):
            _check_answers(address, float(opts["connect_timeout_s"]))
        self.owned = not ray.is_initialized()  # connected here (else: the caller's connection, left open)
        if self.owned:
            start = {"num_cpus": max(1, int(cfg.get("workers") or 1)) * self.cpus} if address is None else {}
            try:
                ray.init(
                    address=address or "local",
                    include_dashboard=False,
                    log_to_driver=False,
                    logging_level="warning",
                    **start,
                )
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                raise _address_error(address, str(exc)) from None
        resources = ray.cluster_resources()
        has_gpus = resources.get("GPU", 0) > 0
        per_device = max(1, int(cfg.get("cells_per_device") or 1))
        self.cell_gpus = opts["gpus_per_cell"] if opts["gpus_per_cell"] is not None else (1 / per_device) * has_gpus
        self.stage_gpus = opts["gpus_per_stage"] if opts["gpus_per_stage"] is not None else float(has_gpus)
        fits = [resources.get("CPU", 1) / self.cpus] + ([resources["GPU"] / self.cell_gpus] if self.cell_gpus else [])
        self.parallel_jobs = max(1, int(min(fits)))
        self.task = ray.remote(max_retries=0)(run_on_node)

    def run(self, units, commands, report, progress, finished, ready, stage_of):
        refs = []

        def submit(pairs):
            out = []
            for unit, _slot in pairs:
                gpus = self.stage_gpus if _is_stage(unit) else self.cell_gpus
                ref = self.task.options(num_cpus=self.cpus, num_gpus=gpus).remote(
                    *_node_args(commands, unit, self.cpus)
                )
                refs.append(ref)
                out.append(_job_future(ref.future(), time.time()))
            return out

        def stop():
            for ref in refs:
                try:
                    self.ray.cancel(ref, force=True)  # the worker dies, and with it the job's process group
                except Exception:  # noqa: BLE001 - already finished
                    pass

        return run_interruptible(lambda: schedule_jobs(units, submit, report, progress, finished, ready), stop)

    def close(self) -> None:
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()


def slurm_parameters(opts: Dict, name: str, dependency: Optional[str] = None) -> Dict:
    """The submitit ``SlurmExecutor`` parameters (sbatch options) of one job array of the slurm backend: ``opts``
    (the ``slurm:`` section, checked), the array's job name, and the job it waits for (``afterok:<id>``; the array
    is cancelled when that one fails)."""
    extra = {str(k): v for k, v in opts["sbatch"].items()}
    params = {
        "job_name": name,
        "time": opts["time_min"],
        "cpus_per_task": opts["cpus_per_task"],
        "array_parallelism": opts["array_parallelism"],
        "stderr_to_stdout": True,
    }
    if opts["partition"]:
        params["partition"] = opts["partition"]
    if opts["gpus_per_task"]:
        params["gpus_per_task"] = opts["gpus_per_task"]
    if dependency:
        params["dependency"] = dependency
        extra["kill-on-invalid-dep"] = "yes"
    if extra:
        params["additional_parameters"] = extra
    return params


def _slurm_options(cfg: Dict) -> Dict:
    opts = ExperimentConfig.backend_options(cfg.get("slurm") or {}, "slurm")
    _positive(opts, "slurm", ("time_min", "cpus_per_task", "array_parallelism"))
    _positive(opts, "slurm", ("gpus_per_task",), strict=False)
    if opts["cluster"] not in ("slurm", "local"):
        raise MtftError(f"'slurm.cluster' is {opts['cluster']!r}, expected slurm or local")
    bad = {k: v for k, v in opts["sbatch"].items() if not isinstance(v, (str, int, float)) or isinstance(v, bool)}
    if bad:
        raise MtftError(f"'slurm.sbatch' options must be strings or numbers, got {bad}")
    return opts


def _log_folder(cfg: Dict) -> Path:
    return Path(cfg["output_dir"]).absolute() / "slurm" / "%j"


def sbatch_script(cfg: Dict, n_jobs: int, name: str = "mtft-cells", dependency: Optional[str] = None) -> str:
    """The sbatch script the slurm backend submits for an array of ``n_jobs`` jobs of ``cfg`` (rendered by submitit,
    nothing submitted, no cluster needed)."""
    from submitit.slurm.slurm import _make_sbatch_string  # the function SlurmExecutor renders its scripts with

    _import_extra("slurm")
    folder = _log_folder(cfg)
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(
        command=command,
        folder=folder,
        map_count=n_jobs if n_jobs > 1 else None,
        **slurm_parameters(_slurm_options(cfg), name, dependency),
    )


class _Watcher:
    """Polls submitted submitit jobs and ends each one's future when the job is done."""

    def __init__(self, poll: float):
        self.poll, self.jobs, self.lock = poll, [], threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def watch(self, job) -> cf.Future:
        src: cf.Future = cf.Future()
        with self.lock:
            self.jobs.append((job, src))
        return _job_future(src, time.time())

    def _loop(self) -> None:
        while not self.stopped.wait(self.poll):
            with self.lock:
                jobs = list(self.jobs)
            for job, src in jobs:
                try:
                    if not job.done():
                        continue
                    src.set_result(job.result())
                except Exception as exc:  # noqa: BLE001 - a failed or cancelled job, an sacct hiccup
                    src.set_exception(exc)
                with self.lock:
                    self.jobs.remove((job, src))


class SlurmBackend(Backend):
    """Job arrays through submitit (see the module's docstring)."""

    name = "slurm"

    def __init__(self, cfg: Dict):
        self.opts = _slurm_options(cfg)
        self.submitit = _import_extra("slurm")
        self.cluster = self.opts["cluster"]
        if self.cluster == "slurm" and shutil.which("sbatch") is None:
            raise MtftError(
                "'slurm.cluster' is slurm but sbatch is not found on this machine: run from a SLURM login node, "
                "or set slurm.cluster: local to run the jobs here through submitit"
            )
        self.folder = _log_folder(cfg)
        self.parallel_jobs = self.opts["array_parallelism"]
        self.poll_s = 1.0 if self.cluster == "local" else 10.0  # how often the jobs' states are read

    def _parameters(self, name: str, dependency: Optional[str]) -> Dict:
        params = {f"slurm_{k}": v for k, v in slurm_parameters(self.opts, name, dependency).items()}
        params.update(timeout_min=self.opts["time_min"], name=name)  # the local executor's (the slurm_ ones win)
        return params

    def run(self, units, commands, report, progress, finished, ready, stage_of):
        executor = self.submitit.AutoExecutor(folder=self.folder, cluster=self.cluster)
        watcher = _Watcher(self.poll_s)
        stages, jobs = {}, []  # stage folder -> its job (this run's)

        def waits_for(unit) -> Optional[str]:
            """The submitted stage job a unit can wait for in the queue (SLURM only: afterok)."""
            d = None if ready(unit) else stage_of(unit)
            return stages[d].job_id if d in stages and self.cluster == "slurm" else None

        def submit(pairs):
            groups: Dict[tuple, List[List[Dict]]] = {}
            for unit, _slot in pairs:
                dep = waits_for(unit)
                groups.setdefault(("mtft-stages" if _is_stage(unit) else "mtft-cells", dep), []).append(unit)
            futures = {}
            for (name, dep), group in groups.items():
                executor.update_parameters(**self._parameters(name, dep and f"afterok:{dep}"))
                with executor.batch():
                    threads = self.opts["cpus_per_task"]
                    submitted = [executor.submit(run_on_node, *_node_args(commands, u, threads)) for u in group]
                for unit, job in zip(group, submitted):
                    jobs.append(job)
                    if _is_stage(unit):
                        stages[unit[0]["dir"]] = job
                    futures[id(unit)] = watcher.watch(job)
            return [futures[id(unit)] for unit, _slot in pairs]

        def stop():
            for job in jobs:
                try:
                    if not job.done():
                        job.cancel(check=False)
                except Exception:  # noqa: BLE001 - already gone
                    pass

        try:
            return run_interruptible(
                lambda: schedule_jobs(
                    units, submit, report, progress, finished, lambda u: ready(u) or waits_for(u) is not None
                ),
                stop,
            )
        finally:
            watcher.stopped.set()


_BACKENDS = {"local": LocalBackend, "ray": RayBackend, "slurm": SlurmBackend}


def open_backend(cfg: Dict) -> Backend:
    """The backend ``cfg["backend"]`` names, its options checked, its extra imported, its cluster connected:
    every error here is bad input (one ``error:`` line), raised before anything is written or submitted."""
    name = cfg.get("backend") or "local"
    if name not in _BACKENDS:
        raise MtftError(f"'backend' is {name!r}, expected one of {', '.join(_BACKENDS)}")
    return _BACKENDS[name](cfg)
