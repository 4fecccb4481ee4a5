"""Adaptation methods: the registry, which method a model gets, and the entry points that ask a method to act.

Built in: ``prompt`` (:mod:`mtft_nlp.methods.prompt`, LM-BFF through a masked LM's head), ``embedding``
(:mod:`mtft_nlp.methods.embedding`, a linear head on a sentence encoder's embedding; the paper's own setting) and
the ``setfit`` peer (:mod:`mtft_nlp.methods.setfit`). ``--method auto`` (the default) gives a model to the first
method that recognises it (a sentence-transformers model: ``embedding``) and to ``prompt`` otherwise.

A new method is one folder with a :class:`~mtft_nlp.methods.base.Method` subclass, added with
:func:`register_method` (or declared by an installed package under the entry-point group ``mtft_nlp.methods``);
docs/ARCHITECTURE.md, "Add a method", is the checklist.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

from ..models import resolve_model_name
from ..tasks import MtftError
from .base import Method, RowKind, StageParts
from .embedding import EmbeddingMethod
from .prompt import PromptMethod
from .registry import all_methods, get_method, register_method, unregister_method
from .setfit import SetFitMethod

__all__ = [
    "Method",
    "RowKind",
    "StageParts",
    "register_method",
    "unregister_method",
    "get_method",
    "all_methods",
    "resolve_method",
    "method_defaults",
    "run_experiment",
    "load_classifier",
]

for _builtin in (PromptMethod, EmbeddingMethod, SetFitMethod):
    register_method(_builtin)


def resolve_method(method: Optional[str], model_name: Optional[str]) -> str:
    """The name of the method for ``--method`` (``auto`` or a registered name) and ``--model_name_or_path``."""
    method = (method or "auto").lower()
    names = [m.name for m in all_methods()]
    if method != "auto":
        if method not in names:
            raise MtftError(f"--method {method!r}: choose from auto, {', '.join(names)}")
        return method
    path = resolve_model_name(model_name)
    for m in all_methods():
        if m.recognizes(path):
            return m.name
    return next(m.name for m in all_methods() if m.auto_fallback)


def method_defaults(method: str) -> Dict:
    """``TrainingArguments`` defaults that differ by method (the prompt method's are the dataclass defaults)."""
    return get_method(method).training_defaults()


def run_experiment(model_args, data_args, *rest) -> Dict:
    """One run of ``run_glue_fewshot.py`` / ``mtft-nlp train``: the arguments in the command line parser's order
    (the shared model and data arguments, the registered methods' own option dataclasses, the training arguments);
    the method the arguments resolve to runs with its own options."""
    *method_options, training_args = rest
    method = get_method(resolve_method(model_args.method, model_args.model_name_or_path))
    cls = method.argument_class()
    options = next((o for o in method_options if cls is not None and isinstance(o, cls)), None)
    if cls is not None and options is None:
        options = cls()
    return method.run(model_args, data_args, training_args, options)


def _hub_file_exists(repo: str, filename: str, token=None) -> bool:
    try:
        from huggingface_hub import file_exists

        return file_exists(repo, filename, token=token)
    except Exception:  # offline or unknown repo: the fallback method's loader reports it
        return False


def load_classifier(name_or_path: str, device: Optional[str] = None, **kwargs):
    """A saved classifier of any method: the method whose marker file the folder (or Hub repo) holds, else the
    fallback method's (the prompt method's :class:`~mtft_nlp.methods.prompt.classifier.PromptClassifier`)."""
    path = str(name_or_path)
    hub_id = not os.path.exists(path) and path.count("/") == 1
    for m in all_methods():
        marker = m.classifier_marker
        if marker and (
            os.path.isfile(os.path.join(path, marker))
            or (hub_id and _hub_file_exists(path, marker, kwargs.get("token")))
        ):
            return m.load_classifier(path, device=device, **kwargs)
    return next(m for m in all_methods() if m.auto_fallback).load_classifier(path, device=device, **kwargs)
