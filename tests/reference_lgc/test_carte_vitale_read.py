"""Reference LGC: reading the bench's carte Vitale image (no reader on a bench), choosing the file's beneficiary,
and the page that lets the user choose when the card does not tell (twins, wrong birth date). Images are written
here by hand, in the format the ApCV simulator documents."""

from __future__ import annotations

import html
import json
import re

import pytest
from conftest import LGC
from flask import Flask
from flask.testing import FlaskClient
from test_lgc_csrf import form_token

from reference_lgc.operations.identity_ops import card_beneficiaries_for
from reference_lgc.services.carte_vitale import read_image
from reference_lgc.services.context import ServiceRefused


def image(*people: tuple[str, str, int], od: str = "284056322090544") -> str:
    return json.dumps({"format": "segur-bench/image-carte-vitale/1",
                       "ouvrant_droit": {"nir": od, "regime": "01", "caisse": "631", "centre": "0001"},
                       "beneficiaires": [{"nom": "FAMILLE", "nom_naissance": "FAMILLE", "prenom": first,
                                          "date_naissance": born, "rang": rank, "qualite": "ayant_droit"}
                                         for first, born, rank in people]})


@pytest.mark.parametrize(("data", "words"), [
    ("", "aucune donnée"), ("pas du json", "JSON attendu"), ('{"format": "autre"}', "format 'autre' inconnu"),
    (image(("LINA", "20170308", 2), od="123"), "NIR de l'ouvrant droit"),
    (json.dumps({"format": "segur-bench/image-carte-vitale/1", "ouvrant_droit": {"nir": "284056322090544"},
                 "beneficiaires": [{"prenom": "LINA", "date_naissance": "2017-03-08", "rang": 2}]}), "AAAAMMJJ"),
    ("x" * 70_000, "Kio"),
])
def test_unreadable_images_are_refused_in_words(data: str, words: str) -> None:
    with pytest.raises(ServiceRefused) as refused:
        read_image(data)
    assert refused.value.code == "carte_illisible" and words in refused.value.reason


def test_the_files_beneficiary_is_chosen_by_birth_date_then_name(app: Flask) -> None:
    lina = app.config["RECORDS"].search(name="FAMILE")[0]
    card = read_image(image(("LEO", "20170308", 1), ("LINA", "20170308", 2), ("SOPHIE", "19840519", 1)))
    assert [(b.first_name, b.rank) for b in card_beneficiaries_for(card, lina)] == [("LINA", 2)]
    twins = read_image(image(("LEO", "20170308", 1), ("LOU", "20170308", 2)))
    assert len(card_beneficiaries_for(twins, lina)) == 2  # the card does not tell: the user will
    assert card_beneficiaries_for(read_image(image(("SOPHIE", "19840519", 1))), lina) == []


def post_card(doctor: FlaskClient, pid: int, data: str, **extra: str):
    token = form_token(doctor, f"/patients/{pid}")
    return doctor.post(f"{LGC}/patients/{pid}/carte-vitale", data={"image": data, "csrf_token": token, **extra},
                       headers={"Origin": LGC})


def test_twins_the_file_does_not_tell_apart_are_offered_to_choose(app: Flask, doctor: FlaskClient) -> None:
    pid = app.config["RECORDS"].search(name="FAMILE")[0].id
    resp = post_card(doctor, pid, image(("LEO", "20170308", 1), ("LOU", "20170308", 2)))
    page = " ".join(html.unescape(resp.get_data(as_text=True)).split())
    assert resp.status_code == 200 and "le rang de naissance départage les jumeaux" in page
    assert re.findall(r'<tr data-rang="(\d)">', page) == ["1", "2"]
    assert not app.config["DB"].all("SELECT 1 FROM service_calls WHERE operation='recherche_carte_vitale'")
    chosen = post_card(doctor, pid, image(("LEO", "20170308", 1), ("LOU", "20170308", 2)), choix="1")
    assert chosen.status_code == 302 and chosen.headers["Location"].endswith(f"/patients/{pid}#identite")
    call = app.config["DB"].one("SELECT params FROM service_calls WHERE operation='recherche_carte_vitale'")
    params = json.loads(call["params"])
    assert (params["nir_od"], params["birth_date"], params["rank"]) == ("284056322090544", "20170308", 2)


def test_an_unreadable_card_is_said_on_the_file(app: Flask, doctor: FlaskClient) -> None:
    pid = app.config["RECORDS"].search(name="FAMILE")[0].id
    resp = post_card(doctor, pid, "pas une carte")
    assert resp.status_code == 302
    page = html.unescape(doctor.get(LGC + resp.headers["Location"].split("#")[0]).get_data(as_text=True))
    assert "Carte Vitale illisible" in page
