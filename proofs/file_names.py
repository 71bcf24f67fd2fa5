"""File names of proofs (screenshots, bundles) from French text: transliterated to ASCII, so a reviewer reads
"le-medecin-valide-l-ordonnance", not "le-m-decin-valide-l-ordonnance"."""

from __future__ import annotations

import re
import unicodedata

# Letters NFKD does not decompose into a base letter + accent (French ligatures and a few neighbours).
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss", "ø": "o", "Ø": "O",
                            "đ": "d", "Đ": "D", "ł": "l", "Ł": "L"})


def ascii_text(text: str) -> str:
    """French text in ASCII letters: accents dropped (é → e, ç → c), ligatures spelt out (œ → oe)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).encode("ascii", "ignore").decode()


def file_slug(text: str, max_length: int = 50) -> str:
    """Lower-case ASCII words joined by "-" (apostrophes and punctuation are separators), cut at a word boundary
    when longer than `max_length`."""
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text(text).lower()).strip("-")
    if len(slug) <= max_length:
        return slug
    cut = slug[:max_length + 1].rsplit("-", 1)[0] if "-" in slug[:max_length + 1] else slug[:max_length]
    return cut.strip("-")
