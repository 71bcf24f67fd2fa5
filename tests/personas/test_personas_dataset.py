"""The shipped persona dataset: CNDA identities, flagship identities, coherence, lookups."""

import dataclasses
from datetime import date

import pytest

from simulators.personas import (
    OID_INS_NIA,
    OID_INS_NIR,
    OID_INS_NIR_TEST,
    Patient,
    Personas,
    is_valid_nir,
    load_personas,
    parse_matricule,
)


@pytest.fixture(scope="module")
def personas() -> Personas:
    return load_personas()


def test_default_dataset_is_cached(personas: Personas) -> None:
    assert load_personas() is personas


def test_records_are_frozen(personas: Personas) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        personas.patients[0].nom_naissance = "X"  # type: ignore[misc]


def test_every_key_is_valid_unless_key_check_is_false(personas: Personas) -> None:
    for patient in personas.all_patients:
        numbers = [h.ins for h in patient.inshisto]
        if patient.ins:
            numbers.append(patient.ins)
        if patient.carte_vitale:
            numbers.append(patient.carte_vitale.nir_ouvrant_droit)
        for nir in numbers:
            assert is_valid_nir(nir) or not patient.key_check, (patient.id, nir)
    unchecked = [p.id for p in personas.all_patients if not p.key_check]
    assert unchecked == ["hermann-gatien"]
    assert not personas.patient("hermann-gatien").nir_valid


def test_flagship_clerico(personas: Personas) -> None:
    clerico = personas.patient_by_ins("143110095083713")
    assert clerico is not None
    assert clerico.id == "clerico-come"
    assert clerico.nom_naissance == "CLERICO"
    assert clerico.prenoms == ("COME",)
    assert clerico.display_name == "CLÉRICO Côme"
    assert (clerico.sexe, clerico.date_naissance.year, clerico.date_naissance.month) == ("M", 1943, 11)
    assert clerico.oid == OID_INS_NIR and clerico.nir_valid
    assert clerico.dmp.status == "ouvert"
    assert clerico.carte_vitale is not None and clerico.carte_vitale.nir_ouvrant_droit == clerico.ins


def test_flagship_boucher(personas: Personas) -> None:
    boucher = personas.patient_by_ins("167100093480710")
    assert boucher is not None
    assert boucher.nom_naissance == "BOUCHER"
    assert boucher.prenoms == ("FRANCOIS",)
    assert boucher.display_name == "BOUCHER François"
    assert (boucher.sexe, boucher.date_naissance.year, boucher.date_naissance.month) == ("M", 1967, 10)
    assert boucher.dmp.status == "ouvert"


def test_flagship_patients_have_not_blocked_the_flagship_user(personas: Personas) -> None:
    gp = personas.professional("kit-doc0036624")
    for patient_id in ("clerico-come", "boucher-francois"):
        assert not personas.patient(patient_id).dmp.is_blocked(gp.national_id)


# (nom, prenom, sexe, ddn, INS or None, expected CR of the canonical query or "fault")
CNDA = [
    ("ADRTROIS", "DOMINIQUE", "F", "1997-02-26", "297022A02077878", "00"),
    ("ADRTROIS", "TOUSSAINT", "M", "1960-01-01", "160012B02077713", "00"),
    ("ECETINSI", "PIERRE-ALAIN", "M", "2009-07-14", "109076322083489", "00"),
    ("PROVISOIRE", "MATRICULE", "M", "2009-07-01", "109076322088835", "00"),
    ("CORSE", "ANTHONY", "M", "1980-03-02", "180032B02040123", "00"),
    ("HERMANN", "GATIEN", "M", "1981-03-24", "181036322045660", "00"),
    ("NESSI", "NATHALIE", "F", "1977-07-14", "277076322082910", "00"),
    ("TCHITCHI", "CATARINA", "F", "1936-06-21", "236066322083656", "00"),
    ("TCHITCHI", "OLA", "F", "1936-06-21", None, "01"),
    ("ADRUN", "ZOE", "F", "1975-12-31", "275126322074974", "00"),
    ("NESSI", "MICHELANGELO", "M", "2010-08-07", "110086322083060", "00"),
    ("HOUILLES", "PIERRE", "M", "1993-01-27", None, "01"),
    ("HOUILLES", "PAUL", "M", "1993-01-27", None, "01"),
    ("HOUILLES", "JACQUES", "M", "1993-01-27", None, "01"),
    ("DE VINCI", "LEONARDO", "M", "2014-02-01", None, "02"),
    ("D'AEION", "COEUR", "M", "1987-01-25", None, "fault"),
    ("ADRDEUX", "LAURENT", "M", "1981-01-01", None, "00"),
    ("D'ARTAGNAN DE L'HERAULT", "PIERRE-ALAIN", "M", "2001-06-17", None, "00"),
]


