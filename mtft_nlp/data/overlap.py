"""Text overlap between two sets of examples: the leakage check of the source pool (:mod:`mtft_nlp.data.sources`)."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

__all__ = ["normalize_text", "text_overlap"]


def normalize_text(text: Optional[str]) -> str:
    """Lower case, whitespace runs collapsed to one space, stripped (for overlap checks)."""
    return " ".join(str(text or "").split()).lower()


def _fields(example: Dict) -> List[str]:
    """The example's non-empty text_a / text_b."""
    return [str(example[f]) for f in ("text_a", "text_b") if example.get(f) is not None and str(example[f]).strip()]


def text_overlap(target_examples: Sequence[Dict], source_examples: Sequence[Dict], max_examples: int = 5) -> Dict:
    """Source examples whose text_a or text_b also occurs (as text_a or text_b) among the target examples.

    Returns ``{"n_examples", "exact", "normalized", "indices", "examples"}``: the number of
    source examples, how many share a text exactly, how many after :func:`normalize_text`
    (a superset of the exact ones), the indices of the latter, and the first
    ``max_examples`` of them as ``{"row", "text"}``. Used by the source pool's leakage
    guard (multitask stage and task selection).
    """
    exact = {t for ex in target_examples for t in _fields(ex)}
    norm = {normalize_text(t) for t in exact}
    n_exact, indices, shown = 0, [], []
    for i, ex in enumerate(source_examples):
        fields = _fields(ex)
        n_exact += any(t in exact for t in fields)
        hit = next((t for t in fields if normalize_text(t) in norm), None)
        if hit is not None:
            indices.append(i)
            if len(shown) < max_examples:
                shown.append({"row": ex.get("row"), "text": hit})
    return {
        "n_examples": len(source_examples),
        "exact": int(n_exact),
        "normalized": len(indices),
        "indices": indices,
        "examples": shown,
    }
