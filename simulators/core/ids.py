"""Identifiers made on the hot path (message ids, journal entry ids).

They must be unique, not secret: their random bits come from a process-local PRNG seeded from the OS,
instead of a getrandom(2) system call per id (two per exchange, a measurable share of an INSi answer).
"""

from __future__ import annotations

import os
import random

_rng = random.Random()  # seeded from os.urandom
os.register_at_fork(after_in_child=_rng.seed)  # a forked child must not repeat its parent's ids
random_bits = _rng.getrandbits

_V4_CLEAR = ~(0xF << 76 | 0x3 << 62)
_V4_SET = 0x4 << 76 | 0x2 << 62


def uuid4() -> str:
    """A random (version 4, RFC 9562 variant) UUID in its canonical 8-4-4-4-12 form."""
    h = f"{random_bits(128) & _V4_CLEAR | _V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
