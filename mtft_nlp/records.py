"""Typed records: what a run writes to ``results.json``, what a multitask stage writes to ``multitask_config.json``,
and the experiment configuration of ``mtft-nlp run``.

Each record is a dataclass with ``from_dict`` (schema check: every required field present with its type, the
field's name in the error) and ``to_dict``. Writers go through :func:`write_run_record` /
:func:`write_stage_record`, so no file is written that the report could not read. The JSON on disk is unchanged:
required fields are top-level keys and everything else a method records travels in ``extra``, flattened back into
the same object, so committed result files load as they are.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

from .tasks import MtftError

__all__ = [
    "RecordError",
    "RunRecord",
    "StageRecord",
    "ExperimentConfig",
    "run_record",
    "write_run_record",
    "write_stage_record",
    "result_line",
]


class RecordError(MtftError):
    """A record that does not match its schema."""


def _check(d: Dict, fields: Tuple[Tuple[str, Any], ...], what: str) -> None:
    if not isinstance(d, dict):
        raise RecordError(f"{what}: expected a JSON object, got {type(d).__name__}")
    for name, types in fields:
        if name not in d:
            raise RecordError(f"{what}: missing field {name!r}")
        if not isinstance(d[name], types) or (isinstance(d[name], bool) and bool not in _as_tuple(types)):
            raise RecordError(
                f"{what}: field {name!r} is {type(d[name]).__name__} {d[name]!r}, expected "
                f"{' or '.join(t.__name__ for t in _as_tuple(types))}"
            )


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


_NUMBER = (int, float)


@dataclasses.dataclass
class RunRecord:
    """One run of one (task, row, seed): the fields every table, plot and report reads, plus ``extra``."""

    task: str
    row: str
    seed: int
    metric: str
    dev_score: float
    test_score: float
    zero_shot: bool
    model: str
    prompt: Dict
    extra: Dict = dataclasses.field(default_factory=dict)

    SCHEMA = (
        ("task", str),
        ("row", str),
        ("seed", int),
        ("metric", str),
        ("dev_score", _NUMBER),
        ("test_score", _NUMBER),
        ("zero_shot", bool),
        ("model", str),
        ("prompt", dict),
    )

    @classmethod
    def from_dict(cls, d: Dict, where: str = "results record") -> "RunRecord":
        _check(d, cls.SCHEMA, where)
        names = [n for n, _ in cls.SCHEMA]
        return cls(**{n: d[n] for n in names}, extra={k: v for k, v in d.items() if k not in names})

    def to_dict(self) -> Dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out


@dataclasses.dataclass
class StageRecord:
    """A multitask stage's metadata (``multitask_config.json``): target, sources and how it was trained."""

    target: Optional[str]
    sources: List[Dict]
    sources_origin: str
    max_steps: int
    learning_rate: float
    base_model: Optional[str]
    extra: Dict = dataclasses.field(default_factory=dict)

    SCHEMA = (
        ("target", (str, type(None))),
        ("sources", list),
        ("sources_origin", str),
        ("max_steps", int),
        ("learning_rate", _NUMBER),
        ("base_model", (str, type(None))),
    )

    @classmethod
    def from_dict(cls, d: Dict, where: str = "multitask stage metadata") -> "StageRecord":
        _check(d, cls.SCHEMA, where)
        for i, s in enumerate(d["sources"]):
            _check(s, (("task", str),), f"{where}: sources[{i}]")
        names = [n for n, _ in cls.SCHEMA]
        return cls(**{n: d[n] for n in names}, extra={k: v for k, v in d.items() if k not in names})

    @property
    def source_tasks(self) -> List[str]:
        return [s["task"] for s in self.sources]

    def to_dict(self) -> Dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out


