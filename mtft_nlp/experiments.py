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
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from .data import SEEDS, default_data_dir
from .results import atomic_write_json, atomic_write_text
from .tasks import MtftError, get_task

logger = logging.getLogger(__name__)

PAPER_ROWS = ("zero-shot", "mt-zero-shot", "mt-sel-zero-shot", "pbft", "mt-pbft", "mt-sel-pbft")
# row infix -> selection method (rows mt-<infix>-zero-shot / mt-<infix>-pbft)
VARIANTS = {"sel": "selected", "random": "random", "nocon": "no-consistency", "nodiv": "no-diversity"}
ROWS = PAPER_ROWS + tuple(f"mt-{v}-{kind}" for kind in ("zero-shot", "pbft") for v in VARIANTS if v != "sel")
ROW_GROUPS = {"all": list(PAPER_ROWS), "ablations": ["mt-sel-pbft", "mt-random-pbft", "mt-nocon-pbft", "mt-nodiv-pbft"]}


def row_variant(row: str) -> Optional[str]:
    """``None`` (base model), ``"all"`` (leave-one-out multitask) or a key of :data:`VARIANTS`."""
    if not row.startswith("mt-"):
        return None
    infix = row[3:].rsplit("-zero-shot", 1)[0].rsplit("-pbft", 1)[0]
    return infix if infix in VARIANTS else "all"


CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

