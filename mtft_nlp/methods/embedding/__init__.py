"""Embedding-based adaptation of a sentence encoder phi (the paper's own setting; the method for
sentence-transformers models such as the packaged all-MiniLM-L6-v2).

Files: ``arguments.py`` (its options and the recipe chosen on dev), ``modeling.py`` (phi with one linear head per
task, class descriptions), ``contrastive.py`` (supervised contrastive loss, class-balanced batches), ``run.py``
(zero-shot, adaptation of a head on the frozen phi, finetuning; its parts of the multitask stage),
``classifier.py`` (the saved :class:`EmbeddingClassifier`). Rows ``embed-zero-shot``, ``embed-adapt``, ``embed-ft``.
"""

from __future__ import annotations

import os

from ...io import EMBEDDING_CLASSIFIER_FILE
from ..base import Method, RowKind


class EmbeddingMethod(Method):
    name = "embedding"
    title = "embedding"
    kinds = (
        RowKind(
            "embed-zero-shot",
            "Embedding zero-shot (class descriptions)",
            "embedding zero-shot",
            section="embedding",
            flags=("--zero_shot",),
            zero_shot=True,
        ),
        RowKind(
            "embed-adapt",
            "Embedding adaptation (head on frozen encoder)",
            "embedding adaptation",
            section="embedding",
            flags=("--frozen_encoder",),
        ),
        RowKind("embed-ft", "Embedding FT (encoder + head)", "embedding FT", section="embedding", trains_encoder=True),
    )
    stage_section = "embedding_multitask"
    stage_objectives = ("cross_entropy", "supcon", "supcon+ce")
    stage_options = (
        "contrastive_temperature",
        "ce_weight",
        "encode_chunks",
        "tasks_per_step",
        "negatives_across_tasks",
    )
    finetune_kind = "embed-ft"
    classifier_marker = EMBEDDING_CLASSIFIER_FILE
    row_groups = {
        "embedding": [
            f"{p}{k}" for p in ("", "mt-", "mt-sel-") for k in ("embed-zero-shot", "embed-adapt", "embed-ft")
        ],
        "embedding-ablations": ["mt-sel-embed-ft", "mt-random-embed-ft", "mt-nocon-embed-ft", "mt-nodiv-embed-ft"],
    }

    def recognizes(self, path: str) -> bool:
        """A sentence-transformers model: a folder with ``modules.json``, or a ``sentence-transformers/`` Hub id."""
        if os.path.isdir(path):
            return os.path.isfile(os.path.join(path, "modules.json"))
        return str(path).startswith("sentence-transformers/")

    def argument_class(self):
        from .arguments import EmbeddingArguments

        return EmbeddingArguments

    def training_defaults(self):
        from .arguments import EMBEDDING_DEFAULTS

        return dict(EMBEDDING_DEFAULTS)

    def stage_defaults(self):
        from .arguments import STAGE_DEFAULTS

        return dict(STAGE_DEFAULTS)

    def run(self, model_args, data_args, training_args, method_args=None):
        from .run import run_embedding_experiment

        return run_embedding_experiment(model_args, data_args, training_args, method_args)

    def multitask_stage(self, model_args, sources, args, seed):
        from .run import embedding_stage

        return embedding_stage(model_args, sources, args, seed)

    def load_classifier(self, path, device=None, **kwargs):
        from .classifier import EmbeddingClassifier

        return EmbeddingClassifier.from_pretrained(path, device=device, **kwargs)
