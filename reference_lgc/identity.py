"""INS identity rules (RNIV, Guide d'implémentation INS): traits, statuses, attributes, INSi comparison.

Pure functions, no I/O: the web layer and the INSi call handlers use them, unit tests pin them down.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources

PROVISOIRE, RECUPEREE, VALIDEE, QUALIFIEE = "provisoire", "recuperee", "validee", "qualifiee"
STATUS_LABELS = {PROVISOIRE: "Identité provisoire", RECUPEREE: "Identité récupérée", VALIDEE: "Identité validée",
                 QUALIFIEE: "Identité qualifiée"}
COG_UNKNOWN = "99999"
OID_NIR = "1.2.250.1.213.1.4.8"
OID_NIA = "1.2.250.1.213.1.4.9"
OID_NIR_TEST = "1.2.250.1.213.1.4.10"
OID_NIA_TEST = "1.2.250.1.213.1.4.11"
OID_LABELS = {OID_NIR: "NIR", OID_NIA: "NIA", OID_NIR_TEST: "NIR (test)", OID_NIA_TEST: "NIA (test)"}
# High-trust identity documents (RNIV) accepted to validate an identity, plus the two other means.
ID_DOCUMENTS = {
    "passeport": "Passeport",
    "cni": "Carte nationale d'identité",
    "titre_sejour": "Titre de séjour permanent",
    "livret_famille": "Livret de famille (mineur) + pièce d'identité du parent",
    "extrait_naissance": "Extrait d'acte de naissance (mineur) + pièce d'identité du parent",
    "procedure_exception": "Procédure d'exception (exercice libéral, patient connu)",
}
APCV_MEANS = "Appli carte Vitale"
VERIFY_AFTER = timedelta(days=4 * 365)  # periodic verification of retrieved identities

_ALLOWED = re.compile(r"^[A-Z]+(?:[ '\-][A-Z]+)*$")
_COG = re.compile(r"^(?:\d{5}|2[AB]\d{3})$")


class IdentityError(ValueError):
    """Input refused; `errors` maps a form field to a French message saying what is wrong and why."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def normalize(value: str) -> str:
    """Upper case without diacritics and with single spaces, as INS traits are stored and sent."""
    value = value.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    value = unicodedata.normalize("NFKD", value)
    value = "".join(c for c in value if not unicodedata.combining(c))
    value = value.replace("’", "'").replace("‐", "-")
    return " ".join(value.upper().split())


def _check_name(label: str, raw: str, *, required: bool) -> tuple[str, str | None]:
    value = normalize(raw)
    if not value:
        return value, (f"{label} : obligatoire" if required else None)
    if not _ALLOWED.match(value):
        bad = sorted({c for c in value if not ("A" <= c <= "Z" or c in " '-")})
        if bad:
            shown = " ".join(f"« {c} »" for c in bad)
            return value, (f"{label} : caractère(s) {shown} non autorisé(s) ; seuls les lettres A–Z, l'espace, "
                           "l'apostrophe et le tiret sont admis")
        return value, (f"{label} : un séparateur (espace, apostrophe, tiret) ne peut ni commencer, ni finir, "
                       "ni se répéter")
    return value, None


@cache
def cog_referential() -> dict[str, tuple[str, str]]:
    """INSEE codes known locally: code -> (label, kind). A code the INSi returns may be absent: accepted anyway."""
    text = resources.files("reference_lgc.data").joinpath("cog.csv").read_text(encoding="utf-8")
    return {row["code"]: (row["libelle"], row["type"]) for row in csv.DictReader(text.splitlines())}


def cog_label(code: str) -> str:
    entry = cog_referential().get(code)
    return entry[0] if entry else f"Code INSEE {code}"


@dataclass(frozen=True)
class Traits:
    birth_name: str
    first_names: str  # all birth first names, space-separated, as on the ID document
    sex: str
    birth_date: str  # YYYY-MM-DD
    birthplace_cog: str
    used_name: str = ""
    used_first_name: str = ""

    @property
    def first_first_name(self) -> str:
        return self.first_names.split(" ")[0] if self.first_names else ""


def validate_traits(form: dict[str, str], *, today: date | None = None) -> Traits:
    """Check and normalise the traits typed by a user; raise IdentityError naming every bad field."""
    today = today or date.today()
    errors: dict[str, str] = {}
    birth_name, err = _check_name("Nom de naissance", form.get("birth_name", ""), required=True)
    if err:
        errors["birth_name"] = err
    first_names, err = _check_name("Prénom(s) de naissance", form.get("first_names", ""), required=True)
    if err:
        errors["first_names"] = err
    used_name, err = _check_name("Nom utilisé", form.get("used_name", ""), required=False)
    if err:
        errors["used_name"] = err
    used_first, err = _check_name("Prénom utilisé", form.get("used_first_name", ""), required=False)
    if err:
        errors["used_first_name"] = err
    sex = (form.get("sex") or "").strip().upper()
    if sex not in ("M", "F"):
        errors["sex"] = "Sexe : choisir M (masculin) ou F (féminin), seules valeurs admises par l'INS"
    raw_date = (form.get("birth_date") or "").strip()
    try:
        born = datetime.strptime(raw_date, "%Y-%m-%d").date()
    except ValueError:
        errors["birth_date"] = "Date de naissance : format attendu AAAA-MM-JJ (ex. 1943-11-07)"
    else:
        if born > today:
            errors["birth_date"] = "Date de naissance : ne peut pas être dans le futur"
        elif born.year < 1850:
            errors["birth_date"] = "Date de naissance : antérieure à 1850, vérifier la saisie"
    cog = (form.get("birthplace_cog") or "").strip().upper()
    if not cog:
        errors["birthplace_cog"] = ("Lieu de naissance : obligatoire ; choisir explicitement « INCONNU » (99999) "
                                    "si le lieu n'est pas connu")
    elif not _COG.match(cog):
        errors["birthplace_cog"] = ("Lieu de naissance : code INSEE (COG) de 5 caractères attendu — 5 chiffres, "
                                    "ou 2A/2B suivi de 3 chiffres pour la Corse, 99XXX pour un pays")
    if errors:
        raise IdentityError(errors)
    return Traits(birth_name=birth_name, first_names=first_names, sex=sex, birth_date=born.isoformat(),
                  birthplace_cog=cog, used_name=used_name, used_first_name=used_first)


