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
two selection methods choose the same sources, they share the checkpoint and the cells are
run once, the result recorded under each row (``same_run_as`` in the copies). Stages and
cells share the workers: a cell starts as soon as its stage is saved (cells without one at
once), so no worker waits for the slowest stage while others could run.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml

from .. import rows as _rows
from ..data.kshot import SEEDS, default_data_dir
from ..data.run_inputs import resolve_prompt
from ..io import RESULTS_FILE, atomic_write_json, atomic_write_text, is_complete
from ..methods import Method, all_methods, get_method
from ..models import check_model_folder, stage_saved
from ..records import ExperimentConfig
from ..tasks import MtftError, get_task

logger = logging.getLogger(__name__)

VARIANTS = _rows.VARIANTS  # row infix -> the selection method that chose the stage's sources


def row_variant(row: str) -> Optional[str]:
    """``None`` (base model), ``"all"`` (leave-one-out multitask) or a key of :data:`VARIANTS`."""
    return _rows.parse_row(row).variant


# bumped when task selection's defaults change meaning (2: union coverage, p auto, no-diversity with its own budget)
SELECTION_VERSION = 2

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

# the configuration's fields, types and defaults: records.ExperimentConfig
DEFAULTS: Dict = ExperimentConfig(rows=["all"], seeds=list(SEEDS)).to_dict()  # rows: the paper's Table 18


