"""Control-plane input read once, with bounds: JSON bodies, integer query parameters and URL parts.

The control API takes JSON from scenarios, trainers' curl commands and vendors' CI scripts. Python's ``json``
accepts what no control route can use and some that breaks later code: nesting deep enough to raise
RecursionError, integers of any size (SQLite stores 64 bits: OverflowError at the first query), ``NaN`` and
``Infinity`` (not JSON, RFC 8259 §6) and floats that overflow to infinity. Every control route reads its body
through ``parse_json`` and its integers through ``query_int`` / the bounded ``int`` URL converter, so the
answer is a 400 problem saying what to fix, never a 500.
"""

from __future__ import annotations

import json
import math
from typing import Any

from werkzeug.routing import IntegerConverter

MAX_DEPTH = 32  # the deepest control body (a fault rule's match inside a list of rules) needs 5
INT_MAX = 2**63 - 1  # what SQLite's INTEGER holds
INT_MIN = -(2**63)


class InputError(ValueError):
    """The control input was refused; ``str(exc)`` says what to fix and is safe to return to the client."""


def _bounded_int(text: str) -> int:
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise InputError(f"integer {text[:24]}{'…' if len(text) > 24 else ''} is beyond 64 bits")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"number {text[:24]} is too large")
    return value


def _no_constant(name: str) -> Any:
    raise InputError(f"{name} is not JSON (RFC 8259 §6): write a number or null")


def parse_json(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a control body: standard JSON, nested at most `max_depth` deep, 64-bit integers, finite numbers."""
    try:
        value = json.loads(raw, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_no_constant)
    except InputError:
        raise
    except RecursionError:
        raise InputError(f"the JSON body is nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise InputError("the body is not valid JSON: it is not UTF-8 text") from None
    except ValueError as exc:  # json.JSONDecodeError: its message says where (line, column)
        raise InputError(f"the body is not valid JSON: {exc}") from None
    _check_depth(value, max_depth)
    return value


def _check_depth(value: Any, max_depth: int) -> None:
    stack = [(value, 1)]
    while stack:  # iterative: a deep value must not recurse here either
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise InputError(f"the JSON body is nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def query_int(args: Any, name: str, default: int | None = None, *, minimum: int = 1,
              maximum: int = 1_000_000) -> int | None:
    """An integer query parameter within [minimum, maximum], or `default` when absent."""
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.lstrip("-").isdigit() and len(raw) <= 20):
        raise InputError(f"{name} must be an integer, got {raw[:40]!r}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise InputError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


class BoundedIntConverter(IntegerConverter):
    """Flask's ``<int:…>`` limited to what SQLite stores: a longer number is a 404, not an OverflowError."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", INT_MAX)
        super().__init__(map, *args, **kwargs)
