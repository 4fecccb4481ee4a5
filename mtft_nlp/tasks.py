"""Task specifications: one declarative YAML file per task (``tasks/<name>.yaml``).

A :class:`TaskSpec` says where a task's data lives (LM-BFF ``original/`` layout and a
HuggingFace Hub dataset), which columns hold the text and the label, the label list, the
metric and the length limits. The schema is documented in ``docs/TASKS.md``.

Names are case-insensitive and may use aliases (``sst-2`` = ``SST-2`` = ``sst2``). A user
adds a task by writing one file and passing its path wherever a task name is accepted.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

METRICS = ("acc", "f1", "mcc", "pearson", "spearman")


class MtftError(ValueError):
    """Bad user input (task, file, prompt, data, options): the message names what is wrong.

    Command-line entry points print it as one ``error:`` line and exit with status 2.
    """


class TaskError(MtftError):
    """A task name or task file that cannot be used."""


def _resource_dir(kind: str) -> Path:
    """Folder of the packaged ``tasks/`` or ``prompts/`` files.

    Order: ``$MTFT_NLP_<KIND>_DIR``; the source checkout (editable install); the
    ``share/mtft-nlp/<kind>`` data files of a regular install.
    """
    env = os.environ.get(f"MTFT_NLP_{kind.upper()}_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / kind
    if here.is_dir():
        return here
    for prefix in (sys.prefix, sys.base_prefix, os.path.expanduser("~/.local")):
        cand = Path(prefix) / "share" / "mtft-nlp" / kind
        if cand.is_dir():
            return cand
    raise TaskError(f"cannot find the packaged '{kind}/' folder; set MTFT_NLP_{kind.upper()}_DIR")


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def pickled_only_weights(path: str | os.PathLike) -> List[str]:
    """The pickled weight files of a local model folder that has no safetensors weights (else [])."""
    if not os.path.isdir(path):
        return []
    names = os.listdir(path)
    if any(n.endswith(".safetensors") for n in names):
        return []
    return sorted(n for n in names if n.endswith(PICKLE_SUFFIXES) and n != "training_args.bin")


def check_weights_format(path: str | os.PathLike, allow_pickle: bool = False) -> None:
    """A local model folder must hold safetensors weights unless ``allow_pickle``.

    Pickled weights (``pytorch_model.bin`` and the like) are refused by default: loading them
    runs ``torch.load``, which transformers restricts to plain tensors but which is still the
    pickle format. ``--allow_pickle`` loads them anyway.
    """
    pickled = [] if allow_pickle else pickled_only_weights(path)
    if pickled:
        raise MtftError(
            f"{path} holds only pickled weights ({', '.join(pickled)}), which are not loaded by default; "
            "convert them to safetensors, or pass --allow_pickle if you trust the folder"
        )


def tasks_dir() -> Path:
    return _resource_dir("tasks")


def prompts_dir() -> Path:
    return _resource_dir("prompts")


@dataclasses.dataclass
class LmbffSource:
    """Where the task sits in an LM-BFF ``original/`` folder and how its files are read."""

    dir: str
    format: str  # "tsv" (tab separated, no quoting) or "csv" (no header, pandas-readable)
    header: bool
    train: str
    test: Dict[str, str]  # original file -> k-shot test file name written by the splitter
    text_a: int
    label: int  # column index; -1 = last column
    text_b: Optional[int] = None
    skip_malformed: bool = False
    dev_name: Optional[str] = None  # k-shot dev file name (default dev.<format>)
    test_name: Optional[str] = None  # k-shot test file this task evaluates on

    def __post_init__(self):
        if self.format not in ("tsv", "csv"):
            raise TaskError(f"lmbff.format must be 'tsv' or 'csv', got {self.format!r}")
        if self.dev_name is None:
            self.dev_name = f"dev.{self.format}"
        if self.test_name is None:
            self.test_name = next(iter(self.test.values())) if self.test else f"test.{self.format}"

    @property
    def cumulative_shuffle(self) -> bool:
        """LM-BFF shuffled a header-less GLUE file's line list in place across seeds.

        Its generator split the header off with ``lines[1:]`` (a copy) but returned the
        list itself when there was no header (CoLA), so each seed's shuffle started from the
        previous seed's order. Reproducing its splits means replaying that order.
        """
        return self.format == "tsv" and not self.header


@dataclasses.dataclass
class HubSource:
    """A HuggingFace Hub dataset (``datasets.load_dataset(path, name)``) for the same task."""

    path: str
    train_split: str = "train"
    test_split: str = "test"
    text_a: str = "text"
    label: str = "label"
    name: Optional[str] = None
    text_b: Optional[str] = None
    label_map: Optional[Dict[Any, str]] = None  # Hub label value -> label of this task


@dataclasses.dataclass
class TaskSpec:
    name: str
    labels: List[str]
    metric: str
    lmbff: Optional[LmbffSource] = None
    hub: Optional[HubSource] = None
    aliases: List[str] = dataclasses.field(default_factory=list)
    max_seq_length: int = 128
    first_sent_limit: Optional[int] = None
    other_sent_limit: Optional[int] = None
    regression: Optional[Dict[str, float]] = None  # {low, high, bucket_threshold}
    split_of: Optional[str] = None  # share another task's k-shot train/dev (MNLI-mm -> MNLI)
    prompt_file: Optional[str] = None  # prompts/<prompt_file>.yaml (default: the task name)
    sentences: Optional[int] = None  # 1 or 2; default: 2 when a source names a text_b column
    source_file: Optional[str] = None

    def __post_init__(self):
        if self.metric not in METRICS:
            raise TaskError(f"task {self.name}: metric must be one of {METRICS}, got {self.metric!r}")
        self.labels = [str(x) for x in self.labels]
        if len(self.labels) < 2:
            raise TaskError(f"task {self.name}: needs at least two labels")
        if len(set(self.labels)) != len(self.labels):
            raise TaskError(f"task {self.name}: duplicate labels {self.labels}")

    @property
    def is_regression(self) -> bool:
        return self.regression is not None

    @property
    def num_sentences(self) -> int:
        if self.sentences:
            return int(self.sentences)
        two = (self.lmbff is not None and self.lmbff.text_b is not None) or (
            self.hub is not None and bool(self.hub.text_b)
        )
        return 2 if two else 1

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def label_index(self, value: Any) -> int:
        """Class index of a raw label (regression: the 0/1 bucket used for sampling)."""
        if self.is_regression:
            return 0 if float(value) < self.regression["bucket_threshold"] else 1
        return self.labels.index(str(value))


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


# --------------------------------------------------------------------------- task-file schema
# Field types of the task file, checked before the dataclasses are built, so that a wrong type
# is an error naming the field (not a silently split string or a Python TypeError).
_LABEL = (str, int, float)
_SCHEMA_TOP = {
    "name": (str, True),
    "labels": ("labels", True),
    "metric": (str, True),
    "lmbff": ("lmbff", False),
    "hub": ("hub", False),
    "aliases": ("strlist", False),
    "max_seq_length": ("posint", False),
    "first_sent_limit": ("posint", False),
    "other_sent_limit": ("posint", False),
    "regression": ("regression", False),
    "split_of": (str, False),
    "prompt_file": (str, False),
    "sentences": ("sentences", False),
}
_SCHEMA_LMBFF = {
    "dir": (str, True),
    "format": (str, True),
    "header": (bool, False),
    "train": (str, True),
    "test": ("strmap", True),
    "text_a": ("index", True),
    "label": ("index", True),
    "text_b": ("index", False),
    "skip_malformed": (bool, False),
    "dev_name": (str, False),
    "test_name": (str, False),
}
_SCHEMA_HUB = {
    "path": (str, True),
    "train_split": (str, False),
    "test_split": (str, False),
    "text_a": (str, False),
    "label": (str, False),
    "name": (str, False),
    "text_b": (str, False),
    "label_map": ("labelmap", False),
}
_TYPE_NAMES = {
    str: "a string",
    bool: "true or false",
    "labels": "a list of at least two labels",
    "strlist": "a list of strings",
    "posint": "a positive integer",
    "index": "a column index (integer)",
    "strmap": "a mapping of file names to file names",
    "labelmap": "a mapping of values to labels",
    "regression": "a mapping {low, high, bucket_threshold} of numbers",
    "sentences": "1 or 2",
    "lmbff": "a mapping (the LM-BFF source)",
    "hub": "a mapping (the Hub source)",
}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _type_ok(kind, v) -> bool:
    if kind is str:
        return isinstance(v, str)
    if kind is bool:
        return isinstance(v, bool)
    if kind == "labels":
        return (
            isinstance(v, list) and len(v) >= 2 and all(isinstance(x, _LABEL) and not isinstance(x, bool) for x in v)
        )
    if kind == "strlist":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if kind == "posint":
        return _is_int(v) and v > 0
    if kind == "index":
        return _is_int(v) and v >= -1
    if kind == "strmap":
        return isinstance(v, dict) and bool(v) and all(isinstance(a, str) and isinstance(b, str) for a, b in v.items())
    if kind == "labelmap":
        return isinstance(v, dict) and all(isinstance(b, _LABEL) and not isinstance(b, bool) for b in v.values())
    if kind == "regression":
        return (
            isinstance(v, dict)
            and set(v) == {"low", "high", "bucket_threshold"}
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v.values())
        )
    if kind == "sentences":
        return v in (1, 2) and not isinstance(v, bool)
    if kind in ("lmbff", "hub"):
        return isinstance(v, dict)
    raise AssertionError(kind)


def _check_section(d: Dict[str, Any], schema: Dict, where: str, prefix: str = ""):
    unknown = [k for k in d if k not in schema]
    if unknown:
        raise TaskError(f"{where}: unknown field {prefix + str(unknown[0])!r}; known fields: {', '.join(schema)}")
    for key, (kind, required) in schema.items():
        if key not in d or d[key] is None:
            if required:
                raise TaskError(f"{where}: missing required field {prefix + key!r}")
            continue
        v = d[key]
        if not _type_ok(kind, v):
            hint = ""
            if kind == "labels" and isinstance(v, str):
                hint = " (write a YAML list: labels: [pos, neg])"
            elif kind == "labels" and isinstance(v, list) and any(isinstance(x, bool) for x in v):
                hint = " (YAML reads unquoted yes/no/true/false as booleans: quote them)"
            raise TaskError(f"{where}: field {prefix + key!r} must be {_TYPE_NAMES[kind]}, got {v!r}{hint}")


def validate_task_dict(d: Any, where: str) -> None:
    """Check a task file's fields (names, required fields, types); raises :class:`TaskError` naming the field."""
    if not isinstance(d, dict):
        raise TaskError(f"{where}: must be a mapping with at least 'name', 'labels', 'metric'")
    _check_section(d, _SCHEMA_TOP, where)
    if d.get("lmbff") is not None:
        _check_section(d["lmbff"], _SCHEMA_LMBFF, where, "lmbff.")
    if d.get("hub") is not None:
        _check_section(d["hub"], _SCHEMA_HUB, where, "hub.")


