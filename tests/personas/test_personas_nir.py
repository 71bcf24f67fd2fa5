"""NIR / INS matricule key: reference vectors (protocols.md §1.7-1.8), Corsica, malformed input."""

import pytest

from simulators.personas.nir import NirError, check_nir, is_valid_nir, nir_key, parse_matricule, split_nir

VECTORS = [
    ("1431100950837", "13"),  # CLÉRICO Côme (seed 000)
    ("1671000934807", "10"),  # BOUCHER François (seed 000)
    ("297022A020778", "78"),  # ADRTROIS DOMINIQUE, Corse-du-Sud
    ("160012B020777", "13"),  # ADRTROIS TOUSSAINT, Haute-Corse
    ("1090763220834", "89"),
    ("2090763220834", "39"),
    ("2090663220123", "55"),
    ("1090763220888", "35"),
    ("180032B020401", "23"),
    ("2770763220829", "10"),
    ("2360663220836", "56"),
    ("2751263220749", "74"),
    ("1100863220830", "60"),
    ("2790351215189", "89"),  # ANS CDA samples
    ("1010663220904", "07"),  # zero-padded key
    ("2070585756270", "97"),  # N mod 97 == 0 gives 97, never 00
]


@pytest.mark.parametrize(("matricule", "key"), VECTORS)
def test_nir_key_vectors(matricule: str, key: str) -> None:
    assert nir_key(matricule) == key
    assert is_valid_nir(matricule + key)
    check_nir(matricule + key)


def test_corsica_is_computed_with_19_and_18() -> None:
    assert nir_key("297022A020778") == f"{97 - int('2970219020778') % 97:02d}"
    assert nir_key("160012B020777") == f"{97 - int('1600118020777') % 97:02d}"
    assert nir_key("297022a020778") == "78"  # the XSD allows lower case


@pytest.mark.parametrize("nir", ["181036322045660", "281036322045610"])
def test_hermann_keys_are_deliberately_wrong(nir: str) -> None:
    assert not is_valid_nir(nir)
    with pytest.raises(NirError, match=r"expected (76|26)"):
        check_nir(nir)


def test_split_nir() -> None:
    assert split_nir("143110095083713") == ("1431100950837", "13")
    assert split_nir("297022a02077878") == ("297022A020778", "78")


@pytest.mark.parametrize(
    ("matricule", "message"),
    [
        ("143110095083", "has 12 characters; expected 13"),
        ("14311009508371", "has 14 characters; expected 13"),
        ("1 43 11 00 95", "invalid characters"),
        ("1431100950A37", "invalid characters"),  # letter outside the department
        ("297022C020778", "2A or 2B"),
        ("29702AA020778", "invalid characters"),
    ],
)
def test_malformed_matricule(matricule: str, message: str) -> None:
    with pytest.raises(NirError, match=message):
        nir_key(matricule)
    assert not is_valid_nir(matricule + "00")


@pytest.mark.parametrize(
    ("nir", "message"),
    [
        ("14311009508371", "has 14 characters; expected 15"),
        ("1431100950837133", "has 16 characters; expected 15"),
        ("1431100950837AB", "key 'AB' must be 2 digits"),
        ("", "has 0 characters"),
    ],
)
def test_malformed_nir(nir: str, message: str) -> None:
    with pytest.raises(NirError, match=message):
        split_nir(nir)
    assert not is_valid_nir(nir)


def test_non_string_input() -> None:
    with pytest.raises(NirError, match="must be a string"):
        nir_key(1431100950837)  # type: ignore[arg-type]
    assert not is_valid_nir(143110095083713)  # type: ignore[arg-type]


def test_nir_error_is_a_value_error() -> None:
    assert issubclass(NirError, ValueError)


def test_parse_matricule() -> None:
    parts = parse_matricule("297022A020778")
    assert parts == ("2", "97", "02", "2A", "020", "778")
    assert parts.departement == "2A"
    assert parse_matricule("1140299127902").commune == "127"  # born abroad: country code
