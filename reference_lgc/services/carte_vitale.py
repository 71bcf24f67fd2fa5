"""Reading a carte Vitale. The bench has no SESAM-Vitale reader: the reference LGC reads the *image* of a test card
the bench hands out (the ApCV simulator's ``GET /_bench/carte-vitale/<patient>``, format ``segur-bench/image-carte-
vitale/1``, invented by the bench) where a real LGC reads its reader. What follows the read — choosing the
beneficiary, the INSi search by carte Vitale — is what a real LGC does with a real card."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .context import ServiceRefused

FORMAT = "segur-bench/image-carte-vitale/1"
MAX_IMAGE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Beneficiary:
    name: str  # the name the card shows (used name, else birth name)
    birth_name: str
    first_name: str
    birth_date: str  # AAAAMMJJ as the card writes it (a lunar date is possible)
    rank: int
    insured: bool  # the insured person (ouvrant droit) rather than a dependant
    nir: str | None  # the beneficiary's own NIR, when the card carries it


@dataclass(frozen=True)
class Card:
    nir_od: str  # NIR of the insured person (ouvrant droit), 15 characters
    regime: str
    caisse: str
    centre: str
    beneficiaries: tuple[Beneficiary, ...]


def _refuse(why: str) -> ServiceRefused:
    return ServiceRefused(f"Carte Vitale illisible : {why}", code="carte_illisible")


def read_image(data: str | bytes) -> Card:
    """The card in the image; raises ServiceRefused (in French, for the user) when it cannot be read."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if not raw.strip():
        raise _refuse("aucune donnée lue")
    if len(raw) > MAX_IMAGE_BYTES:
        raise _refuse(f"plus de {MAX_IMAGE_BYTES // 1024} Kio")
    try:
        image = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _refuse("ce n'est pas une image de carte Vitale du banc (JSON attendu)") from None
    if not isinstance(image, dict) or image.get("format") != FORMAT:
        raise _refuse(f"format {image.get('format') if isinstance(image, dict) else None!r} inconnu "
                      f"(attendu {FORMAT})")
    od = image.get("ouvrant_droit")
    if not isinstance(od, dict) or not _nir(od.get("nir")):
        raise _refuse("NIR de l'ouvrant droit absent ou invalide")
    people = image.get("beneficiaires")
    if not isinstance(people, list) or not people:
        raise _refuse("aucun bénéficiaire sur la carte")
    out = []
    for b in people:
        if not isinstance(b, dict) or not re.fullmatch(r"\d{8}", str(b.get("date_naissance", ""))) \
                or not str(b.get("prenom", "")).strip() or not isinstance(b.get("rang"), int):
            raise _refuse("bénéficiaire incomplet (prénom, date de naissance AAAAMMJJ et rang attendus)")
        nir = b.get("nir")
        out.append(Beneficiary(name=str(b.get("nom") or b.get("nom_naissance") or ""),
                               birth_name=str(b.get("nom_naissance") or b.get("nom") or ""),
                               first_name=str(b["prenom"]).strip(), birth_date=b["date_naissance"], rank=b["rang"],
                               insured=b.get("qualite") == "assure", nir=nir if _nir(nir) else None))
    return Card(nir_od=od["nir"], regime=str(od.get("regime") or ""), caisse=str(od.get("caisse") or ""),
                centre=str(od.get("centre") or ""), beneficiaries=tuple(out))


def _nir(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"\d{6}[AB0-9]\d{8}", value) is not None
