"""The outcome of one task selection (:class:`SelectionResult`: what ``mtft-nlp select --output`` writes and
the console table), and the similarity order it reports."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional


def rank_by_similarity(similarity: Dict[str, float]) -> List[str]:
    """Names by similarity, descending (ties: by name, so the order is deterministic)."""
    return sorted(similarity, key=lambda n: (-similarity[n], n))


@dataclasses.dataclass
class SelectionResult:
    """The outcome of one selection: what was chosen, and the evidence for each decision.

    ``steps`` lists every candidate in the order it was considered, with the coverage of the target
    before and with it, and the decision (``added (first)``, ``added``, ``stop``, ``not reached`` for
    the greedy methods; ``added``/``not chosen`` for the fixed-size ones).
    """

    target: str
    method: str
    selected: List[str]
    similarity: Dict[str, float]  # candidate -> cosine(mean target, mean candidate)
    steps: List[Dict]
    coverage: Dict  # the coverage definition and its parameters
    final_coverage: float
    p: Optional[float] = None  # greedy methods only
    k: Optional[int] = None  # fixed-size methods only
    seed: Optional[int] = None  # random methods only
    encoder: Optional[str] = None  # phi's name (the model's, for encoder "model")
    variant: Optional[str] = None
    split_seed: object = None
    k_shot: Optional[int] = None
    overlap: Dict[str, Dict] = dataclasses.field(default_factory=dict)  # candidate -> text_overlap(target test, it)
    overlap_note: Optional[str] = None
    encoder_info: Optional[Dict] = None  # EncoderSpec.describe(): requested, path, kind, pooling, dim
    p_rule: Optional[Dict] = None  # choose_p's record when p was "auto"

    def shares_text(self, task: str) -> bool:
        return bool(self.overlap.get(task, {}).get("normalized"))

    def to_dict(self) -> Dict:
        """The JSON written by ``mtft-nlp select --output`` (``selected`` is what consumers read)."""
        ranks = {n: i for i, n in enumerate(rank_by_similarity(self.similarity), 1)}
        candidates = []
        for s in self.steps:
            name = s["task"]
            candidates.append(
                {
                    "task": name,
                    "similarity": self.similarity[name],
                    "similarity_rank": ranks[name],
                    "coverage_before": s["coverage_before"],
                    "coverage": s["coverage"],
                    "decision": s["decision"],
                    "shares_text_with_target_test": self.shares_text(name),
                    "text_overlap": self.overlap.get(name),
                }
            )
        return {
            "kind": "mtft-nlp-selection",
            "target": self.target,
            "method": self.method,
            "selected": list(self.selected),
            "encoder": self.encoder,
            "encoder_info": self.encoder_info,
            "variant": self.variant,
            "split_seed": self.split_seed,
            "k_shot": self.k_shot,
            "coverage": dict(self.coverage),
            "p": self.p,
            "p_rule": self.p_rule,
            "k": self.k,
            "seed": self.seed,
            "final_coverage": self.final_coverage,
            "coverage_after_step": [s["coverage"] for s in self.steps if s["decision"].startswith("added")],
            "candidates": candidates,  # in the order considered
            "similarity": {n: self.similarity[n] for n in rank_by_similarity(self.similarity)},
            "overlap_note": self.overlap_note,
        }

    def format_table(self) -> str:
        """The console table: candidates in the order considered, similarity (rank), coverage, decision."""
        ranks = {n: i for i, n in enumerate(rank_by_similarity(self.similarity), 1)}
        opts = [f"target {self.target}", f"method {self.method}", f"coverage {_describe(self.coverage)}"]
        opts += [f"{k} {v}" for k, v in (("p", self.p), ("k", self.k), ("seed", self.seed)) if v is not None]
        lines = ["  ".join(opts)]
        if self.p_rule:
            lines.append(
                f"p {self.p} chosen by rule: mean set size closest to {self.p_rule['budget']} over the "
                f"leave-one-out pools"
            )
        if self.encoder:
            pooling = f" ({self.encoder_info['kind']})" if self.encoder_info else ""
            lines.append(
                f"encoder {self.encoder}{pooling}  variant {self.variant}  split seed {self.split_seed}  "
                f"K {self.k_shot}"
            )
        lines.append(f"{'task':8s} {'similarity':>10s} {'rank':>4s} {'coverage':>8s}  decision")
        for s in self.steps:
            cov = "" if s["coverage"] is None else f"{s['coverage']:.3f}"
            flag = "  [shares text with target test]" if self.shares_text(s["task"]) else ""
            lines.append(
                f"{s['task']:8s} {self.similarity[s['task']]:>10.4f} {ranks[s['task']]:>4d} {cov:>8s}  "
                f"{s['decision']}{flag}"
            )
        lines.append(
            f"selected ({len(self.selected)}): {', '.join(self.selected)}  coverage {self.final_coverage:.3f}"
        )
        if self.overlap_note:
            lines.append(f"note: {self.overlap_note}")
        return "\n".join(lines) + "\n"


def _describe(coverage: Dict) -> str:
    return coverage.get("name", "?") + "".join(
        f" {k}={v}" for k, v in coverage.items() if k != "name" and v is not None
    )
