"""Adaptation methods: which one a model gets, and the one entry point per step that dispatches to it.

* ``prompt``: LM-BFF prompt-based finetuning through a masked LM's head (:mod:`mtft_nlp.methods.prompt.run`); the method
  for MLM checkpoints (RoBERTa-large, BERT).
* ``embedding``: a linear head on a sentence encoder's embedding (:mod:`mtft_nlp.methods.embedding.run`); the
  method for sentence-transformers models (the packaged all-MiniLM-L6-v2) and the paper's own setting.
* ``setfit``: the SetFit peer (:mod:`mtft_nlp.methods.setfit.run`), run for comparison when the ``setfit`` package is
  installed.

``--method auto`` (the default) picks ``embedding`` for a sentence-transformers model (a folder with
``modules.json``, or a ``sentence-transformers/`` Hub id) and ``prompt`` otherwise. A method adds itself here:
one ``run_*_experiment(model_args, prompt_args, training_args[, embedding_args])`` for single runs and, if it has
one, a multitask stage.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

from ..tasks import MtftError

__all__ = ["METHODS", "resolve_method", "method_defaults", "run_experiment", "load_classifier"]

METHODS = ("auto", "prompt", "embedding", "setfit")


def resolve_method(method: Optional[str], model_name: Optional[str]) -> str:
    """``prompt``, ``embedding`` or ``setfit`` for ``--method`` and ``--model_name_or_path``."""
    method = (method or "auto").lower()
    if method not in METHODS:
        raise MtftError(f"--method {method!r}: choose from {', '.join(METHODS)}")
    if method != "auto":
        return method
    from .prompt.modeling import resolve_model_name

    path = resolve_model_name(model_name)
    if os.path.isdir(path):
        return "embedding" if os.path.isfile(os.path.join(path, "modules.json")) else "prompt"
    return "embedding" if str(path).startswith("sentence-transformers/") else "prompt"


def method_defaults(method: str) -> Dict:
    """``TrainingArguments`` defaults that differ by method (the prompt method's are the dataclass defaults)."""
    if method in ("embedding", "setfit"):
        from ..training.arguments import EMBEDDING_DEFAULTS

        return dict(EMBEDDING_DEFAULTS)
    return {}


def run_experiment(model_args, prompt_args, embedding_args, training_args) -> Dict:
    """One run of ``run_glue_fewshot.py`` / ``mtft-nlp train`` with the method the arguments resolve to (the
    argument dataclasses in the command line parser's order)."""
    method = resolve_method(model_args.method, model_args.model_name_or_path)
    if method == "embedding":
        from .embedding.run import run_embedding_experiment

        return run_embedding_experiment(model_args, prompt_args, training_args, embedding_args)
    if method == "setfit":
        from .setfit.run import run_setfit_experiment

        return run_setfit_experiment(model_args, prompt_args, training_args)
    from .prompt.run import run_prompt_experiment

    return run_prompt_experiment(model_args, prompt_args, training_args)


def load_classifier(name_or_path: str, device: Optional[str] = None, **kwargs):
    """A saved classifier of either method: :class:`~mtft_nlp.methods.embedding.classifier.EmbeddingClassifier` for a folder
    (or Hub repo) with ``embedding_classifier.json``, :class:`~mtft_nlp.methods.prompt.classifier.PromptClassifier` otherwise."""
    from .embedding.classifier import METADATA_FILE, EmbeddingClassifier, is_embedding_classifier

    path = str(name_or_path)
    embedding = is_embedding_classifier(path)
    if not embedding and not os.path.exists(path) and path.count("/") == 1:  # a Hub repo id
        try:
            from huggingface_hub import file_exists

            embedding = file_exists(path, METADATA_FILE, token=kwargs.get("token"))
        except Exception:  # offline or unknown repo: the prompt classifier's loader reports it
            embedding = False
    if embedding:
        return EmbeddingClassifier.from_pretrained(path, device=device, **kwargs)
    from .prompt.classifier import PromptClassifier

    return PromptClassifier.from_pretrained(path, device=device, **kwargs)
