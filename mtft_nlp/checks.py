"""Numeric option checks shared by the argument dataclasses of every command: a value outside its range, or a float
that is not finite (``nan``, ``inf``, ``1e999``), is one error naming the flag (``--name value: expected ...``) before
anything runs, instead of a traceback or a run that trains on nonsense."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, Tuple

__all__ = ["Rule", "POSITIVE", "AT_LEAST_0", "AT_LEAST_1", "FRACTION", "SEED", "check_numbers", "option"]

Rule = Tuple[Callable[[float], bool], str]  # (accepts the value, what is expected)

POSITIVE: Rule = (lambda v: v > 0, "a number greater than 0")
AT_LEAST_0: Rule = (lambda v: v >= 0, "a number of at least 0")
AT_LEAST_1: Rule = (lambda v: v >= 1, "a whole number of at least 1")
FRACTION: Rule = (lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1")
SEED: Rule = (lambda v: 0 <= v < 2**32, f"a whole number from 0 to {2**32 - 1}")


def check_numbers(args, rules: Dict[str, Rule]) -> None:
    """``ValueError`` naming the first field of the dataclass ``args`` that is a non-finite float or breaks its rule
    (``None`` values pass: the option is unset)."""
    for f in dataclasses.fields(args):
        value = getattr(args, f.name, None)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{f.name} {value}: expected a finite number")
    for name, (ok, expected) in rules.items():
        value = getattr(args, name)
        if value is not None and not isinstance(value, bool) and not ok(value):
            raise ValueError(f"--{name} {value}: expected {expected}")


def option(rule: Rule, cast: Callable = int) -> Callable[[str], float]:
    """An argparse ``type`` that reads a whole number (``cast=int``) or a finite float and applies ``rule``; a bad
    value is argparse's one-line usage error naming the option (``argument --k: 0: expected a whole number of at
    least 1``)."""
    import argparse

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected {'a whole number' if cast is int else 'a number'}"
            ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text}: expected a finite number")
        if not rule[0](value):
            raise argparse.ArgumentTypeError(f"{text}: expected {rule[1]}")
        return value

    return parse