def _from_dict(d: Dict[str, Any], source_file: Optional[str]) -> TaskSpec:
    validate_task_dict(d, f"task file {source_file}")
    d = {k: v for k, v in d.items() if v is not None}
    try:
        if d.get("lmbff"):
            d["lmbff"] = LmbffSource(**{k: v for k, v in d["lmbff"].items() if v is not None})
        if d.get("hub"):
            d["hub"] = HubSource(**{k: v for k, v in d["hub"].items() if v is not None})
        return TaskSpec(**d, source_file=source_file)
    except TypeError as exc:  # unknown or missing key (the schema check above should have caught it)
        raise TaskError(f"task file {source_file}: {exc}") from None


def load_task_file(path: str | os.PathLike) -> TaskSpec:
    path = Path(path)
    if path.is_dir():
        raise TaskError(f"task file {path} is a folder, not a YAML file")
    try:
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f)
    except FileNotFoundError:
        raise TaskError(f"task file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise TaskError(f"task file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise TaskError(f"task file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise TaskError(f"task file {path}: cannot be read ({exc.strerror})") from None
    return _from_dict(d, str(path))


_CACHE: Dict[str, TaskSpec] = {}
# User task files loaded in this process (or named in $MTFT_NLP_TASK_FILES by a parent process),
# by normalised name and alias: once a task file has been loaded, its name works everywhere,
# including in the cell and multitask processes that ``mtft-nlp run`` starts.
USER_TASKS_ENV = "MTFT_NLP_TASK_FILES"
_USER: Dict[str, TaskSpec] = {}


def register_task_file(path: str | os.PathLike) -> TaskSpec:
    """Load a user task file and make its name (and aliases) resolvable here and in child processes."""
    path = Path(path).resolve()
    task = load_task_file(path)
    task.source_file = str(path)
    for alias in [task.name, *task.aliases]:
        _USER[_normalise(alias)] = task
    known = [p for p in os.environ.get(USER_TASKS_ENV, "").split(os.pathsep) if p]
    if str(path) not in known:
        os.environ[USER_TASKS_ENV] = os.pathsep.join(known + [str(path)])
    return task


def _user_task(key: str) -> Optional[TaskSpec]:
    if key in _USER:
        return _USER[key]
    for p in os.environ.get(USER_TASKS_ENV, "").split(os.pathsep):
        if p and os.path.isfile(p) and str(Path(p).resolve()) not in {t.source_file for t in _USER.values()}:
            try:
                t = load_task_file(p)
            except TaskError:
                continue
            t.source_file = str(Path(p).resolve())
            for alias in [t.name, *t.aliases]:
                _USER.setdefault(_normalise(alias), t)
    return _USER.get(key)


def available_tasks() -> List[str]:
    return sorted(load_task_file(p).name for p in tasks_dir().glob("*.yaml"))


def get_task(name_or_path: str | os.PathLike | TaskSpec) -> TaskSpec:
    """A task by name or alias (case-insensitive), or from a YAML file path (then registered by its name)."""
    if isinstance(name_or_path, TaskSpec):
        return name_or_path
    s = str(name_or_path)
    if s.endswith((".yaml", ".yml")) or os.sep in s:
        return register_task_file(s)
    key = _normalise(s)
    user = _user_task(key)
    if user is not None:
        return user
    if not _CACHE:
        for p in sorted(tasks_dir().glob("*.yaml")):
            t = load_task_file(p)
            for alias in [t.name, *t.aliases]:
                _CACHE[_normalise(alias)] = t
    if key not in _CACHE:
        names = ", ".join(sorted({t.name for t in _CACHE.values()}))
        raise TaskError(f"unknown task {s!r}; known tasks: {names} (or pass a task file path)")
    return _CACHE[key]


def task_family(task: TaskSpec | str) -> str:
    """Tasks sharing k-shot data (MNLI and MNLI-mm) belong to one family."""
    task = get_task(task)
    return (task.split_of or task.name).lower()


def classification_tasks() -> List[str]:
    """The multitask collection: every classification task, one per k-shot data (no STS-B, no MNLI-mm)."""
    return [t.name for t in map(get_task, available_tasks()) if not t.is_regression and not t.split_of]


def leave_one_out(target: TaskSpec | str) -> List[str]:
    """PROTOCOL section 5's sources for ``target``: the classification tasks minus the target's family."""
    family = task_family(target)
    return [name for name in classification_tasks() if task_family(name) != family]
