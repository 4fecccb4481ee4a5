"""Files every part of the package writes: atomic writes (a reader never sees half a file), the names of the
files a run and a stage leave behind, and the environment recorded in each of them. A leaf module."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterable

from .tasks import MtftError

RESULTS_FILE = "results.json"  # a run's record, written last: its presence marks a finished run
STAGE_FILE = "multitask_config.json"  # a multitask stage's record, next to its checkpoint, written last
PREDICTIONS_FILE = "test_predictions.jsonl"  # one JSON line per test example: {"prediction": ...}
EMBEDDING_CLASSIFIER_FILE = "embedding_classifier.json"  # marks a saved embedding classifier (its metadata)


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mkstemp_like_open(path: Path):
    """A temporary file next to ``path`` with the mode ``open()`` would give it (0666 minus the umask),
    not mkstemp's 0600, so the renamed file is readable like any other."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:
        pass
    return fd, tmp


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp_like_open(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp_like_open(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def environment() -> Dict[str, object]:
    """Versions, device and git revision, recorded in every result."""
    import torch
    import transformers

    from .version import __version__

    env = {
        "mtft_nlp": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    for mod in ("accelerate", "datasets", "peft"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # optional at runtime
            pass
    env["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if rev.returncode == 0:
            env["git_revision"] = rev.stdout.strip()
    except Exception:
        pass
    return env


def is_complete(folder: str | os.PathLike, marker: str) -> bool:
    """Whether ``folder`` holds ``marker`` (:data:`RESULTS_FILE`, :data:`STAGE_FILE`) as readable JSON: a finished
    run or stage (the file is written last, atomically)."""
    p = Path(folder) / marker
    if not p.is_file():
        return False
    try:
        json.loads(p.read_text(encoding="utf-8"))
        return True
    except (OSError, json.JSONDecodeError):
        return False


def check_output_dir(path: str | os.PathLike | None, option: str = "--output_dir") -> None:
    """Refuse a missing output folder option or one naming an existing file (before anything is written)."""
    if not path:
        raise MtftError(f"{option} is required")
    if Path(path).exists() and not Path(path).is_dir():
        raise MtftError(f"{option} {path} is an existing file, not a folder")


def write_predictions(folder: str | os.PathLike, predictions: Iterable) -> Path:
    """``<folder>/test_predictions.jsonl``: one ``{"prediction": p}`` line per test example, in the test file's order
    (a label name, or a number for a regression task); written atomically."""
    path = Path(folder) / PREDICTIONS_FILE
    atomic_write_text(path, "".join(json.dumps({"prediction": p}) + "\n" for p in predictions))
    return path