# ------------------------------------------------------------------------------------------------- statuses


def status(*, retrieved: bool, validated: bool, douteuse: bool = False, fictive: bool = False) -> str:
    if douteuse or fictive:
        return PROVISOIRE
    if retrieved and validated:
        return QUALIFIEE
    if retrieved:
        return RECUPEREE
    if validated:
        return VALIDEE
    return PROVISOIRE


def status_advice(code: str, *, douteuse: bool = False, fictive: bool = False) -> str:
    """What to do to reach *qualifiée* (the tooltip of the status badge)."""
    if fictive:
        return "Identité fictive : aucune INS ne peut lui être associée ni partagée."
    if douteuse:
        return "Identité douteuse : lever le doute (pièce d'identité) et retirer l'attribut avant toute qualification."
    return {
        PROVISOIRE: "Pour qualifier : lire l'Appli carte Vitale, ou récupérer l'INS (INSi, automatique à "
                    "l'ouverture du dossier) puis contrôler une pièce d'identité à haut niveau de confiance.",
        RECUPEREE: "INS récupérée via INSi. Pour qualifier : contrôler une pièce d'identité à haut niveau de "
                   "confiance (ou procédure d'exception), puis « Qualifier » en un clic.",
        VALIDEE: "Pièce d'identité contrôlée. Pour qualifier : récupérer l'INS via INSi (automatique à "
                 "l'ouverture du dossier).",
        QUALIFIEE: "Identité qualifiée : le matricule INS peut être utilisé pour référencer et partager les données.",
    }[code]


@dataclass(frozen=True)
class AttributeChange:
    homonyme: bool
    douteuse: bool
    fictive: bool
    demoted: bool  # the identity went back to provisoire and its INS was unlinked


def set_attributes(*, homonyme: bool, douteuse: bool, fictive: bool, retrieved: bool, validated: bool
                   ) -> AttributeChange:
    """Attribute rules: douteuse and fictive exclude each other and only exist on a provisional identity."""
    if douteuse and fictive:
        raise IdentityError({"attributes": "Une identité ne peut pas être à la fois douteuse et fictive"})
    demoted = (douteuse or fictive) and (retrieved or validated)
    return AttributeChange(homonyme=homonyme, douteuse=douteuse, fictive=fictive, demoted=demoted)


def insi_call_needed(*, retrieved: bool, douteuse: bool, fictive: bool, retrieved_at: str | None,
                     now: datetime | None = None) -> str | None:
    """Why INSi must be called on opening the file (None: no call). Fictive/doubtful identities are never sent."""
    if fictive or douteuse:
        return None
    if not retrieved:
        return "recuperation"
    if retrieved_at:
        when = datetime.fromisoformat(retrieved_at)
        now = now or datetime.now(when.tzinfo)
        if now - when >= VERIFY_AFTER:
            return "verification"
    return None


# ------------------------------------------------------------------------------------------ INSi comparison


@dataclass(frozen=True)
class TraitComparison:
    field: str
    label: str
    local: str
    insi: str

    @property
    def match(self) -> bool:
        return self.local == self.insi


def compare(local: Traits, local_nir: str | None, insi: dict) -> list[TraitComparison]:
    """Side by side: the file's traits and those the INSi returned (matricule/NIR included)."""
    insi_first = " ".join(insi.get("first_names") or []) if isinstance(insi.get("first_names"), list) \
        else str(insi.get("first_names") or "")
    rows = [
        TraitComparison("matricule", "Matricule INS (NIR)", local_nir or "—", insi.get("matricule", "")),
        TraitComparison("birth_name", "Nom de naissance", local.birth_name, normalize(insi.get("birth_name", ""))),
        TraitComparison("first_first_name", "1er prénom de naissance", local.first_first_name,
                        normalize(insi_first).split(" ")[0]),
        TraitComparison("first_names", "Prénom(s) de naissance", local.first_names, normalize(insi_first)),
        TraitComparison("sex", "Sexe", local.sex, insi.get("sex", "")),
        TraitComparison("birth_date", "Date de naissance", local.birth_date, insi.get("birth_date", "")),
        TraitComparison("birthplace_cog", "Lieu de naissance (COG)", local.birthplace_cog,
                        insi.get("birthplace_cog", "")),
    ]
    return rows


def full_match(rows: list[TraitComparison]) -> bool:
    """The fields whose equality makes the retrieval automatic (INS guide): NIR, birth name, first birth first
    name, birth date, sex. The complete first-name list and the COG may differ without blocking it."""
    keys = {"birth_name", "first_first_name", "birth_date", "sex"}
    # The matricule counts only when the file already holds one (e.g. read from the carte Vitale).
    return all(r.match for r in rows if r.field in keys or (r.field == "matricule" and r.local != "—"))