DEFAULTS: Dict = {
    "model": "minilm",
    "targets": ["SST-2", "RTE"],
    "rows": list(PAPER_ROWS),
    "seeds": list(SEEDS),
    "data_dir": None,  # $MTFT_NLP_DATA_DIR or ../shared/data
    "output_dir": "runs/experiment",
    "workers": 1,
    "train": {},  # run_glue_fewshot.py flags for prompt-based FT cells, e.g. {max_steps: 1000}
    "zero_shot": {},  # flags for zero-shot cells, e.g. {max_test_examples: 1000}
    "multitask": {},  # mtft-nlp multitask flags, e.g. {max_steps: 1000, learning_rate: 1e-5}
    "selection": {},  # select_tasks options, e.g. {method: selected}
}


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
        unknown = set(loaded) - set(DEFAULTS)
        if unknown:
            raise MtftError(f"config {src}: unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        cfg.update(loaded)
    for k, v in overrides.items():
        if v is not None:
            cfg[k] = v
    rows = [cfg["rows"]] if isinstance(cfg["rows"], str) else list(cfg["rows"])
    cfg["rows"] = list(dict.fromkeys(x for r in rows for x in ROW_GROUPS.get(r, [r])))
    bad = [r for r in cfg["rows"] if r not in ROWS]
    if bad:
        raise MtftError(f"unknown rows {bad}; rows are {', '.join(ROWS)}, 'all' (the paper's six) or 'ablations'")
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

    def multitask_dir(self, target: str, variant) -> Path:
        """The checkpoint folder of (target, variant); a variant whose chosen sources equal the
        ``selected`` ones shares that checkpoint. (``variant`` True/False = ``sel``/``all``.)"""
        variant = {True: "sel", False: "all"}.get(variant, variant)
        if variant not in ("sel", "all"):
            sources = self.selected_sources(target, variant)
            if sources is None or sources != self.selected_sources(target, "sel"):
                # keyed by the chosen sources, so ablations choosing the same tasks share one stage
                spec = {"model": self.cfg["model"], "target": target, "multitask": self.cfg["multitask"],
                        "sources": sources if sources is not None else self.selection_options(variant)}
                return self.root / "multitask" / f"{target}-{_key(spec)}"
        selected = variant != "all"
        spec = {"model": self.cfg["model"], "target": target, "selected": selected, "multitask": self.cfg["multitask"],
                "selection": self.cfg["selection"] if selected else None}
        return self.root / "multitask" / f"{target}-{'sel' if selected else 'all'}-{_key(spec)}"

    def cells(self) -> List[Dict]:
        out = []
        for target in self.cfg["targets"]:
            for row in self.cfg["rows"]:
                for seed in self.cfg["seeds"]:
                    zero = row.endswith("zero-shot")
                    variant = row_variant(row)
                    model = str(self.multitask_dir(target, variant)) if variant else self.cfg["model"]
                    opts = dict(self.cfg["zero_shot"] if zero else self.cfg["train"])
                    spec = {"target": target, "row": row, "seed": seed, "model": self.cfg["model"], "options": opts,
                            "multitask": self.cfg["multitask"] if variant else None,
                            "selection": self.selection_options(variant) if variant not in (None, "all") else None}
                    args = ["--task_name", target, "--seed", str(seed), "--model_name_or_path", model, "--row", row,
                            "--data_dir", self.cfg["data_dir"], "--save_model", "false", "--disable_tqdm", "true",
                            *(["--zero_shot"] if zero else []), *_flags(opts)]
                    out.append({"target": target, "row": row, "seed": seed, "args": args,
                                "dir": self.root / "cells" / target / row / f"seed{seed}-{_key(spec)}",
                                "needs": (target, variant) if variant else None,
                                # cells with the same starting model and options compute the same run
                                "computes": _key([target, seed, model, zero, opts])})
        return out

    def multitask_jobs(self) -> List[Dict]:
        jobs: Dict[Path, Dict] = {}
        for c in self.cells():
            if not c["needs"]:
                continue
            target, variant = c["needs"]
            d = self.multitask_dir(target, variant)
            if d in jobs:
                continue
            if d == self.multitask_dir(target, "sel"):
                variant = "sel"
            sources = ["all"] if variant == "all" else [str(self.selection_path(target, variant))]
            args = ["--target", target, "--sources", *sources, "--model_name_or_path", self.cfg["model"],
                    "--data_dir", self.cfg["data_dir"], "--disable_tqdm", "true", *_flags(self.cfg["multitask"])]
            jobs[d] = {"target": target, "variant": variant, "dir": d, "args": args}
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


def _run_process(cmd: List[str], log_path: Path, env: Optional[Dict] = None) -> int:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _device_envs(workers: int) -> List[Dict]:
    """One environment per worker; with several visible GPUs, one GPU each."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    envs = []
    for i in range(workers):
        env = dict(os.environ)
        if n > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(i % n)
        if n == 0 and workers > 1:
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        envs.append(env)
    return envs


def run_plan(cfg: Dict, progress: bool = True) -> Dict:
    """Run every missing job of ``cfg``; returns counts. Safe to interrupt and rerun."""
    plan = Plan(cfg)
    plan.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.root / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    py = [sys.executable, "-m", "mtft_nlp.cli"]
    workers = max(1, int(cfg.get("workers") or 1))
    envs = _device_envs(workers)
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
                    result = select_tasks(target, data_dir=cfg["data_dir"], **plan.selection_options(variant))
                    atomic_write_json(path, result.to_dict())
                    logger.info("selection (%s) for %s: %s", VARIANTS[variant], target, result.selected)

    # 2. multitask stages, then 3. cells; each a subprocess, `workers` at a time
    def execute(jobs, kind):
        todo = [j for j in jobs if not _done(j["dir"], "multitask_config.json" if kind == "multitask" else "results.json")]
        if not todo:
            return 0
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"{kind} ({len(jobs) - len(todo)} of {len(jobs)} done before)", unit="job")
        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {}
            for i, job in enumerate(todo):
                cmd = py + ([kind] if kind == "multitask" else ["train"]) + job["args"] + ["--output_dir", str(job["dir"])]
                futures[pool.submit(_timed, cmd, job["dir"].with_suffix(".log"), envs[i % workers])] = job
            for fut in cf.as_completed(futures):
                job = futures[fut]
                rc, seconds = fut.result()
                ok = rc == 0 and _done(job["dir"], "multitask_config.json" if kind == "multitask" else "results.json")
                name = f"{job['target']} {VARIANTS.get(job['variant'], 'all')}" if kind == "multitask" else \
                    f"{job['target']} {job['row']} seed {job['seed']}"
                if ok and kind == "cell":
                    r = json.loads((job["dir"] / "results.json").read_text())
                    msg = f"{name}: {r['metric']} {r['test_score']:.4f} (dev {r['dev_score']:.4f}) in {seconds:.0f}s"
                else:
                    msg = f"{name}: {'done' if ok else 'FAILED (log: ' + str(job['dir'].with_suffix('.log')) + ')'} in {seconds:.0f}s"
                if not ok:
                    failures.append(name)
                (bar.write if bar else print)(msg)
                if bar:
                    bar.update(1)
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
