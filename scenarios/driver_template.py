"""Template of a driver for your own web LGC: copy this file out of segur-bench (e.g. `mon_pilote.py` in your
QA repository), fill the methods your scenarios need, and run

    PYTHONPATH=. segur-bench run SC.DMP/CONF.03 --against https://lgc.example.test --driver mon_pilote:PiloteMonLgc

Every method is described, in the user's words, in `scenarios/driver_protocol.py`; the reference LGC's driver
(`scenarios/driver_playwright.py`) is a complete worked example with Playwright (sync API). `segur-bench run`
warns about the methods your class lacks; a step that calls one stops with a message naming the step and the
method. The verdicts do not depend on your driver alone: each step also reads what the simulators received.
"""

from __future__ import annotations

from typing import Any

WAIT_MS = 60_000


class PiloteMonLgc:
    def __init__(self, page: Any, lgc_url: str, sims: Any, rec: Any) -> None:
        # page: the bench's Chromium tab (Playwright), recorded on video; lgc_url: --against; sims: the simulators'
        # control API; rec: the run's recorder (rec.timed("action", "pendant …") times a user action).
        self.page, self.url, self.sims, self.rec = page, lgc_url.rstrip("/"), sims, rec

    # -- session ---------------------------------------------------------------------------------------------
    def login(self, national_id: str) -> None:
        self.page.goto(self.url + "/")
        raise NotImplementedError("à écrire : connexion Pro Santé Connect de votre LGC (bouton, page PSC, retour)")

    # -- patient file ----------------------------------------------------------------------------------------
    def open_patient(self, name: str) -> int:
        raise NotImplementedError("à écrire : rechercher le patient par son nom de naissance et ouvrir son dossier")

    def identity_status(self) -> str:
        raise NotImplementedError("à écrire : lire le statut d'identité affiché (provisoire, recuperee, validee, "
                                  "qualifiee)")

    def wait_identity(self, status: str) -> None:
        raise NotImplementedError("à écrire : attendre que le statut d'identité affiché soit `status`")

    def read_apcv(self, ins: str) -> None:
        payload = self.sims.call("apcv", "POST", "/state", {"present": ins})["state"]["presented"]["payload"]
        raise NotImplementedError(f"à écrire : faire lire à votre LGC le QR code de l'ApCV (contenu : {payload[:20]}…)")

    # Add the other methods of scenarios/driver_protocol.py your scenarios use (record_consent, write_prescription,
    # validate_prescription, wait_dmp_sent…), in the same way.
