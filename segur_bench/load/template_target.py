"""Template of a vendor's load target: the cabinet profile driving YOUR LGC's API instead of the simulators.

Copy this file next to your own code (e.g. my_lgc_load.py), fill in the five operations with the calls your LGC's
API offers for them, point your LGC at the bench (docs/vendor-guide.md), then:

    MY_LGC_URL=https://lgc.example.test PYTHONPATH=. segur-bench load cabinet --target my_lgc_load:MyLgcTarget \\
        --users 50 --duration 10m --incident dmp-lent@300 --out out/load-my-lgc

Each simulated practitioner gets one instance of the class (`self.practitioner`: a physician of the bench's
personas; your LGC must know them, or map `practitioner.index` to test accounts of your own). The profile calls
`start()` once, then per consultation `search_identity`, `consult_dmp`, `prescribe`, `feed_dmp`, `send_message`
(cabinet.py says how often). Wrap each request in `with self.call("LGC", "what it is"):` — Locust then reports its
time under that name, and a failure (an exception, e.g. from `raise_for_status()`) as a failure; the profile goes on
with the next step. Your LGC calls the national services as it does in production: the bench's simulators answer,
with the incidents you schedule (`--incident NAME@SECONDS`).

Runs in Locust's processes (gevent): use a blocking HTTP client such as httpx or requests, not asyncio.
"""

from __future__ import annotations

import os

import httpx

from segur_bench.load.target import LoadTarget, Patient, Practitioner, Reporter


class MyLgcTarget(LoadTarget):
    def __init__(self, practitioner: Practitioner, report: Reporter) -> None:
        super().__init__(practitioner, report)
        # One client per practitioner: their own cookies / token, their own connections.
        self.http = httpx.Client(base_url=os.environ.get("MY_LGC_URL", "http://127.0.0.1:9000"), timeout=30)

    def start(self) -> None:
        # Log the practitioner in as your LGC does (e.g. your API's token for a test account).
        with self.call("LGC", "connexion"):
            resp = self.http.post("/api/login", json={"user": f"praticien-{self.practitioner.index}"})
            resp.raise_for_status()
            self.http.headers["Authorization"] = f"Bearer {resp.json()['token']}"

    def search_identity(self, patient: Patient) -> None:
        with self.call("LGC", "recherche INSi"):
            self.http.post("/api/identite/recherche-insi", json={
                "nom_naissance": patient.birth_name, "prenoms": list(patient.first_names), "sexe": patient.sex,
                "date_naissance": patient.birth_date.isoformat(), "lieu_naissance": patient.birthplace,
            }).raise_for_status()

    def consult_dmp(self, patient: Patient) -> None:
        with self.call("LGC", "consultation DMP"):
            self.http.get(f"/api/patients/{patient.ins}/dmp/documents").raise_for_status()

    def feed_dmp(self, patient: Patient) -> None:
        with self.call("LGC", "alimentation DMP"):
            self.http.post(f"/api/patients/{patient.ins}/dmp/documents",
                           json={"type": "11488-4", "titre": "CR de consultation"}).raise_for_status()

    def prescribe(self, patient: Patient) -> None:
        with self.call("LGC", "ordonnance numérique"):
            self.http.post(f"/api/patients/{patient.ins}/ordonnances", json={
                "lignes": [{"libelle": "PARACETAMOL 1 G CPR", "posologie": "1 cp 3 fois par jour", "duree_j": 5}],
            }).raise_for_status()

    def send_message(self, patient: Patient) -> None:
        to = (self.practitioner.correspondents or (self.practitioner.mailbox,))[0]
        with self.call("LGC", "envoi MSSanté"):
            self.http.post("/api/messagerie/envoi", json={
                "a": [to], "objet": f"Courrier : {patient.display_name}", "texte": "Cher confrère, …",
            }).raise_for_status()

    def stop(self) -> None:
        self.http.close()
