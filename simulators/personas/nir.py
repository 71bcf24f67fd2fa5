"""NIR / INS matricule key computation and validation (protocols.md §1.8).

A matricule has 13 characters: sex (1), year (2), month (2), department (2, ``2A``/``2B`` in Corsica),
commune or country (3), order number (3). The key is ``97 - (N mod 97)`` where N is the matricule read as
an integer, Corsica's ``2A``/``2B`` being replaced by ``19``/``18`` first. The key is always in 01..97.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "MatriculeParts",
    "NirError",
    "check_nir",
    "is_valid_nir",
    "nir_key",
    "parse_matricule",
    "split_nir",
]

# Digits everywhere, except that the department (characters 6-7) may be 2A or 2B.
_MATRICULE_RE = re.compile(r"\d{5}(?:\d{2}|2[AB])\d{6}")
_KEY_RE = re.compile(r"\d{2}")
_CORSICA = {"2A": "19", "2B": "18"}


class NirError(ValueError):
    """A matricule or NIR that is malformed, or whose key is wrong."""


class MatriculeParts(NamedTuple):
    """The fields of a 13-character matricule, as written (no interpretation of special values)."""

    sexe: str  # "1" male, "2" female (other digits exist for special registrations)
    annee: str  # last two digits of the birth year
    mois: str  # birth month; 20 or more (or 99) when unknown
    departement: str  # "63", "2A", "99" (born abroad) ...
    commune: str  # commune order in the department, or country code when born abroad
    ordre: str  # birth order number in the commune and month


def _normalized_matricule(matricule: str) -> str:
    if not isinstance(matricule, str):
        raise NirError(f"matricule must be a string, got {type(matricule).__name__}")
    value = matricule.upper()
    if len(value) != 13:
        raise NirError(
            f"matricule {matricule!r} has {len(value)} characters; expected 13 "
            "(sex 1, year 2, month 2, department 2, commune 3, order 3), without key or spaces"
        )
    if not _MATRICULE_RE.fullmatch(value):
        raise NirError(
            f"matricule {matricule!r} has invalid characters; only digits are allowed, "
            "except the department (characters 6-7) which may be 2A or 2B (Corsica)"
        )
    return value


def parse_matricule(matricule: str) -> MatriculeParts:
    """Split a 13-character matricule into its fields; raise NirError if malformed."""
    m = _normalized_matricule(matricule)
    return MatriculeParts(m[0], m[1:3], m[3:5], m[5:7], m[7:10], m[10:13])


def nir_key(matricule: str) -> str:
    """Return the 2-digit key ("01".."97") of a 13-character matricule; raise NirError if malformed."""
    m = _normalized_matricule(matricule)
    numeric = m[:5] + _CORSICA.get(m[5:7], m[5:7]) + m[7:]
    return f"{97 - int(numeric) % 97:02d}"


def split_nir(nir15: str) -> tuple[str, str]:
    """Split a 15-character NIR/INS into (matricule, key) after checking its shape (not the key value)."""
    if not isinstance(nir15, str):
        raise NirError(f"NIR must be a string, got {type(nir15).__name__}")
    if len(nir15) != 15:
        raise NirError(
            f"NIR {nir15!r} has {len(nir15)} characters; expected 15 (13-character matricule + 2-digit key)"
        )
    matricule, key = nir15[:13], nir15[13:]
    _normalized_matricule(matricule)
    if not _KEY_RE.fullmatch(key):
        raise NirError(f"NIR {nir15!r}: key {key!r} must be 2 digits")
    return matricule.upper(), key


def check_nir(nir15: str) -> None:
    """Raise NirError, saying why, unless nir15 is a well-formed NIR/INS with the right key."""
    matricule, key = split_nir(nir15)
    expected = nir_key(matricule)
    if key != expected:
        raise NirError(f"NIR {nir15!r}: key {key} is wrong for matricule {matricule}, expected {expected}")


def is_valid_nir(nir15: str) -> bool:
    """True if nir15 is a well-formed 15-character NIR/INS whose key matches; never raises."""
    try:
        check_nir(nir15)
    except NirError:
        return False
    return True