def insi_outcome(matches: tuple[Patient, ...]) -> str:
    """Reference reading of the data: what an INSi simulator is expected to derive from a search."""
    if any(p.insi.fault for p in matches):
        return "fault"
    found = [p for p in matches if p.ins]
    return {0: "01", 1: "00"}.get(len(found), "02")


@pytest.mark.parametrize(("nom", "prenom", "sexe", "ddn", "ins", "expected"), CNDA)
def test_cnda_identities(
    personas: Personas, nom: str, prenom: str, sexe: str, ddn: str, ins: str | None, expected: str
) -> None:
    matches = personas.search_patients(nom, [prenom], sexe, ddn)
    assert insi_outcome(matches) == expected
    if ins is not None:
        assert len(matches) == 1 and matches[0].ins == ins


def test_every_recorded_insi_case_is_consistent_with_the_data(personas: Personas) -> None:
    checked = 0
    for patient in personas.patients:
        for case in patient.insi.cases:
            matches = personas.search_patients(
                patient.nom_naissance, case.prenoms, patient.sexe, patient.date_naissance, case.lieu_naissance
            )
            assert insi_outcome(matches) == case.expected, (patient.id, case)
            checked += 1
        canonical = personas.search_patients(
            patient.nom_naissance, patient.premier_prenom, patient.sexe, patient.date_naissance
        )
        expected = "fault" if patient.insi.fault else patient.insi.expected
        assert insi_outcome(canonical) == expected, patient.id
    assert checked >= 20


def test_ecetinsi_history(personas: Personas) -> None:
    ecetinsi = personas.patient("ecetinsi-pierre-alain")
    assert ecetinsi.liste_prenoms == "PIERRE-ALAIN MURIEL FLORIANT"
    assert [h.ins for h in ecetinsi.inshisto] == ["209076322083439", "209066322012355"]
    first = ecetinsi.inshisto[0]
    assert (first.date_deb, first.date_fin) == (date(2019, 3, 1), date(2019, 2, 28))
    assert personas.patient_by_ins("209066322012355") is None
    assert personas.patient_by_ins("209066322012355", include_history=True) is ecetinsi
    assert personas.patient_by_ins("109076322083489") is ecetinsi


def test_test_1_10_is_a_nia_variant_not_a_second_person(personas: Personas) -> None:
    (variant,) = personas.variants("ecetinsi-pierre-alain")
    assert variant.variant == "TEST_1.10"
    assert variant.oid == OID_INS_NIA and variant.ins == "109076322083489"
    assert variant not in personas.patients
    assert len(personas.search_patients("ECETINSI", "PIERRE-ALAIN", "M", "2009-07-14")) == 1


def test_provisoire_is_nia(personas: Personas) -> None:
    provisoire = personas.patient("provisoire-matricule")
    assert provisoire.is_nia
    assert provisoire.dmp_oid == OID_INS_NIA


def test_corse_and_hermann_history(personas: Personas) -> None:
    corse = personas.patient("corse-anthony")
    assert [h.ins for h in corse.inshisto] == [corse.ins]
    hermann = personas.patient("hermann-gatien")
    assert [h.ins for h in hermann.inshisto] == ["181036322045660", "281036322045610"]


def test_tchitchi_first_names(personas: Personas) -> None:
    tchitchi = personas.patient("tchitchi-catarina")
    assert tchitchi.liste_prenoms == "CATARINA BELLA"
    assert personas.search_patients("TCHITCHI", "OLA", "F", "1936-06-21") == ()
    assert personas.search_patients("tchitchi", "catarina bella", "f", date(1936, 6, 21)) == (tchitchi,)


def test_de_vinci_homonyms_differ_by_birthplace(personas: Personas) -> None:
    homonyms = personas.search_patients("DE VINCI", "LEONARDO", "M", "2014-02-01")
    assert len(homonyms) >= 2
    places = [p.lieu_naissance for p in homonyms]
    assert len(set(places)) == len(places) and None not in places
    for place in places:
        (only,) = personas.search_patients("DE VINCI", "LEONARDO", "M", "2014-02-01", place)
        assert only.lieu_naissance == place and only.ins
    assert all(p.insi.expected == "02" for p in homonyms)


def test_identities_unknown_to_insi(personas: Personas) -> None:
    houilles = personas.patient("houilles-pierre")
    assert houilles.ins is None and houilles.insi.expected == "01" and houilles.mss_address is None
    aeion = personas.patient("d-aeion-coeur")
    assert aeion.ins is None and aeion.insi.fault_codes == ("siram_40", "insi_102")


