"""The experiment grid: (target, row, seed) cells, resumable and parallel, for ``mtft-nlp run`` and
``mtft-nlp sweep``.

Rows (the paper's Table 18): ``zero-shot``, ``pbft`` (the base model), ``mt-zero-shot``,
``mt-pbft`` (after the multitask stage on the leave-one-out sources), ``mt-sel-zero-shot``,
``mt-sel-pbft`` (after the multitask stage on the sources chosen by task selection); and the
selection ablations of the paper's Table 1, ``mt-random-*``, ``mt-nocon-*``, ``mt-nodiv-*``
(sources chosen by the ``random``, ``no-consistency`` and ``no-diversity`` methods; the
fixed-size ones take as many tasks as ``selected`` chose). ``--rows all`` is the six rows of
the paper's Table 18, ``--rows ablations`` is ``mt-sel-pbft`` and the three ablation FT rows.

Each cell is one ``mtft-nlp train`` process whose ``results.json`` is written atomically at
its end, in a folder named by a hash of the cell's resolved configuration: rerunning
skips finished cells, a killed run loses at most the cells in progress, and a changed
setting makes new cells instead of mixing results. A multitask checkpoint is trained
once per (target, sources, settings) and shared by every seed and row that needs it; when
two selection methods choose the same sources (``no-diversity`` at the default size always
equals ``selected``), they share the checkpoint and the cells are run once, the result
recorded under each row (``same_run_as`` in the copies).
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from .data import SEEDS, default_data_dir
from . import rows as _rows
from .records import ExperimentConfig
from .results import atomic_write_json, atomic_write_text
from .tasks import MtftError, get_task

logger = logging.getLogger(__name__)

# row names and their meaning live in rows.py; re-exported here for the runner's callers
ROWS, ROW_GROUPS, PAPER_ROWS, VARIANTS = _rows.ROWS, _rows.ROW_GROUPS, _rows.PAPER_ROWS, _rows.VARIANTS


def row_variant(row: str) -> Optional[str]:
    """``None`` (base model), ``"all"`` (leave-one-out multitask) or a key of :data:`VARIANTS`."""
    return _rows.parse_row(row).variant


# bumped when task selection's defaults change meaning (2: union coverage, p auto, no-diversity with its own budget)
SELECTION_VERSION = 2

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# the configuration's fields, types and defaults: records.ExperimentConfig
DEFAULTS: Dict = ExperimentConfig(rows=list(PAPER_ROWS), seeds=list(SEEDS)).to_dict()


def load_config(path: Optional[str] = None, preset: Optional[str] = None, **overrides) -> Dict:
    """Defaults <- a YAML file (or ``configs/<preset>.yaml``) <- command-line overrides (non-None)."""
    cfg = copy.deepcopy(DEFAULTS)
    src = Path(path) if path else (CONFIG_DIR / f"{preset}.yaml" if preset else None)
    if src is not None:
        if not src.is_file():
            raise MtftError(f"config file not found: {src}")
        try:
            loaded = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise MtftError(f"config {src} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise MtftError(f"config {src}: expected a mapping of settings, got {type(loaded).__name__}")
        cfg.update(loaded)
    for k, v in overrides.items():
        if v is not None:
            cfg[k] = v
    cfg = ExperimentConfig.from_dict(cfg, f"config {src}" if src else "config").to_dict()  # types checked
    cfg["rows"] = _rows.expand_rows(cfg["rows"])
    bad = [r for r in cfg["rows"] if r not in ROWS]
    if bad:
        raise MtftError(f"unknown rows {bad}; rows are {', '.join(ROWS)}, or a group: {', '.join(ROW_GROUPS)}")
    cfg["targets"] = [get_task(t).name for t in cfg["targets"]]
    cfg["data_dir"] = cfg["data_dir"] or default_data_dir()
    cfg["seeds"] = [int(s) for s in cfg["seeds"]]
    return cfg


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _flags(options: Dict) -> List[str]:
    out = []
    for k, v in options.items():
        if isinstance(v, (list, tuple)):
            out += [f"--{k}", *map(str, v)]
        else:
            out += [f"--{k}", str(v).lower() if isinstance(v, bool) else str(v)]
    return out


class Plan:
    """The jobs of a configuration: selections, multitask stages, then cells."""

    def __init__(self, cfg: Dict):
        self.cfg = cfg
        self.root = Path(cfg["output_dir"])

    def selection_options(self, variant: str) -> Dict:
        """``select_tasks`` options of a row variant: the config's ``selection`` for ``sel``, its method
        replaced for the ablations (``k`` kept only for the fixed-size methods)."""
        opts = dict(self.cfg["selection"])
        if variant != "sel":
            opts["method"] = VARIANTS[variant]
            if opts["method"] == "no-consistency":
                opts.pop("k", None)
        return opts

    def selection_path(self, target: str, variant: str = "sel") -> Path:
        key = [self.cfg["model"], self.cfg["selection"]] + ([] if variant == "sel" else [self.selection_options(variant)])
        key.append(SELECTION_VERSION)  # files made by an older selection (other defaults) are not reused
        stem = target if variant == "sel" else f"{target}-{variant}"
        return self.root / "selection" / f"{stem}-{_key(key)}.json"

    def selected_sources(self, target: str, variant: str) -> Optional[List[str]]:
        p = self.selection_path(target, variant)
        try:
            return list(json.loads(p.read_text(encoding="utf-8"))["selected"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def variants(self) -> List[str]:
        return list(dict.fromkeys(v for r in self.cfg["rows"] if (v := row_variant(r)) not in (None, "all")))

    def multitask_dir(self, target: str, variant, method: str = "prompt") -> Path:
        """The checkpoint folder of (target, variant, method); a variant whose chosen sources equal the
        ``selected`` ones shares that checkpoint. (``variant`` True/False = ``sel``/``all``.)"""
        variant = {True: "sel", False: "all"}.get(variant, variant)
        # the prompt method's keys are those of the committed runs; other methods add theirs
        stage_opts = self.cfg["multitask"] if method == "prompt" else self.cfg["embedding_multitask"]
        extra = {} if method == "prompt" else {"method": method}
        if variant not in ("sel", "all"):
            sources = self.selected_sources(target, variant)
            if sources is None or sources != self.selected_sources(target, "sel"):
                # keyed by the chosen sources, so ablations choosing the same tasks share one stage
                spec = {"model": self.cfg["model"], "target": target, "multitask": stage_opts,
                        "sources": sources if sources is not None else self.selection_options(variant), **extra}
                return self.root / "multitask" / f"{target}-{_key(spec)}"
        selected = variant != "all"
        spec = {"model": self.cfg["model"], "target": target, "selected": selected, "multitask": stage_opts,
                "selection": self.cfg["selection"] if selected else None, **extra}
        return self.root / "multitask" / f"{target}-{'sel' if selected else 'all'}-{_key(spec)}"

    def cell_options(self, row: "_rows.Row") -> Dict:
        if row.method == "prompt":
            return dict(self.cfg["zero_shot"] if row.zero_shot else self.cfg["train"])
        return dict(self.cfg["embedding"] if row.method == "embedding" else self.cfg["setfit"])

    def cells(self) -> List[Dict]:
        out = []
        for target in self.cfg["targets"]:
            for name in self.cfg["rows"]:
                row = _rows.parse_row(name)
                variant, method = row.variant, row.method
                zero = row.zero_shot
                model = str(self.multitask_dir(target, variant, method)) if variant else self.cfg["model"]
                opts = self.cell_options(row)
                flags = ["--method", method] + (["--zero_shot"] if zero else []) + \
                    (["--frozen_encoder"] if row.kind == "embed-adapt" else [])
                for seed in self.cfg["seeds"]:
                    spec = {"target": target, "row": name, "seed": seed, "model": self.cfg["model"], "options": opts,
                            "multitask": self.cfg["multitask"] if variant else None,
                            "selection": self.selection_options(variant) if variant not in (None, "all") else None}
                    if method != "prompt":
                        spec.update(method=method, multitask=self.cfg["embedding_multitask"] if variant else None)
                    args = ["--task_name", target, "--seed", str(seed), "--model_name_or_path", model, "--row", name,
                            "--data_dir", self.cfg["data_dir"], "--save_model", "false", "--disable_tqdm", "true",
                            *flags, *_flags(opts)]
                    out.append({"target": target, "row": name, "seed": seed, "args": args,
                                "dir": self.root / "cells" / target / name / f"seed{seed}-{_key(spec)}",
                                "needs": (target, variant, method) if variant else None,
                                # cells with the same starting model and options compute the same run
                                "computes": _key([target, seed, model, zero, opts] + ([row.kind] if method != "prompt"
                                                                                     else []))})
        return out

    def multitask_jobs(self) -> List[Dict]:
        jobs: Dict[Path, Dict] = {}
        for c in self.cells():
            if not c["needs"]:
                continue
            target, variant, method = c["needs"]
            d = self.multitask_dir(target, variant, method)
            if d in jobs:
                continue
            if d == self.multitask_dir(target, "sel", method):
                variant = "sel"
            sources = ["all"] if variant == "all" else [str(self.selection_path(target, variant))]
            opts = self.cfg["multitask"] if method == "prompt" else self.cfg["embedding_multitask"]
            args = ["--target", target, "--sources", *sources, "--model_name_or_path", self.cfg["model"],
                    "--method", method, "--data_dir", self.cfg["data_dir"], "--disable_tqdm", "true", *_flags(opts)]
            jobs[d] = {"target": target, "variant": variant, "dir": d, "args": args, "method": method}
        return list(jobs.values())


def _done(d: Path, marker: str) -> bool:
    p = d / marker
    if not p.is_file():
        return False
    try:
        json.loads(p.read_text(encoding="utf-8"))
        return True
    except (OSError, json.JSONDecodeError):
        return False


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
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    preexec_fn=_child_setup if sys.platform.startswith("linux") else None)
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
    return lines[-1][len("progress: "):] if lines else None


def _completed_with_progress(futures: Dict, write, poll: float = 2.0):
    """``as_completed`` that, while waiting, writes each running single-job unit's newest progress line
    (the multitask stages print one every few steps)."""
    pending, shown = set(futures), {}
    while pending:
        done, pending = cf.wait(pending, timeout=poll, return_when=cf.FIRST_COMPLETED)
        for fut in pending:
            unit = futures[fut]
            job = unit[0] if isinstance(unit, list) else unit
            line = _last_progress(job["dir"].with_suffix(".log"))
            if line and shown.get(fut) != line:
                shown[fut] = line
                write(f"{job['target']} multitask: {line}")
        yield from done


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


def _device_envs(workers: int, cells_per_device: int = 1, gpus: Optional[Sequence[str]] = None) -> List[Dict]:
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


def run_plan(cfg: Dict, progress: bool = True) -> Dict:
    """Run every missing job of ``cfg``; returns counts. Safe to interrupt and rerun."""
    plan = Plan(cfg)
    plan.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.root / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    py = [sys.executable, "-m", "mtft_nlp.cli"]
    workers = max(1, int(cfg.get("workers") or 1))
    envs = _device_envs(workers, int(cfg.get("cells_per_device") or 1))
    workers = len(envs)  # raised to GPUs x cells_per_device on GPUs
    per_process = max(1, int(cfg.get("cells_per_process") or 1))
    failures: List[str] = []

    # 1. task selection (fast, in process, cached embeddings); ``selected`` also for the ablations,
    #    whose fixed sizes and shared checkpoints refer to it
    variants = plan.variants()
    if variants:
        from .selection import select_tasks

        for target in cfg["targets"]:
            for variant in ["sel"] + [v for v in variants if v != "sel"]:
                path = plan.selection_path(target, variant)
                if not _done(path.parent, path.name):
                    result = select_tasks(target, data_dir=cfg["data_dir"], model_name_or_path=cfg["model"],
                                          **plan.selection_options(variant))
                    atomic_write_json(path, result.to_dict())
                    logger.info("selection (%s) for %s: %s", VARIANTS[variant], target, result.selected)

    # 2. multitask stages, then 3. cells; each a subprocess, `workers` at a time
    def execute(jobs, kind):
        todo = [j for j in jobs if not _done(j["dir"], "multitask_config.json" if kind == "multitask" else "results.json")]
        if not todo:
            return 0
        _STOP.clear()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"{kind} ({len(jobs) - len(todo)} of {len(jobs)} done before)", unit="job")
        pool = cf.ThreadPoolExecutor(max_workers=workers)
        try:
            futures = {}
            units = _batches(todo, per_process, plan.root) if kind == "cell" else [[j] for j in todo]
            for i, unit in enumerate(units):
                job = unit[0]
                if len(unit) > 1:  # several cells in one process: imports and the frozen encoder's embeddings once
                    cmd, log = py + ["cells", str(job["batch_file"])], job["batch_file"].with_suffix(".log")
                else:
                    cmd = py + ([kind] if kind == "multitask" else ["train"]) + job["args"] + \
                        ["--output_dir", str(job["dir"])]
                    log = job["dir"].with_suffix(".log")
                futures[pool.submit(_timed, cmd, log, envs[i % workers])] = unit
            for fut, job, rc, seconds in _unit_results(futures, (bar.write if bar else print) if kind == "multitask" else None):
                ok = rc == 0 and _done(job["dir"], "multitask_config.json" if kind == "multitask" else "results.json")
                name = f"{job['target']} {VARIANTS.get(job['variant'], 'all')}" if kind == "multitask" else \
                    f"{job['target']} {job['row']} seed {job['seed']}"
                if ok and kind == "cell":
                    r = json.loads((job["dir"] / "results.json").read_text())
                    msg = f"{name}: {r['metric']} {r['test_score']:.4f} (dev {r['dev_score']:.4f}) in {seconds:.0f}s"
                else:
                    log = job.get("batch_file", job["dir"]).with_suffix(".log")
                    msg = f"{name}: {'done' if ok else 'FAILED (log: ' + str(log) + ')'} in {seconds:.0f}s"
                if not ok:
                    failures.append(name)
                (bar.write if bar else print)(msg)
                if bar:
                    bar.update(1)
        except KeyboardInterrupt:  # Ctrl-C: stop the running jobs (their process groups), start no new one
            import signal

            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not interrupt the clean-up
            stop_running_jobs()
            pool.shutdown(wait=True, cancel_futures=True)
            if bar:
                bar.close()
            raise Interrupted() from None
        pool.shutdown(wait=True)
        if bar:
            bar.close()
        return len(todo)

    n_mt = execute(plan.multitask_jobs(), "multitask")
    cells = plan.cells()
    ready = [c for c in cells if not c["needs"] or _done(plan.multitask_dir(*c["needs"]), "multitask_config.json")]
    first: Dict[str, Dict] = {}
    for c in ready:
        first.setdefault(c["computes"], c)
    n_cells = execute([c for c in ready if first[c["computes"]] is c], "cell")
    for c in ready:  # the same run under another row (e.g. no-diversity choosing the selected sources)
        src = first[c["computes"]]
        if src is not c and _done(src["dir"], "results.json") and not _done(c["dir"], "results.json"):
            r = json.loads((src["dir"] / "results.json").read_text(encoding="utf-8"))
            r.update(row=c["row"], same_run_as=src["row"])
            atomic_write_json(c["dir"] / "results.json", r)
    skipped = len(cells) - len(ready)
    if failures:
        raise MtftError(f"{len(failures)} jobs failed: {', '.join(failures[:5])}{' ...' if len(failures) > 5 else ''}; "
                        "rerun to retry them")
    return {"cells": len(cells), "ran": n_cells, "multitask_ran": n_mt, "blocked": skipped}


def _batches(cells: List[Dict], size: int, root: Path) -> List[List[Dict]]:
    """Consecutive cells of one target and method, ``size`` at most, as units run by one ``mtft-nlp cells``
    process; the cells' arguments are written to ``<root>/batches/<key>.json``."""
    units: List[List[Dict]] = []
    for c in cells:
        method = c["args"][c["args"].index("--method") + 1] if "--method" in c["args"] else "prompt"
        last = units[-1] if units else None
        if last and len(last) < size and last[0]["target"] == c["target"] and last[0]["_method"] == method:
            last.append(c)
        else:
            units.append([c])
        c["_method"] = method
    for unit in units:
        if len(unit) > 1:
            specs = [{"args": c["args"] + ["--output_dir", str(c["dir"])]} for c in unit]
            path = root / "batches" / f"{unit[0]['target']}-{_key(specs)}.json"
            atomic_write_json(path, specs)
            for c in unit:
                c["batch_file"] = path
    return units