@dataclasses.dataclass
class ExperimentConfig:
    """The configuration of ``mtft-nlp run`` (configs/*.yaml): the grid and the flags of each kind of job."""

    model: str = "minilm"
    targets: List[str] = dataclasses.field(default_factory=lambda: ["SST-2", "RTE"])
    rows: List[str] = dataclasses.field(default_factory=list)
    seeds: List[int] = dataclasses.field(default_factory=list)
    data_dir: Optional[str] = None  # $MTFT_NLP_DATA_DIR or ../shared/data
    # the multitask sources' data when the targets' data_dir does not hold it (a user's own tasks); None: data_dir
    source_data_dir: Optional[str] = None
    output_dir: str = "runs/experiment"
    workers: int = 1
    cells_per_device: int = 1  # cell processes packed onto each visible GPU
    cells_per_process: int = 1  # >1: consecutive cells of one target and method share a process
    train: Dict = dataclasses.field(default_factory=dict)  # flags of prompt-based FT cells, e.g. {max_steps: 1000}
    zero_shot: Dict = dataclasses.field(default_factory=dict)  # flags of prompt zero-shot cells
    multitask: Dict = dataclasses.field(default_factory=dict)  # mtft-nlp multitask flags (prompt method)
    selection: Dict = dataclasses.field(default_factory=dict)  # select_tasks options, e.g. {method: selected}
    embedding: Dict = dataclasses.field(default_factory=dict)  # flags of the embedding method's cells
    embedding_multitask: Dict = dataclasses.field(default_factory=dict)  # its multitask stages' flags
    setfit: Dict = dataclasses.field(default_factory=dict)  # flags of the setfit peer's cells
    backend: str = "local"  # where the jobs run: local (this machine's process pool), ray, slurm (docs/BACKENDS.md)
    ray: Dict = dataclasses.field(default_factory=dict)  # options of the ray backend (BACKEND_OPTIONS["ray"])
    slurm: Dict = dataclasses.field(default_factory=dict)  # options of the slurm backend (BACKEND_OPTIONS["slurm"])
    # peer rows run only where their package is installed (the demo's setfit); elsewhere left out with a note
    if_installed: List[str] = dataclasses.field(default_factory=list)

    BACKENDS = ("local", "ray", "slurm")
    # each backend section's options: (types, default); None where the backend decides (see mtft_nlp/backends.py)
    BACKEND_OPTIONS = {
        "ray": {
            "address": ((str, type(None)), None),  # a running cluster (host:port, ray://..., auto); None: start one
            "cpus_per_job": ((int, float), 1),
            "gpus_per_cell": ((int, float, type(None)), None),  # None: 1 / cells_per_device when there are GPUs
            "gpus_per_stage": ((int, float, type(None)), None),  # None: 1 when there are GPUs
            "connect_timeout_s": ((int, float), 10),
        },
        "slurm": {
            "cluster": (str, "slurm"),  # slurm, or local: submitit's local executor (this machine, for tests)
            "partition": ((str, type(None)), None),
            "time_min": (int, 60),  # time limit of each job, minutes
            "cpus_per_task": (int, 1),
            "gpus_per_task": (int, 0),
            "array_parallelism": (int, 64),  # array tasks running at a time
            "sbatch": (dict, {}),  # extra sbatch options, e.g. {account: nlp, mem: 16G, qos: high}
        },
    }

    _TYPES = {
        "model": str,
        "targets": list,
        "rows": (list, str),
        "seeds": list,
        "data_dir": (str, type(None)),
        "source_data_dir": (str, type(None)),
        "output_dir": str,
        "workers": int,
        "cells_per_device": int,
        "cells_per_process": int,
        "backend": str,
        "if_installed": list,
    }

    @classmethod
    def from_dict(cls, d: Dict, where: str = "config") -> "ExperimentConfig":
        if not isinstance(d, dict):
            raise RecordError(f"{where}: expected a mapping of settings, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        sections = cls.method_sections() - known  # the sections of methods registered by plug-ins
        unknown = sorted(set(d) - known - sections)
        if unknown:
            raise RecordError(f"{where}: unknown keys {unknown}; known: {sorted(known | sections)}")
        for name, value in d.items():
            types = cls._TYPES.get(name, dict)
            if not isinstance(value, types) or (isinstance(value, bool) and types is int):
                raise RecordError(
                    f"{where}: {name!r} is {type(value).__name__} {value!r}, expected "
                    f"{' or '.join(t.__name__ for t in _as_tuple(types))}"
                )
        for name in ("workers", "cells_per_device", "cells_per_process"):
            if name in d and d[name] < 1:
                raise RecordError(f"{where}: {name!r} is {d[name]}, expected a whole number of at least 1")
        for name in ("seeds", "targets", "if_installed"):
            bad = [v for v in d.get(name) or [] if not isinstance(v, int if name == "seeds" else str) or v is True]
            bad += [v for v in d.get(name) or [] if name == "seeds" and v not in bad and not 0 <= v < 2**32]
            if bad:
                kind = f"whole numbers from 0 to {2**32 - 1} (split seeds)" if name == "seeds" else "names"
                raise RecordError(f"{where}: {name!r} holds {bad}, expected {kind}")
        if d.get("backend", "local") not in cls.BACKENDS:
            raise RecordError(f"{where}: 'backend' is {d['backend']!r}, expected one of {', '.join(cls.BACKENDS)}")
        for section in cls.BACKEND_OPTIONS:
            cls.backend_options(d.get(section) or {}, section, where)
        config = cls(**{k: v for k, v in d.items() if k in known})
        config.extra_sections = {k: v for k, v in d.items() if k not in known}
        return config

    @staticmethod
    def method_sections() -> set:
        """The configuration sections the registered methods read (their kinds' flags, their stage's flags)."""
        from .methods.registry import all_methods

        return {k.section for m in all_methods() for k in m.kinds} | {
            m.stage_section for m in all_methods() if m.stage_section
        }

    @classmethod
    def backend_options(cls, given: Dict, section: str, where: str = "config") -> Dict:
        """The options of backend ``section`` (``ray``, ``slurm``): ``given`` checked (known keys, types, the key's
        name in the error), missing ones at their defaults."""
        spec = cls.BACKEND_OPTIONS[section]
        unknown = sorted(set(given) - set(spec))
        if unknown:
            raise RecordError(f"{where}: unknown keys {unknown} in {section!r}; known: {sorted(spec)}")
        out = {}
        for name, (types, default) in spec.items():
            value = given.get(name, default)
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
                raise RecordError(
                    f"{where}: '{section}.{name}' is {type(value).__name__} {value!r}, expected "
                    f"{' or '.join(t.__name__ for t in _as_tuple(types))}"
                )
            out[name] = value
        return out

    def to_dict(self) -> Dict:
        """Every setting, the built-in sections as fields and plug-in methods' sections after them; a section a
        registered method reads and the configuration leaves out is there, empty."""
        out = dataclasses.asdict(self)
        out.update(getattr(self, "extra_sections", {}))
        for section in sorted(self.method_sections() - set(out)):
            out[section] = {}
        return out


def run_record(
    *,
    task,
    row: str,
    method: str,
    seed: int,
    k: int,
    dev_score: float,
    test_metrics: Dict,
    zero_shot: bool,
    model: str,
    prompt,
    sizes: Tuple[int, int, int],
    multitask: Optional[Dict] = None,
    arguments: Optional[Dict] = None,
    **fields,
) -> Dict:
    """The one builder of a run's ``results.json`` record, for every method: the fields every table reads (task,
    row, seed, metric, dev and test scores...), the model and its resolved path, the sizes of the train/dev/test
    sets, the method's own ``fields``, the run's ``arguments`` (dataclasses or ``TrainingArguments``, by group) and
    the environment. ``test_metrics`` holds ``score`` (the task's metric) and any others."""
    from .io import environment
    from .models import is_default_model, resolve_model_name

    record = {
        "task": task.name,
        "row": row,
        "method": method,
        "multitask": multitask,
        "seed": seed,
        "k": k,
        "metric": task.metric,
        "dev_score": float(dev_score),
        "test_score": float(test_metrics["score"]),
        "test_metrics": {name: float(v) for name, v in test_metrics.items() if name != "score"},
        "zero_shot": bool(zero_shot),
        "model": model,
        "model_path": resolve_model_name(model),
        "embedded_default_model": is_default_model(model),
        "prompt": prompt.to_dict(),
        "n_train": sizes[0],
        "n_dev": sizes[1],
        "n_test": sizes[2],
        **fields,
    }
    if arguments is not None:
        record["args"] = {group: _as_options(a) for group, a in arguments.items()}
    record["env"] = environment()
    return record


def _as_options(arguments) -> Dict:
    if hasattr(arguments, "to_dict"):  # TrainingArguments
        return {k: v for k, v in arguments.to_dict().items() if not k.startswith("_")}
    return dataclasses.asdict(arguments)


def write_run_record(path: str | os.PathLike, record: Dict) -> RunRecord:
    """Check ``record`` against :class:`RunRecord`, then write it atomically (the last file a run writes)."""
    from .io import atomic_write_json

    checked = RunRecord.from_dict(record)
    atomic_write_json(path, checked.to_dict())
    return checked


def write_stage_record(path: str | os.PathLike, meta: Dict) -> StageRecord:
    """Check ``meta`` against :class:`StageRecord`, then write it atomically (it marks a finished stage)."""
    from .io import atomic_write_json

    checked = StageRecord.from_dict(meta)
    atomic_write_json(path, checked.to_dict())
    return checked


def result_line(record: Dict) -> str:
    """The log line of a finished run: task, row, seed, dev and test scores, metric."""
    return (
        f"{record['task']} {record['row']} seed {record['seed']}: dev {record['dev_score']:.4f} "
        f"test {record['test_score']:.4f} ({record['metric']})"
    )
