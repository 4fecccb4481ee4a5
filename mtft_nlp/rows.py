"""Table rows: one name per (adaptation method, starting model, kind of run), and what each name means.

A row name is ``[mt-[<variant>-]]<kind>``:

* ``<kind>`` says how the target is adapted; each method declares its kinds (:class:`~mtft_nlp.methods.base.RowKind`):
  ``zero-shot`` and ``pbft`` (prompt-based, through the masked LM's head), ``embed-zero-shot``, ``embed-adapt`` and
  ``embed-ft`` (embedding-based: a linear head on the sentence embedding phi, from class descriptions, fitted on the
  frozen phi, or trained with phi), and ``setfit`` (the SetFit peer, its own recipe on the same backbone);
* ``mt-`` says the run starts from a multitask checkpoint, and ``<variant>`` which sources it was
  finetuned on: none (leave-one-out, all other classification tasks), ``sel`` (task selection,
  Algorithm 1), ``random``, ``nocon``, ``nodiv`` (the selection ablations of the paper's Table 1).

Every other module asks this one (:func:`parse_row`, :func:`row_name`) instead of splitting names itself. The tables
of names (``ROWS``, ``ROW_ORDER``, ``ROW_TITLES``, ``ROW_GROUPS``, ``KINDS``) are read from the registered methods
when asked for, so a method registered later has its rows too.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

from .methods.base import RowKind, row_name
from .methods.registry import all_methods, get_method

__all__ = [
    "Row",
    "KINDS",  # noqa: F822  (module __getattr__)
    "VARIANTS",
    "ROWS",  # noqa: F822  (module __getattr__)
    "ROW_GROUPS",  # noqa: F822  (module __getattr__)
    "ROW_ORDER",  # noqa: F822  (module __getattr__)
    "ROW_TITLES",  # noqa: F822  (module __getattr__)
    "parse_row",
    "row_name",
    "row_for_start",
    "variant_of_method",
    "expand_rows",
]

# row infix -> task-selection method that chose the multitask sources
VARIANTS: Dict[str, str] = {"sel": "selected", "random": "random", "nocon": "no-consistency", "nodiv": "no-diversity"}


def _kinds() -> Dict[str, str]:
    """kind -> the name of its method."""
    return {k.name: m.name for m in all_methods() for k in m.kinds}


def _rows() -> tuple:
    return tuple(r for m in all_methods() for r in m.row_names(list(VARIANTS)))


def _groups() -> Dict[str, List[str]]:
    return {g: list(rows) for m in all_methods() for g, rows in m.row_groups.items()}


def _titles() -> Dict[str, str]:
    return {r: t for m in all_methods() for r, t in m.row_titles().items()}


_TABLES = {"KINDS": _kinds, "ROWS": _rows, "ROW_ORDER": _rows, "ROW_GROUPS": _groups, "ROW_TITLES": _titles}


def __getattr__(name):  # the tables above, from the methods registered now
    if name in _TABLES:
        return _TABLES[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class Row:
    """What a row name means."""

    name: str
    kind: str  # a key of KINDS
    variant: Optional[str]  # None: base model; "all": leave-one-out multitask; else a key of VARIANTS

    @property
    def method(self) -> str:
        """The name of the row's method."""
        return _kinds()[self.kind]

    @property
    def spec(self) -> RowKind:
        """The row's kind as its method declares it (zero-shot, trains the encoder, its config section...)."""
        return get_method(self.method).kind(self.kind)

    @property
    def multitask(self) -> bool:
        return self.variant is not None

    @property
    def zero_shot(self) -> bool:
        return self.spec.zero_shot

    @property
    def trains_encoder(self) -> bool:
        return self.spec.trains_encoder

    @property
    def selection_method(self) -> Optional[str]:
        return VARIANTS.get(self.variant) if self.variant else None


def parse_row(name: str) -> Row:
    """The meaning of a row name; ``ValueError`` for a name that is not a row."""
    kinds = {k.name: k for m in all_methods() for k in m.kinds}
    rest, variant = name, None
    if name.startswith("mt-"):
        rest, variant = name[3:], "all"
        head = rest.split("-", 1)[0]
        tail = rest[len(head) + 1 :]
        if head in VARIANTS and tail in kinds and kinds[tail].multitask:
            variant, rest = head, tail
        if rest not in kinds or not kinds[rest].multitask:
            raise ValueError(f"unknown row {name!r}")
    if rest not in kinds:
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


def expand_rows(rows) -> List[str]:
    """Row names with the groups of ``ROW_GROUPS`` expanded, duplicates dropped, order kept."""
    rows = [rows] if isinstance(rows, str) else list(rows)
    groups = _groups()
    return list(dict.fromkeys(x for r in rows for x in groups.get(r, [r])))
