"""The Hugging Face Hub, for every method's saved classifier: fetch a folder (local, or a repo id downloaded),
upload one, and the task a classifier's metadata describes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

from .tasks import MtftError, TaskSpec

__all__ = ["CARD_NAME", "fetch_folder", "push_folder", "task_from_metadata", "model_card"]

CARD_NAME = "README.md"  # the model card of a saved classifier


def task_from_metadata(meta: Dict) -> TaskSpec:
    return TaskSpec(
        name=meta["task"],
        labels=meta["labels"],
        metric=meta["metric"],
        max_seq_length=meta.get("max_seq_length") or 128,
        first_sent_limit=meta.get("first_sent_limit"),
        other_sent_limit=meta.get("other_sent_limit"),
        regression=meta.get("regression"),
        sentences=meta.get("num_sentences") or 1,
    )


def fetch_folder(
    path_or_repo, revision: Optional[str] = None, token: Optional[str] = None, allow_patterns=None
) -> Path:
    """A local folder as is, or a Hub repo id (``owner/name``) downloaded; one clear :class:`MtftError` else."""
    path, name = Path(path_or_repo), str(path_or_repo)
    if path.exists() and not path.is_dir():
        raise MtftError(f"{name} is a file, not a saved classifier folder")
    if path.is_dir():
        return path
    if name.startswith((".", "/", "~")) or name.count("/") != 1 or os.sep != "/" and os.sep in name:
        raise MtftError(f"model folder not found: {name}")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, revision=revision, token=token, allow_patterns=allow_patterns))
    except Exception as exc:  # invalid id, no network, no such repo: one clear line
        first = " ".join(str(exc).split())[:200]
        raise MtftError(
            f"{name}: not a local folder, and it could not be fetched from the Hub ({type(exc).__name__}: {first})"
        ) from None


def push_folder(
    folder: Union[str, os.PathLike],
    repo_id: str,
    private: bool = False,
    token: Optional[str] = None,
    commit_message: str = "Upload mtft-nlp classifier",
    api=None,
) -> str:
    """Upload a saved classifier folder (weights, tokenizer, config with the prompt, model card)."""
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)


def model_card(front_matter: Dict[str, object], title: str, body: Sequence[Optional[str]]) -> str:
    """The one model-card builder of every method's saved classifier: the Hub's YAML front matter (keys whose value
    is None left out), the title, then the method's own part of the card (lines; None lines left out)."""
    lines = ["---", *(f"{k}: {v}" for k, v in front_matter.items() if v is not None), "---", "", f"# {title}", ""]
    lines += [line for line in body if line is not None]
    return "\n".join(lines).rstrip("\n") + "\n"