def test_nir_matches_traits(personas: Personas) -> None:
    for patient in personas.all_patients:
        if patient.matricule is None:
            continue
        parts = parse_matricule(patient.matricule)
        assert parts.sexe == {"M": "1", "F": "2"}[patient.sexe], patient.id
        assert parts.annee == f"{patient.date_naissance.year % 100:02d}", patient.id
        assert parts.mois == f"{patient.date_naissance.month:02d}", patient.id
        if parts.departement != "00":  # the flagship NIRs use the fictitious department 00
            assert patient.lieu_naissance == parts.departement + parts.commune, patient.id


def test_communes(personas: Personas) -> None:
    used = {p.lieu_naissance for p in personas.all_patients if p.lieu_naissance}
    used |= {s.adresse.commune for s in personas.structures}
    assert used <= set(personas.communes)
    assert personas.commune("63220").nom == "Mazoires"  # type: ignore[union-attr]
    assert personas.commune("2B020").nom == "Aregno"  # type: ignore[union-attr]
    assert personas.commune("2a020").actuel is False  # type: ignore[union-attr]
    assert personas.commune("99999").nom == "INCONNU"  # type: ignore[union-attr]
    assert personas.commune("12345") is None


def test_dmp_states(personas: Personas) -> None:
    assert personas.patient("dmpclos-juliette").dmp.status == "ferme"
    assert personas.patient("sansdmp-marcel").dmp.status == "absent"
    opposant = personas.patient("opposant-gerard")
    assert opposant.dmp.status == "ouvert"
    for national_id in opposant.dmp.blocked_professionals:
        assert personas.professional_by_national_id(national_id) is not None
    assert opposant.dmp.is_blocked("899700366240")
    assert personas.patient("clerico-come").dmp_oid == OID_INS_NIR_TEST


def test_child_on_parent_card(personas: Personas) -> None:
    mother = personas.patient("famille-sophie")
    assert mother.ins is not None and mother.nom_utilise == "FAMILLE"
    on_card = personas.patients_on_card(mother.ins)
    assert {p.id for p in on_card} == {"famille-sophie", "famille-leo", "famille-lina"}
    leo, lina = personas.patient("famille-leo"), personas.patient("famille-lina")
    assert leo.date_naissance == lina.date_naissance
    assert leo.carte_vitale is not None and lina.carte_vitale is not None
    assert (leo.carte_vitale.rang_naissance, lina.carte_vitale.rang_naissance) == (1, 2)
    assert leo.carte_vitale.nir_ouvrant_droit == mother.ins != leo.ins


def test_patient_mss_addresses(personas: Personas) -> None:
    for patient in personas.patients:
        if patient.ins:
            assert patient.mss_address == f"{patient.ins}@patient.mssante.fr"
            assert personas.patient_by_mss(patient.mss_address.upper()) is patient
    assert personas.patient_by_mss("000000000000000@patient.mssante.fr") is None


def test_professionals(personas: Personas) -> None:
    assert len(personas.professionals) >= 4
    assert {p.profession for p in personas.professionals} >= {"10", "21", "60"}
    gp = personas.professional_by_national_id("899700366240")
    assert gp is not None and gp.id == "kit-doc0036624"
    assert (gp.profession, gp.type_savoir_faire, gp.savoir_faire, gp.code_specialite_amo) == (
        "10",
        "S",
        "SM26",
        "01",
    )
    assert (gp.mode_exercice, gp.secteur_activite) == ("L", "SA07")
    assert gp.psc_sub.endswith(":899700366240")
    assert gp.mss_organisationnelle == gp.structure.mss_organisationnelle
    assert personas.professional_by_mss("KIT.DOC0036624@medecin.mssante.fr") is gp
    assert personas.professional_by_national_id("800000000000") is None
    for pro in personas.professionals:
        assert pro.national_id == "8" + pro.rpps
        assert len(pro.identifiant_facturation) == 9
        assert pro.mss_personnelle.endswith(".mssante.fr")


def test_structures(personas: Personas) -> None:
    for structure in personas.structures:
        assert structure.finess is None or len(structure.finess) == 9
        assert structure.siret is None or len(structure.siret) == 14
    cabinets = [s for s in personas.structures if s.secteur_activite == "SA07" and s.finess and s.siret]
    assert cabinets
    assert personas.structure("hopital-generique").identifiant_national == "10B0172805"
    assert personas.structure("pharmacie-banc-essai").identifiant_national == "1639999002"


def test_unknown_ids_give_helpful_key_errors(personas: Personas) -> None:
    with pytest.raises(KeyError, match="clerico-come"):
        personas.patient("nobody")
    with pytest.raises(KeyError, match="kit-doc0036624"):
        personas.professional("nobody")
    with pytest.raises(KeyError, match="hopital-generique"):
        personas.structure("nowhere")
    assert personas.patient_by_ins("999999999999999") is None
