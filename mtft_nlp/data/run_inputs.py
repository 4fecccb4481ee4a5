"""What one run of either method needs resolved before a model loads: its prompt (from the prompt file or the
command line), its k-shot data (LM-BFF layout, user files or the Hub), and what it records of a multitask start."""

from __future__ import annotations

from typing import Dict, List, Optional

from ..models import multitask_metadata
from ..tasks import MtftError, TaskSpec
from ..templates import Prompt, load_prompt
from ..training.arguments import TaskArguments
from .kshot import load_files, load_hub, load_kshot

__all__ = ["parse_label_words", "resolve_prompt", "load_task_data", "multitask_summary"]


def parse_label_words(spec: str) -> Dict[str, str]:
    out = {}
    for item in spec.split(","):
        if ":" not in item:
            raise MtftError(f"--label_words: expected 'label:word' items, got {item!r}")
        lab, word = item.split(":", 1)
        out[lab.strip()] = word.strip()
    return out


def resolve_prompt(task: TaskSpec, args: TaskArguments) -> Prompt:
    if args.template or args.label_words:
        base = load_prompt(task, args.prompt, args.prompt_file) if not (args.template and args.label_words) else None
        prompt = Prompt(
            template=args.template or base.template,
            label_words=parse_label_words(args.label_words) if args.label_words else base.label_words,
            name="command-line",
        )
        prompt.words_in_order(task)
        return prompt
    return load_prompt(task, args.prompt, args.prompt_file)


def load_task_data(task: TaskSpec, args: TaskArguments, seed: int) -> Dict[str, List[Dict]]:
    if args.train_file or args.test_file:
        return load_files(
            task,
            seed,
            args.k,
            args.train_file,
            args.validation_file,
            args.test_file,
            args.text_a_column,
            args.text_b_column,
            args.label_column,
            args.max_test_examples,
        )
    if args.dataset_name:
        return load_hub(
            task,
            seed,
            args.k,
            None if args.dataset_name == "hub" else args.dataset_name,
            args.dataset_config_name,
            args.max_test_examples,
        )
    return load_kshot(task, args.data_dir, seed, args.k, max_test_examples=args.max_test_examples)


def multitask_summary(model_name: Optional[str]) -> Optional[Dict]:
    """What results.json and the model card record of a multitask starting point."""
    meta = multitask_metadata(model_name)
    if meta is None:
        return None
    out = {k: meta.get(k) for k in ("target", "sources_origin", "sampler", "max_steps", "learning_rate", "split_seed")}
    out["sources"] = [s["task"] for s in meta.get("sources", [])]
    return out
