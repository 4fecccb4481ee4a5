"""The prompt method's parts of the multitask stage (:mod:`mtft_nlp.multitask` is the skeleton): every source
rendered with its own prompt and scored over its own label words, through the same features and model as single
runs, so that one batch mixes tasks with different numbers of classes."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from transformers import set_seed

from ...data.sources import SourceData
from ...models import resolve_model_name
from ...templates import PromptEncoder, load_prompt
from ...training.arguments import ModelArguments
from ...training.features import FeatureDataset
from ..base import StageParts
from .features import PromptCollator, build_features
from .modeling import PromptForMaskedLM
from .run import load_model

__all__ = ["prompt_stage"]


def prompt_stage(model_args: ModelArguments, sources: Sequence[SourceData], eval_tasks: int, seed: int) -> StageParts:
    """The prompt method's stage: each source rendered with its own prompt, scored over its own label words."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model_name(model_args.model_name_or_path), trust_remote_code=model_args.trust_remote_code
    )
    train_feats, dev_sets = [], {}
    for tid, src in enumerate(sources):
        enc = PromptEncoder(src.task, load_prompt(src.task), tokenizer)  # each task's own limits and words
        train_feats.append(build_features(enc, src.train, task_id=tid))
        if not eval_tasks or tid < eval_tasks:
            dev_sets[src.task.name] = FeatureDataset(build_features(enc, src.dev, task_id=tid), sort_by_length=True)
    set_seed(seed)
    mlm = load_model(model_args)

    def save(out: Path):
        to_save = mlm.merge_and_unload() if model_args.use_lora and model_args.lora_merge else mlm
        to_save.save_pretrained(out)  # LoRA: the adapters (adapter_config.json names the base model)
        tokenizer.save_pretrained(out)

    return StageParts(
        PromptForMaskedLM(mlm), tokenizer, PromptCollator(tokenizer.pad_token_id), train_feats, dev_sets, save
    )
