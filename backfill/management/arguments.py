"""Argument types shared by management commands: bad input fails in argparse.

Argparse turns `ArgumentTypeError` into a one-line usage error and exit code
2 before the command touches anything.
"""

import argparse
import math


def positive_int(raw: str) -> int:
    value = _int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {raw!r}")
    return value


def non_negative_int(raw: str) -> int:
    value = _int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive integer, got {raw!r}")
    return value


def fraction(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {raw!r}")
    return value


def non_negative_number(raw: str) -> float:
    """A number, zero or more; `math.isfinite` keeps out nan and inf."""
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, got {raw!r}")
    return value


def seconds(raw: str) -> float:
    """A duration in seconds, with or without its unit: "5", "5s", "1.5s"."""
    return non_negative_number(raw.removesuffix("s"))


def _int(raw: str) -> int:
    try:
        return int(raw, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {raw!r}") from None
