"""Loading broken data files gives a clear PersonaDataError naming the file and the record."""

import shutil
from pathlib import Path

import pytest

from simulators.personas import PersonaDataError, load_personas
from simulators.personas.loader import DATA_DIR


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(DATA_DIR, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} must occur once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_copy_loads(data_dir: Path) -> None:
    personas = load_personas(data_dir)
    assert personas.source_dir == data_dir
    assert personas is not load_personas()


@pytest.mark.parametrize(
    ("filename", "old", "new", "expected"),
    [
        # missing field
        (
            "patients.toml",
            'nom_naissance = "ADRUN"\n',
            "",
            ["'adrun-zoe'", "missing required field 'nom_naissance'"],
        ),
        # wrong key while key_check is true
        (
            "patients.toml",
            'cle = "74"',
            'cle = "75"',
            ["'adrun-zoe'", "key 75 is wrong", "expected 74", "key_check"],
        ),
        # wrong key of a historical INS
        (
            "patients.toml",
            'cle = "55"',
            'cle = "56"',
            ["'ecetinsi-pierre-alain'", "historical INS", "expected 55"],
        ),
        # malformed matricule
        ("patients.toml", '"2751263220749"', '"27512632207"', ["'adrun-zoe'", "has 11 characters"]),
        # typo in a field name
        (
            "patients.toml",
            '"ADRUN"\nprenoms = ["ZOE"]',
            '"ADRUN"\nprenom = ["ZOE"]',
            ["'adrun-zoe'", "unknown field(s): prenom"],
        ),
        # lexical rules of INSi traits
        (
            "patients.toml",
            '"ADRUN"\nprenoms = ["ZOE"]',
            '"ADRUN"\nprenoms = ["Zoé"]',
            ["'adrun-zoe'", "invalid item 'Zoé'"],
        ),
        (
            "patients.toml",
            "date_naissance = 1975-12-31",
            'date_naissance = "31/12/1975"',
            ["date YYYY-MM-DD"],
        ),
        # birthplace not in the COG subset
        (
            "patients.toml",
            'lieu_naissance = "51215"',
            'lieu_naissance = "51216"',
            ["'pat-trois-dominique'", "51216"],
        ),
        # cross references
        (
            "patients.toml",
            '["899700366240"]',
            '["899999999999"]',
            ["'opposant-gerard'", "unknown national id"],
        ),
        (
            "patients.toml",
            'variant_of = "ecetinsi-pierre-alain"',
            'variant_of = "nobody"',
            ["'ecetinsi-pierre-alain-nia'", "not a main patient record"],
        ),
        (
            "patients.toml",
            'matricule = "1520263220909"\ncle = "58"',
            'matricule = "2751263220749"\ncle = "74"',
            ["'sansdmp-marcel'", "already used by 'adrun-zoe'"],
        ),
        (
            "patients.toml",
            'status = "ferme"',
            'status = "closed"',
            ["'dmpclos-juliette'", "ouvert, ferme, absent"],
        ),
        (
            "professionals.toml",
            'rpps = "99999900022"',
            'rpps = "99999900023"',
            ["'lucie-infirmtest'", "Luhn"],
        ),
        (
            "professionals.toml",
            'structure = "pharmacie-banc-essai"',
            'structure = "pharmacie-inconnue"',
            ["'claire-pharmatest'", "unknown structure 'pharmacie-inconnue'"],
        ),
        (
            "structures.toml",
            'secteur_activite = "SA33"',
            'secteur_activite = "33"',
            ["'pharmacie-banc-essai'"],
        ),
        ("communes.toml", 'nom = "Aregno"\n', "", ["communes.'2B020'", "missing required field 'nom'"]),
        # syntax error
        (
            "structures.toml",
            '[[structure]]\nid = "hopital-generique"',
            '[[structure]\nid = "x"',
            ["invalid TOML"],
        ),
    ],
)
def test_broken_file_gives_clear_error(
    data_dir: Path, filename: str, old: str, new: str, expected: list[str]
) -> None:
    edit(data_dir / filename, old, new)
    with pytest.raises(PersonaDataError) as info:
        load_personas(data_dir)
    message = str(info.value)
    assert str(data_dir / filename) in message
    for fragment in expected:
        assert fragment in message


def test_deliberately_wrong_key_loads_with_key_check_false(data_dir: Path) -> None:
    edit(data_dir / "patients.toml", 'cle = "74"', 'cle = "75"\nkey_check = false')
    patient = load_personas(data_dir).patient("adrun-zoe")
    assert patient.ins == "275126322074975" and not patient.nir_valid


def test_missing_file(data_dir: Path) -> None:
    (data_dir / "communes.toml").unlink()
    with pytest.raises(PersonaDataError, match=r"communes\.toml: persona data file not found"):
        load_personas(data_dir)


def test_persona_data_error_is_a_value_error() -> None:
    assert issubclass(PersonaDataError, ValueError)
