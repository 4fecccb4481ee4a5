"""Table rows: one name per (adaptation method, starting model, kind of run), and what each name means.

A row name is ``[mt-[<variant>-]]<kind>``:

* ``<kind>`` says how the target is adapted: ``zero-shot`` and ``pbft`` (prompt-based, through the
  masked LM's head), ``embed-zero-shot``, ``embed-adapt`` and ``embed-ft`` (embedding-based: a linear
  head on the sentence embedding phi, from class descriptions, fitted on the frozen phi, or trained with
  phi), and ``setfit`` (the SetFit peer, its own recipe on the same backbone);
* ``mt-`` says the run starts from a multitask checkpoint, and ``<variant>`` which sources it was
  finetuned on: none (leave-one-out, all other classification tasks), ``sel`` (task selection,
  Algorithm 1), ``random``, ``nocon``, ``nodiv`` (the selection ablations of the paper's Table 1).

Every other module asks this one (:func:`parse_row`, :func:`row_name`) instead of splitting names itself.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

__all__ = [
    "Row",
    "KINDS",
    "METHOD_KINDS",
    "VARIANTS",
    "ROWS",
    "ROW_GROUPS",
    "PAPER_ROWS",
    "EMBEDDING_ROWS",
    "ROW_ORDER",
    "ROW_TITLES",
    "parse_row",
    "row_name",
    "row_for_start",
    "variant_of_method",
    "expand_rows",
]

# kind -> adaptation method
KINDS: Dict[str, str] = {
    "zero-shot": "prompt",
    "pbft": "prompt",
    "embed-zero-shot": "embedding",
    "embed-adapt": "embedding",
    "embed-ft": "embedding",
    "setfit": "setfit",
}
METHOD_KINDS: Dict[str, Tuple[str, ...]] = {
    m: tuple(k for k, v in KINDS.items() if v == m) for m in dict.fromkeys(KINDS.values())
}
# row infix -> task-selection method that chose the multitask sources
VARIANTS: Dict[str, str] = {"sel": "selected", "random": "random", "nocon": "no-consistency", "nodiv": "no-diversity"}
# the kinds that can start from a multitask checkpoint (SetFit is the peer: its own recipe from the base model)
_MT_KINDS = ("zero-shot", "pbft", "embed-zero-shot", "embed-adapt", "embed-ft")


@dataclasses.dataclass(frozen=True)
class Row:
    """What a row name means."""

    name: str
    kind: str  # a key of KINDS
    variant: Optional[str]  # None: base model; "all": leave-one-out multitask; else a key of VARIANTS

    @property
    def method(self) -> str:
        return KINDS[self.kind]

    @property
    def multitask(self) -> bool:
        return self.variant is not None

    @property
    def zero_shot(self) -> bool:
        return self.kind in ("zero-shot", "embed-zero-shot")

    @property
    def trains_encoder(self) -> bool:
        return self.kind in ("pbft", "embed-ft", "setfit")

    @property
    def selection_method(self) -> Optional[str]:
        return VARIANTS.get(self.variant) if self.variant else None


def row_name(kind: str, variant: Optional[str] = None) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    if variant is None:
        return kind
    return f"mt-{kind}" if variant == "all" else f"mt-{variant}-{kind}"


def parse_row(name: str) -> Row:
    """The meaning of a row name; ``ValueError`` for a name that is not a row."""
    rest, variant = name, None
    if name.startswith("mt-"):
        rest, variant = name[3:], "all"
        head = rest.split("-", 1)[0]
        if head in VARIANTS and rest[len(head) + 1 :] in _MT_KINDS:
            variant, rest = head, rest[len(head) + 1 :]
        if rest not in _MT_KINDS:
            raise ValueError(f"unknown row {name!r}")
    if rest not in KINDS:
        raise ValueError(f"unknown row {name!r}")
    return Row(name, rest, variant)


def row_for_start(kind: str, stage_metadata: Optional[Dict]) -> str:
    """The row of a run of ``kind`` from a model whose multitask-stage metadata is ``stage_metadata`` (None: a base
    model): ``kind``, ``mt-<kind>``, or ``mt-<variant>-<kind>`` when task selection chose the sources."""
    if stage_metadata is None:
        return kind
    return row_name(kind, variant_of_method((stage_metadata.get("selection") or {}).get("method")))


def variant_of_method(selection_method: Optional[str]) -> str:
    """Row variant of a multitask stage whose sources were chosen by ``selection_method`` (None: all/list)."""
    if not selection_method:
        return "all"
    inverse = {v: k for k, v in VARIANTS.items()}
    return inverse.get(selection_method, "sel")


PAPER_ROWS: Tuple[str, ...] = ("zero-shot", "mt-zero-shot", "mt-sel-zero-shot", "pbft", "mt-pbft", "mt-sel-pbft")
EMBEDDING_ROWS: Tuple[str, ...] = tuple(
    row_name(k, v) for v in (None, "all", "sel") for k in ("embed-zero-shot", "embed-adapt", "embed-ft")
)
ROWS: Tuple[str, ...] = (
    PAPER_ROWS
    + tuple(row_name(k, v) for k in ("zero-shot", "pbft") for v in VARIANTS if v != "sel")
    + EMBEDDING_ROWS
    + tuple(row_name(k, v) for k in METHOD_KINDS["embedding"] for v in VARIANTS if v != "sel")
    + ("setfit",)
)
ROW_GROUPS: Dict[str, List[str]] = {
    "all": list(PAPER_ROWS),
    "ablations": ["mt-sel-pbft", "mt-random-pbft", "mt-nocon-pbft", "mt-nodiv-pbft"],
    "embedding": list(EMBEDDING_ROWS),
    "embedding-ablations": ["mt-sel-embed-ft", "mt-random-embed-ft", "mt-nocon-embed-ft", "mt-nodiv-embed-ft"],
}


def expand_rows(rows) -> List[str]:
    """Row names with the groups of :data:`ROW_GROUPS` expanded, duplicates dropped, order kept."""
    rows = [rows] if isinstance(rows, str) else list(rows)
    return list(dict.fromkeys(x for r in rows for x in ROW_GROUPS.get(r, [r])))


_KIND_TITLES = {
    "embed-zero-shot": "embedding zero-shot",
    "embed-adapt": "embedding adaptation",
    "embed-ft": "embedding FT",
}
# table order and long names (the prompt rows' names are those of the committed RESULTS tables)
ROW_ORDER: Tuple[str, ...] = (
    (
        "zero-shot",
        "mt-zero-shot",
        "mt-sel-zero-shot",
        "pbft",
        "mt-pbft",
        "mt-sel-pbft",
        "mt-random-zero-shot",
        "mt-nocon-zero-shot",
        "mt-nodiv-zero-shot",
        "mt-random-pbft",
        "mt-nocon-pbft",
        "mt-nodiv-pbft",
    )
    + EMBEDDING_ROWS
    + tuple(row_name(k, v) for k in METHOD_KINDS["embedding"] for v in VARIANTS if v != "sel")
    + ("setfit",)
)
ROW_TITLES: Dict[str, str] = {
    "zero-shot": "Prompt-based zero-shot",
    "mt-zero-shot": "Multitask FT zero-shot",
    "mt-sel-zero-shot": "+ task selection (zero-shot)",
    "pbft": "Prompt-based FT",
    "mt-pbft": "Multitask prompt-based FT",
    "mt-sel-pbft": "+ task selection (prompt-based FT)",
    # the selection ablations of the paper's Table 1 (multitask FT on the sources each method chose)
    "mt-random-zero-shot": "Random tasks (zero-shot)",
    "mt-nocon-zero-shot": "No consistency (zero-shot)",
    "mt-nodiv-zero-shot": "No diversity (zero-shot)",
    "mt-random-pbft": "Random tasks (prompt-based FT)",
    "mt-nocon-pbft": "No consistency (prompt-based FT)",
    "mt-nodiv-pbft": "No diversity (prompt-based FT)",
    # the embedding-based method (the paper's Table 2 rows: Adaptation, Standard FT, Ours)
    "embed-zero-shot": "Embedding zero-shot (class descriptions)",
    "embed-adapt": "Embedding adaptation (head on frozen encoder)",
    "embed-ft": "Embedding FT (encoder + head)",
    **{row_name(k, "all"): f"Multitask FT + {t}" for k, t in _KIND_TITLES.items()},
    **{row_name(k, "sel"): f"+ task selection ({t})" for k, t in _KIND_TITLES.items()},
    **{
        row_name(k, v): f"{n} ({t})"
        for k, t in _KIND_TITLES.items()
        for v, n in (("random", "Random tasks"), ("nocon", "No consistency"), ("nodiv", "No diversity"))
    },
    "setfit": "SetFit (peer, same backbone)",
}
