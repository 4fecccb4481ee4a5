"""Prompt-based finetuning (LM-BFF) through a masked LM's head: the method for MLM checkpoints (RoBERTa-large, BERT).

Files: ``modeling.py`` (label-word logits over any masked LM), ``features.py`` (prompt rendering to token ids),
``run.py`` (single runs, the LM-BFF grid), ``stage.py`` (its parts of the multitask stage), ``classifier.py`` (the
saved :class:`PromptClassifier`). Rows ``zero-shot`` and ``pbft`` (and their ``mt-*`` forms).
"""

from __future__ import annotations

from typing import List, Sequence

from ..base import Method, RowKind, row_name


class PromptMethod(Method):
    name = "prompt"
    title = "prompt"
    kinds = (
        RowKind(
            "zero-shot",
            "Prompt-based zero-shot",
            "zero-shot",
            section="zero_shot",
            flags=("--zero_shot",),
            zero_shot=True,
            multitask_title="Multitask FT zero-shot",
        ),
        RowKind(
            "pbft",
            "Prompt-based FT",
            "prompt-based FT",
            section="train",
            trains_encoder=True,
            multitask_title="Multitask prompt-based FT",
        ),
    )
    stage_section = "multitask"
    finetune_kind = "pbft"
    auto_fallback = True  # a model no other method recognises is taken for a masked LM
    keyed_by_name = False  # the committed grids' folder keys predate the other methods
    row_groups = {
        "all": ["zero-shot", "mt-zero-shot", "mt-sel-zero-shot", "pbft", "mt-pbft", "mt-sel-pbft"],
        "ablations": ["mt-sel-pbft", "mt-random-pbft", "mt-nocon-pbft", "mt-nodiv-pbft"],
    }

    def row_names(self, variants: Sequence[str]) -> List[str]:
        """The paper's Table 18 order (kind by kind: base, mt-, mt-sel-), then the selection ablations."""
        out = [row_name(k.name, v) for k in self.kinds for v in (None, "all", "sel")]
        return out + [row_name(k.name, v) for k in self.kinds for v in variants if v != "sel"]

    def run(self, model_args, data_args, training_args, method_args=None):
        from .run import run_prompt_experiment

        return run_prompt_experiment(model_args, data_args, training_args)

    def multitask_stage(self, model_args, sources, args, seed):
        from .stage import prompt_stage

        return prompt_stage(model_args, sources, args.eval_tasks, seed)

    def load_classifier(self, path, device=None, **kwargs):
        from .classifier import PromptClassifier

        return PromptClassifier.from_pretrained(path, device=device, **kwargs)
