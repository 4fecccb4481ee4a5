"""The prompt method's features: examples rendered with the prompt into token ids, the mask position and the label
words' ids, and the collator that pads them.

Each feature carries its task's label-word ids, so a batch may mix tasks; the collator pads the token sequences to
the batch's longest and the label-word lists to the batch's most classes (with -1).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from ...tasks import TaskSpec
from ...templates import PromptEncoder
from ...training.features import pad_tokens

__all__ = ["build_features", "PromptCollator"]


def build_features(encoder: PromptEncoder, examples: Sequence[Dict], task_id: int = 0) -> List[Dict]:
    """One feature per example: model inputs, ``label_word_ids``, ``labels`` and task metadata."""
    task: TaskSpec = encoder.task
    feats = encoder.encode_batch(
        [ex["text_a"] for ex in examples],
        [ex["text_b"] for ex in examples],
        row_names=[ex.get("row", f"example {i}") for i, ex in enumerate(examples)],
    )
    reg = task.is_regression
    rng = [task.regression["low"], task.regression["high"]] if reg else [0.0, 1.0]
    for f, ex in zip(feats, examples):
        f["label_word_ids"] = list(encoder.label_word_ids)
        f["labels"] = float(ex["label_id"]) if reg else int(ex["label_id"])
        f["is_regression"] = reg
        f["regression_range"] = rng
        f["task_id"] = task_id
    return feats


class PromptCollator:
    """Pads a list of features into tensors."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: Optional[int] = None):
        self.pad_token_id = pad_token_id if pad_token_id is not None else 0
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: List[Dict]) -> Dict[str, torch.Tensor]:
        n = len(features)
        length = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            length = (length + m - 1) // m * m
        n_cls = max(len(f["label_word_ids"]) for f in features)
        input_ids, attention, types = pad_tokens(features, self.pad_token_id, length)
        words = torch.full((n, n_cls), -1, dtype=torch.long)
        for i, f in enumerate(features):
            words[i, : len(f["label_word_ids"])] = torch.tensor(f["label_word_ids"])
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "mask_pos": torch.tensor([f["mask_pos"] for f in features]),
            "label_word_ids": words,
        }
        if types is not None:
            batch["token_type_ids"] = types
        if "labels" in features[0]:
            reg = any(f["is_regression"] for f in features)
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float if reg else torch.long)
            if reg:
                batch["is_regression"] = torch.tensor([f["is_regression"] for f in features])
                batch["regression_range"] = torch.tensor([f["regression_range"] for f in features], dtype=torch.float)
        return batch