def load_config(path: Optional[str] = None, preset: Optional[str] = None, **overrides) -> Dict:
    """Defaults <- a YAML file (or ``configs/<preset>.yaml``) <- command-line overrides (non-None)."""
    cfg = copy.deepcopy(DEFAULTS)
    src = Path(path) if path else (CONFIG_DIR / f"{preset}.yaml" if preset else None)
    if src is not None:
        if not src.is_file():
            raise MtftError(f"config file not found: {src}")
        try:
            loaded = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise MtftError(f"config {src}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except yaml.YAMLError as exc:
            raise MtftError(f"config {src} is not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(loaded, dict):
            raise MtftError(f"config {src}: expected a mapping of settings, got {type(loaded).__name__}")
        cfg.update(loaded)
    for k, v in overrides.items():
        if v is not None:
            cfg[k] = v
    cfg = ExperimentConfig.from_dict(cfg, f"config {src}" if src else "config").to_dict()  # types checked
    cfg["rows"] = _rows.expand_rows(cfg["rows"])
    rows = _rows.ROWS
    bad = [r for r in cfg["rows"] + list(cfg["if_installed"]) if r not in rows]
    if bad:
        raise MtftError(f"unknown rows {bad}; rows are {', '.join(rows)}, or a group: {', '.join(_rows.ROW_GROUPS)}")
    cfg["rows"] = _installed_rows(cfg["rows"], cfg["if_installed"])
    cfg["targets"] = [get_task(t).name for t in cfg["targets"]]
    check_model_folder(cfg["model"], "model")
    cfg["data_dir"] = cfg["data_dir"] or default_data_dir()
    for key in ("data_dir", "source_data_dir"):  # every cell would fail on a folder that is not there
        if cfg.get(key) and not Path(cfg[key]).is_dir():
            raise MtftError(f"config: {key} {cfg[key]} is not a folder (pass --data_dir or set MTFT_NLP_DATA_DIR)")
    cfg["seeds"] = [int(s) for s in cfg["seeds"]]
    selection_prompt(cfg)  # sections that disagree on the prompt task selection renders the targets through
    check_sections(cfg)
    return cfg


def check_sections(cfg: Dict) -> None:
    """Every section the grid's jobs read, checked before any job starts: each row kind's cell flags and each
    multitask stage's flags parsed as their processes will parse them, a prompt given in a section loaded for each
    target, and the selection options. A bad key or value is one error naming the section (a cell would otherwise
    fail in every seed, after the jobs before it)."""
    from ..parsing import check_command_line
    from ..selection.select import check_options

    plan = Plan(cfg)
    if plan.variants():
        try:
            check_options(**cfg["selection"])
        except MtftError as exc:
            raise MtftError(f"config: section 'selection': {exc}") from None
    checked = set()
    jobs = [("train", _rows.parse_row(c["row"]).spec.section, c) for c in plan.cells()]
    jobs += [("multitask", get_method(j["method"]).stage_section, j) for j in plan.multitask_jobs()]
    for command, section, job in jobs:
        argv = [*job["args"], "--output_dir", str(job["dir"])]
        try:
            if (command, section) not in checked:
                check_command_line(command, argv)
                checked.add((command, section))
            prompt = {k: v for k, v in cfg[section].items() if k in PROMPT_KEYS and v is not None}
            if command == "train" and prompt and (section, job["target"]) not in checked:
                resolve_prompt(get_task(job["target"]), argparse.Namespace(**{**dict.fromkeys(PROMPT_KEYS), **prompt}))
                checked.add((section, job["target"]))
        except MtftError as exc:
            raise MtftError(f"config: section {section!r} ({_name(job)}): {exc}") from None


PROMPT_KEYS = ("prompt", "prompt_file", "template", "label_words")  # the section keys that choose a target's prompt


def selection_prompt(cfg: Dict) -> Dict:
    """The prompt keys that the sections of the selected-source rows give (``{}``: each target's own prompt file):
    task selection renders a target's examples through the prompt its cells use. Sections that give different ones
    are an error, since one selection serves them all."""
    found: Dict[str, Dict] = {}
    for name in cfg["rows"]:
        row = _rows.parse_row(name)
        if row.variant not in (None, "all"):
            section = row.spec.section
            found.setdefault(section, {k: v for k, v in cfg[section].items() if k in PROMPT_KEYS and v is not None})
    if len({json.dumps(o, sort_keys=True) for o in found.values()}) > 1:
        given = "; ".join(f"{section}: {opts or 'none'}" for section, opts in found.items())
        raise MtftError(
            f"config: task selection renders the target through one prompt, but the sections give different ones "
            f"({given}); give the same prompt keys ({', '.join(PROMPT_KEYS)}) in each"
        )
    return next(iter(found.values()), {})


def _installed_rows(rows: List[str], optional: List[str]) -> List[str]:
    """``rows`` without the ``optional`` peer rows whose package is missing (each said in one line on stderr)."""
    if not optional:
        return rows
    not_peers = [r for r in optional if not _method(r).peer]
    if not_peers:
        peers = sorted(k.name for m in all_methods() if m.peer for k in m.kinds)
        raise MtftError(f"if_installed: {not_peers} are not peer rows; only {peers} can be left out")
    out = []
    for r in rows:
        method = _method(r)
        if r in optional and not method.available():
            print(
                f"note: row {r} left out: the {method.name} package is not installed ({method.install_hint})",
                file=sys.stderr,
                flush=True,
            )
            continue
        out.append(r)
    return out


def _method(row: str) -> Method:
    return get_method(_rows.parse_row(row).method)


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
        key = [self.cfg["model"], self.cfg["selection"]] + (
            [] if variant == "sel" else [self.selection_options(variant)]
        )
        key.append(SELECTION_VERSION)  # files made by an older selection (other defaults) are not reused
        prompt = selection_prompt(self.cfg)
        if prompt:  # a target rendered through a prompt of the config's (keys without one are unchanged)
            key.append(prompt)
        stem = target if variant == "sel" else f"{target}-{variant}"
        return self.root / "selection" / f"{stem}-{_key(key)}.json"

    def selected_sources(self, target: str, variant: str) -> Optional[List[str]]:
        p = self.selection_path(target, variant)
        try:
            return list(json.loads(p.read_text(encoding="utf-8"))["selected"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def stage_ready(self, cell: Dict) -> bool:
        """Whether ``cell`` can run: it starts from the base model, or its multitask stage is saved."""
        return not cell.get("needs") or stage_saved(self.multitask_dir(*cell["needs"]))

    def variants(self) -> List[str]:
        return list(dict.fromkeys(v for r in self.cfg["rows"] if (v := row_variant(r)) not in (None, "all")))

    def multitask_dir(self, target: str, variant, method: str) -> Path:
        """The checkpoint folder of (target, variant, method); a variant whose chosen sources equal the
        ``selected`` ones shares that checkpoint. (``variant`` True/False = ``sel``/``all``.)"""
        variant = {True: "sel", False: "all"}.get(variant, variant)
        spec = get_method(method)
        stage_opts = self.cfg[spec.stage_section]
        extra = {"method": spec.name} if spec.keyed_by_name else {}  # keys that predate methods have no name
        if variant not in ("sel", "all"):
            sources = self.selected_sources(target, variant)
            if sources is None or sources != self.selected_sources(target, "sel"):
                # keyed by the chosen sources, so ablations choosing the same tasks share one stage
                spec = {
                    "model": self.cfg["model"],
                    "target": target,
                    "multitask": stage_opts,
                    "sources": sources if sources is not None else self.selection_options(variant),
                    **extra,
                }
                return self.root / "multitask" / f"{target}-{_key(spec)}"
        selected = variant != "all"
        spec = {
            "model": self.cfg["model"],
            "target": target,
            "selected": selected,
            "multitask": stage_opts,
            "selection": self.cfg["selection"] if selected else None,
            **extra,
        }
        return self.root / "multitask" / f"{target}-{'sel' if selected else 'all'}-{_key(spec)}"

    def cell_options(self, row: "_rows.Row") -> Dict:
        """The flags of a cell of ``row``: its kind's section of the configuration."""
        return dict(self.cfg[row.spec.section])

    def cells(self) -> List[Dict]:
        out = []
        for target in self.cfg["targets"]:
            for name in self.cfg["rows"]:
                row = _rows.parse_row(name)
                variant, method, spec = row.variant, row.method, get_method(row.method)
                zero = row.zero_shot
                model = str(self.multitask_dir(target, variant, method)) if variant else self.cfg["model"]
                opts = self.cell_options(row)
                flags = ["--method", method, *row.spec.flags]
                for seed in self.cfg["seeds"]:
                    key = {
                        "target": target,
                        "row": name,
                        "seed": seed,
                        "model": self.cfg["model"],
                        "options": opts,
                        "multitask": self.cfg[spec.stage_section] if variant else None,
                        "selection": self.selection_options(variant) if variant not in (None, "all") else None,
                    }
                    if spec.keyed_by_name:
                        key["method"] = method
                    args = [
                        "--task_name",
                        target,
                        "--seed",
                        str(seed),
                        "--model_name_or_path",
                        model,
                        "--row",
                        name,
                        "--data_dir",
                        self.cfg["data_dir"],
                        "--save_model",
                        "false",
                        "--disable_tqdm",
                        "true",
                        *flags,
                        *_flags(opts),
                    ]
                    out.append(
                        {
                            "target": target,
                            "row": name,
                            "seed": seed,
                            "args": args,
                            "dir": self.root / "cells" / target / name / f"seed{seed}-{_key(key)}",
                            "needs": (target, variant, method) if variant else None,
                            "method": method,
                            # cells with the same starting model and options compute the same run
                            "computes": _key(
                                [target, seed, model, zero, opts] + ([row.kind] if spec.keyed_by_name else [])
                            ),
                        }
                    )
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
            opts = self.cfg[get_method(method).stage_section]
            pool = self.cfg.get("source_data_dir")  # the sources' data, apart from the target's
            data = ["--data_dir", pool, "--target_data_dir", self.cfg["data_dir"]] if pool else []
            args = [
                "--target",
                target,
                "--sources",
                *sources,
                "--model_name_or_path",
                self.cfg["model"],
                "--method",
                method,
                *(data or ["--data_dir", self.cfg["data_dir"]]),
                "--disable_tqdm",
                "true",
                *_flags(opts),
            ]
            jobs[d] = {"target": target, "variant": variant, "dir": d, "args": args, "method": method}
        return list(jobs.values())


# the lists a run may cover a part of; runs into one folder that differ only in these add up
_GRID_KEYS = ("targets", "rows", "seeds")
# how a run is spread over the machine (or machines): no effect on its results
_RUN_KEYS = ("workers", "cells_per_device", "cells_per_process", "backend", "ray", "slurm")


def record_config(path: Path, cfg: Dict) -> None:
    """Write ``cfg`` as the folder's ``config.yaml``. A folder filled by several runs that differ only in
    ``targets``/``rows``/``seeds`` (say, one target at a time) or in how they used the machine (``workers``...)
    records the union of their grids, earlier ones first, so that the file describes every cell the folder
    holds; any other difference (other cells) replaces it."""
    out = {
        k: v
        for k, v in cfg.items()
        if k not in ("backend", "ray", "slurm", "if_installed", "source_data_dir") or v != DEFAULTS.get(k)
    }
    try:
        old = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        old = None
    skip = _GRID_KEYS + _RUN_KEYS
    if isinstance(old, dict) and {k: v for k, v in old.items() if k not in skip} == {
        k: v for k, v in out.items() if k not in skip
    }:
        for k in _GRID_KEYS:
            if isinstance(old.get(k), list):
                out[k] = list(dict.fromkeys([*old[k], *cfg.get(k, [])]))
    atomic_write_text(path, yaml.safe_dump(out, sort_keys=False))


def run_plan(cfg: Dict, progress: bool = True) -> Dict:
    """Run every missing job of ``cfg``: the task selections, then the multitask stages and the cells together
    (a cell as soon as its stage is saved); returns counts. Safe to interrupt and rerun."""
    from .backends import open_backend

    plan = Plan(cfg)
    backend = open_backend(cfg)  # bad backend options, a missing extra, a cluster that does not answer: fail here
    try:
        plan.root.mkdir(parents=True, exist_ok=True)
        record_config(plan.root / "config.yaml", cfg)
        run_selections(plan)
        failures: List[str] = []
        cells = plan.cells()
        first: Dict[str, Dict] = {}
        for c in cells:
            first.setdefault(c["computes"], c)
        n_mt, n_cells = _execute(
            plan, plan.multitask_jobs(), [c for c in cells if first[c["computes"]] is c], backend, failures, progress
        )
    finally:
        backend.close()
    ready = [c for c in cells if plan.stage_ready(c)]
    _record_same_runs(ready, first)
    if failures:
        raise MtftError(
            f"{len(failures)} jobs failed: {', '.join(failures[:5])}{' ...' if len(failures) > 5 else ''}; "
            "rerun to retry them"
        )
    return {"cells": len(cells), "ran": n_cells, "multitask_ran": n_mt, "blocked": len(cells) - len(ready)}


def run_selections(plan: "Plan") -> None:
    """Task selection (fast, in process, cached embeddings); ``selected`` also for the ablations, whose fixed sizes
    and shared checkpoints refer to it."""
    variants = plan.variants()
    if not variants:
        return
    from ..selection.select import select_tasks

    cfg = plan.cfg
    prompt = selection_prompt(cfg)
    for target in cfg["targets"]:
        for variant in ["sel"] + [v for v in variants if v != "sel"]:
            path = plan.selection_path(target, variant)
            if not is_complete(path.parent, path.name):
                opts = plan.selection_options(variant)
                result = select_tasks(
                    target,
                    data_dir=cfg.get("source_data_dir") or cfg["data_dir"],
                    model_name_or_path=cfg["model"],
                    target_examples=_target_examples(cfg, target, opts),
                    target_prompt=resolve_prompt(
                        get_task(target), argparse.Namespace(**{**dict.fromkeys(PROMPT_KEYS), **prompt})
                    )
                    if prompt
                    else None,
                    **opts,
                )
                atomic_write_json(path, result.to_dict())
                logger.info("selection (%s) for %s: %s", VARIANTS[variant], target, result.selected)


def _target_examples(cfg: Dict, target: str, opts: Dict) -> Optional[List[Dict]]:
    """The target's k-shot train examples from ``data_dir`` when the sources' data is elsewhere (None: both are in
    ``data_dir``, where selection finds them itself)."""
    if not cfg.get("source_data_dir"):
        return None
    from ..data.kshot import DEFAULT_K
    from ..data.sources import pooled_train, split_seeds
    from ..selection.embeddings import DEFAULT_SPLIT_SEED

    seeds = split_seeds(opts.get("split_seed", DEFAULT_SPLIT_SEED), opts.get("pool_seeds", False))
    return pooled_train(get_task(target), cfg["data_dir"], seeds, opts.get("k_shot", DEFAULT_K))[0]


def _record_same_runs(ready: List[Dict], first: Dict[str, Dict]) -> None:
    """The same run under another row (e.g. two selection methods choosing the same sources): a copy of the
    result with ``same_run_as``."""
    for c in ready:
        src = first[c["computes"]]
        if src is not c and is_complete(src["dir"], RESULTS_FILE) and not is_complete(c["dir"], RESULTS_FILE):
            r = json.loads((src["dir"] / RESULTS_FILE).read_text(encoding="utf-8"))
            r.update(row=c["row"], same_run_as=src["row"])
            atomic_write_json(c["dir"] / RESULTS_FILE, r)


def _execute(plan: "Plan", stages: List[Dict], cells: List[Dict], backend, failures: List[str], progress: bool):
    """Run the unfinished ``stages`` and ``cells`` as subprocesses through ``backend`` (:mod:`mtft_nlp.grid.backends`:
    this machine's workers, a Ray or SLURM cluster), the stages first and each cell (or batch of cells) once its
    stage is saved; one line per finished job. Returns how many stages and cells were started (cells whose stage
    failed are not)."""
    todo = [j for j in stages if not _finished(j)]
    todo_cells = [c for c in cells if not _finished(c)]
    if not todo and not todo_cells:
        return 0, 0
    before = len(stages) + len(cells) - len(todo) - len(todo_cells)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        what = " + ".join(f"{n} {k}" for n, k in ((len(todo), "stages"), (len(todo_cells), "cells")) if n)
        bar = tqdm(total=len(todo) + len(todo_cells), desc=f"{what} ({before} done before)", unit="job")
    write = bar.write if bar else print
    per_process = max(1, int(plan.cfg.get("cells_per_process") or 1))
    units = [[j] for j in todo] + batch_cells(todo_cells, per_process, plan.root, backend.parallel_jobs)

    def report(job, rc, seconds):
        ok = rc == 0 and _finished(job)
        if ok and _kind(job) == "cell":
            r = json.loads((job["dir"] / RESULTS_FILE).read_text())
            msg = f"{_name(job)}: {r['metric']} {r['test_score']:.4f} (dev {r['dev_score']:.4f}) in {seconds:.0f}s"
        else:
            log = job.get("batch_file", job["dir"]).with_suffix(".log")
            msg = f"{_name(job)}: {'done' if ok else 'FAILED (log: ' + str(log) + ')'} in {seconds:.0f}s"
        if not ok:
            failures.append(_name(job))
        write(msg)
        if bar:
            bar.update(1)

    try:
        left = backend.run(
            units,
            _command,
            report,
            lambda job, line: write(f"{_name(job)}: {line}") if _kind(job) == "multitask" else None,
            _finished,
            lambda unit: all(plan.stage_ready(c) for c in unit),
            lambda unit: plan.multitask_dir(*unit[0]["needs"]) if unit[0].get("needs") else None,
        )
    finally:
        if bar:
            bar.close()
    started = [j for u in units if not any(u is w for w in left) for j in u]
    return sum(_kind(j) == "multitask" for j in started), sum(_kind(j) == "cell" for j in started)


def _finished(job: Dict) -> bool:
    """A stage whose record and model are saved, a cell whose results.json is."""
    return stage_saved(job["dir"]) if _kind(job) == "multitask" else is_complete(job["dir"], RESULTS_FILE)


def _kind(job: Dict) -> str:
    return "cell" if "row" in job else "multitask"


def _name(job: Dict) -> str:
    if _kind(job) == "multitask":
        return f"{job['target']} {VARIANTS.get(job['variant'], 'all')} ({job['method']}) multitask"
    return f"{job['target']} {job['row']} seed {job['seed']}"


def _command(unit: List[Dict]):
    """The argv and log file of a unit: one stage, one cell, or a batch of cells run by ``mtft-nlp cells``."""
    py = [sys.executable, "-m", "mtft_nlp.cli"]
    job = unit[0]
    if len(unit) > 1:  # several cells in one process: imports and the frozen encoder's embeddings once
        return py + ["cells", str(job["batch_file"])], job["batch_file"].with_suffix(".log")
    sub = "multitask" if _kind(job) == "multitask" else "train"
    return py + [sub] + job["args"] + ["--output_dir", str(job["dir"])], job["dir"].with_suffix(".log")


def batch_cells(cells: List[Dict], size: int, root: Path, workers: int = 1) -> List[List[Dict]]:
    """Consecutive cells of one target, method and starting model (the base model or one multitask stage) as
    units run by one ``mtft-nlp cells`` process each, so that a unit can start as soon as its stage is saved; the
    cells' arguments are written to ``<root>/batches/<key>.json``.

    A run of n such cells is cut into k units of near-equal size (at most ``size``), k rounded up to a multiple
    of ``workers``: 25 cells at ``size`` 5 on 2 workers are 6 units of 5 or 4 (three rounds of two), not 5 units
    of 5 whose last one runs alone while the other worker idles."""
    runs: List[List[Dict]] = []
    for c in cells:
        last = runs[-1] if runs else None
        if last and all(last[0][k] == c[k] for k in ("target", "method", "needs")):
            last.append(c)
        else:
            runs.append([c])
    units: List[List[Dict]] = []
    for run in runs:
        n = len(run)
        k = min(n, math.ceil(math.ceil(n / size) / workers) * workers)
        bounds = [math.ceil(n * i / k) for i in range(k + 1)]  # the larger units first
        units += [run[a:b] for a, b in zip(bounds, bounds[1:])]
    for unit in units:
        if len(unit) > 1:
            specs = [{"args": c["args"] + ["--output_dir", str(c["dir"])]} for c in unit]
            path = root / "batches" / f"{unit[0]['target']}-{_key(specs)}.json"
            atomic_write_json(path, specs)
            for c in unit:
                c["batch_file"] = path
    return units


# --------------------------------------------------------------------------- sweeps


def sweep_configs(cfg: Dict, target: str, vary: str, values: Sequence, method: str = "prompt") -> List[Dict]:
    """Configurations of a sweep: ``num_tasks`` (multitask on the top-n sources by similarity to the target, the
    method's finetuning row after the stage: mt-sel-pbft, or mt-sel-embed-ft with ``method="embedding"``) or
    ``shots`` (K per class, the method's finetuning row: pbft / embed-ft)."""
    sweepable = [m.name for m in all_methods() if m.finetune_kind and m.stage_section]
    if method not in sweepable:
        raise MtftError(f"--method must be one of {', '.join(sweepable)} for a sweep, got {method!r}")
    spec = get_method(method)
    kind, opts = spec.finetune_kind, spec.kind(spec.finetune_kind).section
    out = []
    for v in values:
        c = copy.deepcopy(cfg)
        c["targets"] = [get_task(target).name]
        c["output_dir"] = str(Path(cfg["output_dir"]) / f"{vary}-{v}")
        if vary == "shots":
            c["rows"] = [kind]
            c[opts] = dict(c[opts], k=int(v))
        elif vary == "num_tasks":
            c["rows"] = [_rows.row_name(kind, "sel")]
            c["selection"] = dict(c["selection"], method="no-diversity", k=int(v))
        else:
            raise MtftError(f"--vary must be num_tasks or shots, got {vary!r}")
        c["sweep"] = {"variable": vary, "value": v}
        out.append(c)
    return out


def run_sweep(cfg: Dict, target: str, vary: str, values: Sequence, method: str = "prompt") -> List[Dict]:
    results = []
    for c in sweep_configs(cfg, target, vary, values, method):
        sweep = c.pop("sweep")
        run_plan(c)
        atomic_write_json(Path(c["output_dir"]) / "sweep.json", sweep)
        results.append(sweep)
    return results