def _unit_results(futures, progress=None):
    """(future, cell or job, return code, seconds) for each job of each finished unit; a unit's seconds are shared
    out over its cells. With ``progress`` (a write function), running jobs' progress lines are written meanwhile."""
    for fut in (_completed_with_progress(futures, progress) if progress else cf.as_completed(futures)):
        unit = futures[fut]
        rc, seconds = fut.result()
        for job in unit:
            yield fut, job, rc if len(unit) == 1 else 0, seconds / len(unit)


def run_cells(batch_file: str) -> int:
    """Run the cells of a batch file one after another in this process (``mtft-nlp cells``); a failing cell is
    logged and the next one runs. Returns the number of failed cells."""
    import traceback

    from .cli import run_glue_main

    specs = json.loads(Path(batch_file).read_text(encoding="utf-8"))
    failed = 0
    for spec in specs:
        try:
            rc = run_glue_main(list(spec["args"]))
        except Exception:  # one broken cell must not take the batch down
            traceback.print_exc()
            rc = 1
        failed += rc != 0
    return failed


def _timed(cmd, log, env):
    t0 = time.time()
    rc = _run_process(cmd, log, env)
    return rc, time.time() - t0


# --------------------------------------------------------------------------- sweeps


def sweep_configs(cfg: Dict, target: str, vary: str, values: Sequence) -> List[Dict]:
    """Configurations of a sweep: ``num_tasks`` (multitask on the top-n sources by similarity
    to the target, row mt-pbft) or ``shots`` (K per class, row pbft)."""
    out = []
    for v in values:
        c = copy.deepcopy(cfg)
        c["targets"] = [get_task(target).name]
        c["output_dir"] = str(Path(cfg["output_dir"]) / f"{vary}-{v}")
        if vary == "shots":
            c["rows"] = ["pbft"]
            c["train"] = dict(c["train"], k=int(v))
        elif vary == "num_tasks":
            c["rows"] = ["mt-sel-pbft"]
            c["selection"] = dict(c["selection"], method="no-diversity", k=int(v))
        else:
            raise MtftError(f"--vary must be num_tasks or shots, got {vary!r}")
        c["sweep"] = {"variable": vary, "value": v}
        out.append(c)
    return out


def run_sweep(cfg: Dict, target: str, vary: str, values: Sequence) -> List[Dict]:
    results = []
    for c in sweep_configs(cfg, target, vary, values):
        sweep = c.pop("sweep")
        run_plan(c)
        atomic_write_json(Path(c["output_dir"]) / "sweep.json", sweep)
        results.append(sweep)
    return results
