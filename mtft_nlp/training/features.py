"""Features every method trains on: a dataset over features computed once per split (never per step or per
evaluation), and the padding of token sequences into a batch. A method's own features and collator live in its
folder (``methods/prompt/features.py``, ``methods/embedding/modeling.py``)."""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch.utils.data import Dataset


class FeatureDataset(Dataset):
    """A list of features; ``sort_by_length`` gives length-sorted evaluation (``order`` maps back)."""

    def __init__(self, features: List[Dict], sort_by_length: bool = False):
        self.order = list(range(len(features)))
        if sort_by_length:
            self.order.sort(key=lambda i: len(features[i]["input_ids"]))
        self.features = [features[i] for i in self.order]

    def __len__(self):
        return len(self.features)

    def __getitem__(self, i):
        return self.features[i]

    def unsort(self, values):
        """Put per-example outputs of this (sorted) dataset back in the original order."""
        out = [None] * len(values)
        for pos, orig in enumerate(self.order):
            out[orig] = values[pos]
        return out


def pad_tokens(features: List[Dict], pad_token_id: int, length: Optional[int] = None):
    """``(input_ids, attention_mask, token_type_ids or None)`` of a batch, right-padded to ``length`` (default:
    the longest sequence)."""
    n = len(features)
    length = length or max(len(f["input_ids"]) for f in features)
    input_ids = torch.full((n, length), pad_token_id, dtype=torch.long)
    attention = torch.zeros((n, length), dtype=torch.long)
    types = torch.zeros((n, length), dtype=torch.long) if "token_type_ids" in features[0] else None
    for i, f in enumerate(features):
        L = len(f["input_ids"])
        input_ids[i, :L] = torch.tensor(f["input_ids"])
        attention[i, :L] = 1
        if types is not None:
            types[i, :L] = torch.tensor(f["token_type_ids"])
    return input_ids, attention, types
