"""Drives the reference LGC's French UI in Chromium, in the user's terms (open a file, read the ApCV, write a
prescription…). Scenario steps call these methods; a vendor's LGC is driven by the guided driver instead."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import Error as PlaywrightError

from .runtime import RunRecorder, Sims

WAIT_MS = 60_000


class ReferenceLgcDriver:
    def __init__(self, page: Any, lgc_url: str, sims: Sims, rec: RunRecorder) -> None:
        self.page, self.url, self.sims, self.rec = page, lgc_url, sims, rec
        self.patient_id: int | None = None
        self.prescription_id: int | None = None

    def _submit(self, target: Any) -> None:
        """Click what submits a page form (a selector or a locator) and wait for the page the POST leads to.
        Playwright no longer waits after a click for the navigation it starts, and wait_for_load_state() returns
        at once on the page still shown: a next click or goto could then abort the POST in flight (seen under CI
        load: the 'invisible' click of SC.DMP/UX.51 lost to the 'envoyer' that followed)."""
        locator = self.page.locator(target).first if isinstance(target, str) else target
        sent: list[Any] = []

        def seen(request: Any) -> None:
            if request.is_navigation_request() and request.method == "POST":
                sent.append(request)

        # A region refreshed by the page's polling (live.js) can replace the form between the click and its
        # submission: the POST is then never sent. Seen in CI on the file's documents. The click is made once more
        # when no POST has left within 5 s (a sent one, however slow, is waited for, never resent).
        with self.page.expect_navigation(timeout=WAIT_MS):
            self.page.on("request", seen)
            try:
                for _attempt in range(3):
                    locator.click()
                    deadline = time.monotonic() + 5
                    while not sent and time.monotonic() < deadline:
                        self.page.wait_for_timeout(100)
                    if sent:
                        break
            finally:
                self.page.remove_listener("request", seen)

    # ------------------------------------------------------------------------------------------ session

    def login(self, national_id: str) -> None:
        page = self.page
        page.goto(self.url + "/patients")
        page.click("#connexion-psc")
        page.check(f"input[name=national_id][value='{national_id}']")
        self._submit("button[name=decision][value=approve]")
        self._after_psc_login()

    def _after_psc_login(self) -> None:
        """First login: link the local account; the information message: acknowledge it; then the patient list."""
        page = self.page
        if "/premiere-connexion" in page.url:
            page.click("#associer button[type=submit]")
            page.wait_for_url("**/information**")
        if "/information" in page.url:
            page.check("#compris")
            page.click("#message-information button[type=submit]")
        page.wait_for_url("**/patients**", timeout=WAIT_MS)

    def login_ciba(self, national_id: str) -> None:
        page = self.page
        page.goto(self.url + "/connexion")
        page.fill("#ciba-identifiant", national_id)
        page.click("#connexion-ciba button[type=submit]")
        page.wait_for_selector("#ciba-attente, .flash.error", timeout=WAIT_MS)

    def ciba_outcome(self) -> str:
        page = self.page
        # the waiting page reloads itself at each poll: wait until it has been left (a reload may be under way at
        # any look, hence the tolerant loop rather than a wait inside the page)
        deadline = time.monotonic() + 3 * WAIT_MS / 1000
        while time.monotonic() < deadline:
            try:
                page.wait_for_load_state()
                if not page.locator("#ciba-attente").count():
                    break
            except PlaywrightError:
                pass
            time.sleep(0.5)
        if page.locator(".flash.error").count():
            return page.locator(".flash.error").first.inner_text()
        self._after_psc_login()
        return "connecte"

    def use_api_psc(self) -> None:
        """On the 'À propos' page, choose the API Pro Santé Connectée for INSi, the DMP and ON; then the patients."""
        page = self.page
        page.goto(self.url + "/a-propos")
        page.check("#choix-authentification input[name=mode][value=api_psc]")
        self._submit("#enregistrer-authentification")
        shown = {row.get_attribute("data-service"): row.get_attribute("data-mode")
                 for row in page.locator("#modes-authentification tr").all()}
        if set(shown.values()) != {"api_psc"}:
            raise AssertionError(f"le LGC n'indique pas l'API Pro Santé Connectée pour chaque service : {shown}")
        page.goto(self.url + "/patients")

    def account(self) -> str:
        if not self.page.locator("#compte-local").count():
            self.page.goto(self.url + "/patients")
        return self.page.locator("#compte-local").inner_text()

    def search_directory(self, family: str, given: str = "", city: str = "") -> str:
        page = self.page
        page.goto(self.url + "/annuaire")
        before = page.locator("#resultats-annuaire [data-call]").first.get_attribute("data-call") \
            if page.locator("#resultats-annuaire [data-call]").count() else None
        form = page.locator("#recherche-annuaire")
        for name, value in (("nom", family), ("prenom", given), ("ville", city)):
            form.locator(f"input[name={name}]").fill(value)
        form.locator("button[type=submit]").click()
        # this search's own call element (not the previous one), finished; then its results, once rendered
        done = "#resultats-annuaire [data-service=annuaire]:is([data-status=reussi], [data-status=echec])"
        page.wait_for_selector(done + (f":not([data-call='{before}'])" if before else ""), timeout=WAIT_MS)
        if page.locator(done).first.get_attribute("data-status") == "reussi":
            page.wait_for_selector("#resultats-annuaire p:has-text('trouvé')", timeout=WAIT_MS)
        return page.locator("#resultats-annuaire").inner_text()

    def configure_mailbox(self) -> str:
        page = self.page
        page.goto(self.url + "/messagerie")
        self._submit("#configurer-boite")
        self.wait_call_done("mss", operation="configuration", within="#parametres-boite")
        page.goto(self.url + "/messagerie")
        return page.locator("#parametres-boite p").first.inner_text()

    def read_inbox(self) -> list[dict]:
        page = self.page
        page.goto(self.url + "/messagerie")
        mine = "#boite [data-service=mss][data-operation=releve]"
        before = page.locator(mine).first.get_attribute("data-call") if page.locator(mine).count() else None
        page.click("#relever")
        done = mine + ":is([data-status=reussi], [data-status=echec])"
        page.wait_for_selector(done + (f":not([data-call='{before}'])" if before else ""), timeout=WAIT_MS)
        page.wait_for_selector("#messages", timeout=WAIT_MS)
        out = []
        for row in page.locator("#messages tbody tr[data-uid]").all():
            cells = row.locator("td").all_inner_texts()
            origin = row.get_attribute("class") or ""
            out.append({"expediteur": cells[1].replace("patient", "").replace("professionnel", "").strip(),
                        "origine": "patient" if "patient" in origin.split() else "professionnel",
                        "objet": cells[2].strip(),
                        "marques": [m.get_attribute("data-marker") for m in row.locator("[data-marker]").all()],
                        "integrable": bool(row.locator("[data-action=integrer]").count())})
        return out

    def integrate_from_inbox(self, subject: str) -> str:
        page = self.page
        mine = "#boite [data-service=mss][data-operation=integration]"
        before = page.locator(mine).first.get_attribute("data-call") if page.locator(mine).count() else None
        page.locator("#messages tbody tr", has_text=subject).first.locator("[data-action=integrer]").click()
        done = mine + ":is([data-status=reussi], [data-status=echec])"
        page.wait_for_selector(done + (f":not([data-call='{before}'])" if before else ""), timeout=WAIT_MS)
        return page.locator(mine).first.get_attribute("data-status") or ""

    # ---------------------------------------------------------------------------------------- patients

    def open_patient(self, name: str) -> int:
        page = self.page
        page.goto(f"{self.url}/patients?nom={name}")
        page.locator("#liste-patients a", has_text=name).first.click()
        page.wait_for_selector("#statut-identite")
        self.patient_id = int(re.search(r"/patients/(\d+)", page.url).group(1))
        return self.patient_id

    def local_documents(self) -> str:
        return self.page.locator("#documents-locaux").inner_text()

    def send_local_document(self, title: str) -> str:
        """Ask for a document of the record to be sent to the DMP by hand; returns what the LGC answers."""
        if not self.page.locator("#documents-locaux").count():
            self.page.goto(f"{self.url}/patients/{self.patient_id}")
        button = self.page.locator("#documents-locaux tr", has_text=title).locator("button[data-action=envoyer-dmp]")
        if not button.count():
            return "Aucun bouton d'envoi au DMP pour ce document"
        self._submit(button.first)
        return " ".join(self.page.locator(".flash").all_inner_texts())

    def local_document_markers(self, title: str, wait_for: str = "") -> list[str]:
        """The markers of a document of the record (importe-dmp, envoye-dmp, recu-mss), once `wait_for` shows."""
        row = self.page.locator("#documents-locaux tr", has_text=title)
        if wait_for:
            row.locator(f"[data-marker={wait_for}]").first.wait_for(timeout=WAIT_MS)
        return [m.get_attribute("data-marker") for m in row.first.locator("[data-marker]").all()]

    def ins_shown(self, wait_for: str = "") -> dict:
        page = self.page
        if wait_for:  # the identity panel refreshes itself once the INSi call has been applied
            page.wait_for_selector(f"#identite #ins[data-matricule='{wait_for}']", timeout=WAIT_MS)
        return {"ins": page.locator("#identite #ins").get_attribute("data-matricule") or "",
                "precedents": [li.get_attribute("data-matricule")
                               for li in page.locator("#identite #historique-ins li").all()],
                "statut": self.identity_status()}

    def read_carte_vitale(self, patient: str) -> None:
        """The bench has no card reader: its image of the test card (the ApCV simulator's control API) is what the
        LGC reads."""
        import json

        image = self.sims.call("apcv", "GET", f"/carte-vitale/{patient}")
        self.page.fill("#lecture-carte-vitale textarea[name=image]", json.dumps(image, ensure_ascii=False))
        self._submit("#lire-carte-vitale")
        if self.page.locator("#beneficiaires-carte").count():
            raise AssertionError("le LGC demande de choisir le bénéficiaire : "
                                 + self.page.locator("#choix-motif").inner_text())

    def accept_insi(self) -> None:
        self._submit("#accepter-insi")

    def write_child_certificate(self, kind: str, exam_date: str, weight_kg: float, height_cm: float,
                                head_cm: float) -> None:
        form = "#nouveau-certificat"
        self.page.select_option(f"{form} select[name=type]", kind)
        self.page.fill(f"{form} input[name=date_examen]", exam_date)
        for name, value in (("poids_kg", weight_kg), ("taille_cm", height_cm), ("perimetre_cm", head_cm)):
            self.page.fill(f"{form} input[name={name}]", f"{value:g}")
        self._submit("#enregistrer-certificat")

    def validate_child_certificate(self) -> str:
        self._submit("#liste-certificats .valider-certificat")
        return self.wait_call_done("mss", operation="envoi_cse", within="#certificats")

    def query_insi(self) -> str:
        self._submit("#relancer-insi")
        return self.wait_call_done("insi", within="#identite")

    def identity_status(self) -> str:
        return self.page.locator("#statut-identite").get_attribute("data-status")

    def read_apcv(self, ins: str, payload: str | None = None) -> None:
        """The patient shows the Appli carte Vitale; the bench hands the QR code content the LGC scans."""
        if payload is None:
            payload = self.sims.call("apcv", "POST", "/state", {"present": ins})["state"]["presented"]["payload"]
        self.page.fill("#lecture-apcv textarea[name=payload]", payload)
        self._submit("#lire-apcv")

    def wait_identity(self, status: str) -> None:
        self.page.wait_for_selector(f"#statut-identite[data-status={status}]", timeout=WAIT_MS)

    # ------------------------------------------------------------------------------------ status elements

    def watch_call(self, service: str, *, operation: str | None = None, within: str = "", probe: bool = True,
                   during: str = "") -> list[str]:
        """Status transitions of the service's element: must show *en cours*, then *réussi*. While in flight, the
        UI is used in another tab and each action's response time recorded."""
        sel = f"{within} [data-service={service}]" + (f"[data-operation={operation}]" if operation else "")
        seen: list[str] = []
        self.page.wait_for_selector(f"{sel}[data-status=en_cours]", timeout=WAIT_MS)
        seen.append("en_cours")
        if probe:
            self.probe_responsiveness(during or f"{service} en cours")
        self.page.wait_for_selector(f"{sel}[data-status=reussi], {sel}[data-status=echec]", timeout=WAIT_MS)
        seen.append(self.page.locator(sel).first.get_attribute("data-status"))
        return seen

    def wait_call_done(self, service: str, *, operation: str | None = None, within: str = "") -> str:
        sel = f"{within} [data-service={service}]" + (f"[data-operation={operation}]" if operation else "")
        self.page.wait_for_selector(f"{sel}[data-status=reussi], {sel}[data-status=echec]", timeout=WAIT_MS)
        return self.page.locator(sel).first.get_attribute("data-status")

    def identity_panel(self) -> str:
        return self.page.locator("#identite").inner_text()

    def wait_queued_with_reason(self) -> str:
        # The text of the element that matched, read at once: the automatic retry may already have turned the
        # send into "envoi en cours" by the time a second look is taken.
        shown = self.page.wait_for_selector("#ordonnance [data-outbox][data-state=a_envoyer]:has(.motif)",
                                            timeout=WAIT_MS)
        return shown.inner_text() if shown is not None else ""

    def wait_dmp_icon(self, state: str) -> None:
        self.page.wait_for_selector(f"#icone-dmp[data-dmp={state}]", timeout=WAIT_MS)

    def call_status(self, service: str, operation: str | None = None, within: str = "") -> str | None:
        sel = f"{within} [data-service={service}]" + (f"[data-operation={operation}]" if operation else "")
        loc = self.page.locator(sel)
        return loc.first.get_attribute("data-status") if loc.count() else None

    def probe_responsiveness(self, during: str) -> None:
        """Other actions while a call is in flight: open the list, search, open another file — in a second tab."""
        other = self.page.context.new_page()
        try:
            with self.rec.timed("ouvrir la liste des patients", during):
                other.goto(self.url + "/patients")
            with self.rec.timed("rechercher un patient", during):
                other.goto(self.url + "/patients?nom=NESSI")
            with self.rec.timed("ouvrir un autre dossier", during):
                other.locator("#liste-patients a", has_text="NESSI").first.click()
                other.wait_for_selector("#statut-identite")
            t0 = time.perf_counter()
            other.fill("#lecture-apcv textarea[name=payload]", "saisie pendant l'appel")
            self.rec.action("saisir du texte", (time.perf_counter() - t0) * 1000, during)
        finally:
            other.close()

    # ------------------------------------------------------------------------------------ prescriptions

    def write_prescription(self, lines: list[tuple[str, str, str]], *, mss: bool = True, delay_s: float = 3) -> int:
        page = self.page
        page.goto(f"{self.url}/patients/{self.patient_id}/ordonnances/nouvelle")
        for i, (label, dosage, duration) in enumerate(lines):
            page.fill(f"input[name=produit_{i}]", label)
            page.fill(f"input[name=posologie_{i}]", dosage)
            page.fill(f"input[name=duree_{i}]", duration)
        page.fill("input[name=delai]", f"{delay_s:g}")
        if not mss:
            page.uncheck("input[name=mss]")
        page.click("#enregistrer-ordonnance")
        page.wait_for_selector("#valider-ordonnance")
        self.prescription_id = int(re.search(r"/ordonnances/(\d+)", page.url).group(1))
        return self.prescription_id

    def validate_prescription(self) -> None:
        self._submit("#valider-ordonnance")

    def open_prescription(self) -> None:
        """Back to the prescription written last (its sends, their states)."""
        self.page.goto(f"{self.url}/ordonnances/{self.prescription_id}")

    def prescription_error(self) -> str:
        """Why the prescription was not sent everywhere (shown once validation has run its course)."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            loc = self.page.locator("#erreur-ordonnance")
            if loc.count():
                return loc.inner_text()
            time.sleep(1)
            self.page.reload()
        return ""

    def on_number(self) -> str | None:
        self.page.wait_for_selector("#numero-on, #sans-qr", timeout=WAIT_MS)
        loc = self.page.locator("#numero-on strong")
        return loc.inner_text() if loc.count() else None

    def wait_dmp_sent(self) -> str:
        self.page.wait_for_selector("#ordonnance [data-outbox][data-state=envoye], "
                                    "#ordonnance [data-outbox][data-state=echec]", timeout=WAIT_MS)
        return self.page.locator("#ordonnance [data-outbox]").get_attribute("data-state")

    def _outbox_state(self) -> str | None:
        loc = self.page.locator("#ordonnance [data-outbox]")
        return loc.get_attribute("data-state") if loc.count() else None

    def wait_outbox_state(self, *states: str) -> str | None:
        """The prescription's DMP send once it is in one of `states` (None if it never gets there)."""
        sel = ", ".join(f"#ordonnance [data-outbox][data-state={s}]" for s in states)
        try:
            self.page.wait_for_selector(sel, timeout=WAIT_MS)
        except Exception:
            return self._outbox_state()
        return self._outbox_state()

    def wait_outbox(self, state: str) -> None:
        self.page.wait_for_selector(f"#ordonnance [data-outbox][data-state={state}]", timeout=WAIT_MS)

    def outbox_action(self, action: str) -> None:
        """One click on the prescription's DMP send: suspendre, reprendre, envoyer (now), annuler, invisible."""
        if not self.page.locator("#ordonnance [data-outbox]").count():
            self.open_prescription()
        self._submit(f"#ordonnance [data-outbox] button[data-action={action}]")

    def prescription_pdf(self) -> bytes:
        href = self.page.locator("#ouvrir-ordonnance").get_attribute("href")
        resp = self.page.request.get(self.url + href.rstrip("/") + "/pdf")
        return resp.body()

    def prescription_has_qr(self) -> tuple[bool, str]:
        """The printed prescription (PDF/A) carries the QR code."""
        pdf = self.prescription_pdf()
        ok = pdf.startswith(b"%PDF") and b"/Image" in pdf and b"pdfaid" in pdf
        return ok, f"PDF/A de {len(pdf)} octets avec image du QR code" if ok else f"PDF de {len(pdf)} octets"

    def without_qr_reason(self) -> str:
        return self.page.locator("#sans-qr").inner_text()

    # -------------------------------------------------------------------------------------------- DMP

    def dica(self, expect: dict[str, tuple[str, str]] | None = None) -> dict[str, tuple[str, str]]:
        """The DICA checklist as shown: key (D, I, C, A) -> (ok/ko, text with the cause)."""
        out = {}
        for li in self.page.locator("#dica-liste li").all():
            out[li.get_attribute("data-key")] = (li.get_attribute("class"), li.inner_text())
        return out

    def show_dica(self) -> None:
        self.page.hover("#icone-dmp")

    def dmp_icon(self) -> str:
        return self.page.locator("#icone-dmp").get_attribute("data-dmp")

    def record_consent(self, *, consultation: bool = True, opposition: bool = False,
                       emergency_reason: str = "") -> None:
        """The patient's answers for this care episode: consent to consultation, objection to feeding, or an
        emergency access (bris de glace) with its reason."""
        form = "#formulaire-consentement"
        if not self.page.locator(form).count():  # e.g. on a prescription: the consent lives in the patient file
            self.page.goto(f"{self.url}/patients/{self.patient_id}")
        self.page.set_checked(f"{form} input[name=consultation]", consultation)
        self.page.set_checked(f"{form} input[name=opposition]", opposition)
        self.page.set_checked(f"{form} input[name=bris_de_glace]", bool(emergency_reason))
        self.page.fill(f"{form} input[name=motif]", emergency_reason)
        self._submit("#enregistrer-consentement")

    def feeding_status(self) -> str:
        """What the file says of feeding the DMP: "possible: …" or "impossible: <why>"."""
        loc = self.page.locator("#alimentation-dmp")
        return f"{loc.get_attribute('data-feeding')}: {loc.inner_text()}"

    def consent_traces(self, expect: list[dict] | None = None) -> list[dict]:
        """The consent records traced in the file (user, date, answers), oldest first."""
        import json

        self.page.goto(f"{self.url}/patients/{self.patient_id}/traces")
        out = []
        for row in self.page.locator("#traces tbody tr").all():
            cells = row.locator("td").all_inner_texts()
            if len(cells) == 4 and cells[2] == "consentement_dmp":
                detail = json.loads(cells[3])
                out.append({"consultation": detail.get("consentement_consultation"),
                            "opposition": detail.get("opposition_alimentation"),
                            "bris_de_glace": detail.get("bris_de_glace") or "", "user": cells[1], "at": cells[0]})
        self.page.goto(f"{self.url}/patients/{self.patient_id}")
        return list(reversed(out))

    def identity_traces(self) -> list[dict]:
        import json

        identity_ops = {"creation", "modification_traits", "attributs", "ins_recuperee", "ins_remplacee", "validation",
                        "insi_recherche", "insi_echec", "apcv_echec"}
        self.page.goto(f"{self.url}/patients/{self.patient_id}/traces")
        out = []
        for row in self.page.locator("#traces tbody tr").all():
            cells = row.locator("td").all_inner_texts()
            if len(cells) == 4 and cells[2] in identity_ops:
                out.append({"at": cells[0], "user": cells[1], "operation": cells[2], "detail": json.loads(cells[3])})
        self.page.goto(f"{self.url}/patients/{self.patient_id}")
        return list(reversed(out))  # the page shows the newest first

    def dmp_access_traces(self, expect: list[str] | None = None) -> list[dict]:
        """The file's traces of access to DMP documents, as the LGC exports them (CSV): date, user, documents."""
        import csv
        import io
        import json

        resp = self.page.request.get(f"{self.url}/patients/{self.patient_id}/traces.csv?operation=integration_dmp")
        text = resp.body().decode("utf-8-sig")
        rows = list(csv.reader(io.StringIO(text), delimiter=";"))
        return [{"at": r[0], "user": r[1], "documents": [d["identifiant"] for d in json.loads(r[3])["documents"]]}
                for r in rows[1:] if len(r) == 4]

    def refresh_dmp_documents(self) -> str:
        """Ask for the DMP's documents again (the DMP page's refresh); returns what the LGC answers."""
        self.page.goto(f"{self.url}/patients/{self.patient_id}/dmp")
        self._submit("#actualiser-dmp")
        flashes = self.page.locator(".flash")
        return " ".join(flashes.all_inner_texts()) if flashes.count() else ""

    def _dmp_list(self, refresh: bool) -> None:
        self.page.goto(f"{self.url}/patients/{self.patient_id}/dmp")
        if refresh:
            consult = "#dmp-liste [data-operation=consultation]"
            shown = self.page.locator(consult)
            # A consultation still running is the one to wait for; an ended one is the one to see replaced.
            before = shown.first.get_attribute("data-call") \
                if shown.count() and shown.first.get_attribute("data-status") != "en_cours" else ""
            self._submit("#actualiser-dmp")
            # The rows on the page are the previous list until this refresh's ITI-18 has answered: wait for it
            # (read earlier, a document just made visible by the DMP still showed "invisible").
            done = ", ".join(f'{consult}[data-status={s}]:not([data-call="{before}"])' for s in ("reussi", "echec"))
            self.page.wait_for_selector(done, timeout=WAIT_MS)
            self.wait_call_done("dmp", operation="consultation", within="#dmp-liste")

    def _dmp_row(self, title: str) -> Any:
        return self.page.locator("#documents-dmp tbody tr", has_text=title)

    def _click_in_dmp_row(self, title: str, button_class: str, operation: str) -> str:
        """In the DMP's list (refreshed), click the row's button and wait for the call it starts; its status."""
        self._dmp_list(refresh=True)
        button = self._dmp_row(title).locator(f".{button_class}").first
        button.wait_for(timeout=WAIT_MS)
        self._submit(button)
        return self.wait_call_done("dmp", operation=operation, within="#dmp-liste")

    def make_visible_in_dmp(self, title: str) -> None:
        """In the DMP's list (refreshed), one click makes the document visible to the patient (ITI-57)."""
        self._click_in_dmp_row(title, "rendre-visible", "visibilite")

    def integrate_from_dmp(self, titles: list[str]) -> str:
        """In the DMP's list (refreshed), select every document of these titles not yet in the record and integrate
        them in one go (ITI-43); returns what the LGC says of the integration."""
        self._dmp_list(refresh=True)
        for title in titles:
            box = self._dmp_row(title).locator("input[name=entree]").first
            box.wait_for(timeout=WAIT_MS)
            box.check()
        self._submit("#integrer")
        status = self.wait_call_done("dmp", operation="integration", within="#dmp-liste")
        call = self.page.locator("#dmp-liste [data-operation=integration]").first.inner_text()
        notes = " ".join(self.page.locator("#dmp-liste p.muted").all_inner_texts())
        return f"{status}: {call} {notes}".strip()

    def local_document_versions(self, title: str, expect: list[dict] | None = None) -> list[dict]:
        """The documents of the record with this title: version and the warning shown next to each."""
        self.page.goto(f"{self.url}/patients/{self.patient_id}")
        out = []
        for row in self.page.locator("#documents-locaux tbody tr", has_text=title).all():
            warning = row.locator(".avertissement")
            out.append({"version": int(row.get_attribute("data-version") or 1),
                        "warning": warning.first.inner_text() if warning.count() else "",
                        "imported": bool(row.locator("[data-marker=importe-dmp]").count())})
        return sorted(out, key=lambda d: d["version"])

    def delete_in_dmp(self, title: str) -> str:
        """From the DMP's list (refreshed), delete the document: "reussi", or "echec: <the reason shown>"."""
        status = self._click_in_dmp_row(title, "supprimer-dmp", "suppression")
        if status == "reussi":
            return status
        return "echec: " + self.page.locator("#dmp-liste [data-operation=suppression] .motif").first.inner_text()

    def dmp_document_visibility(self, title: str, refresh: bool = True) -> str:
        """"visible" or "invisible" (to the patient) as the DMP list shows the document, or "absent"."""
        self._dmp_list(refresh)
        deadline = time.monotonic() + 10
        while not self._dmp_row(title).count() and time.monotonic() < deadline:
            time.sleep(0.5)  # the list region reloads once the consultation has ended
        row = self._dmp_row(title)
        if not row.count():
            return "absent"
        return "invisible" if row.first.locator("[data-marker=invisible]").count() else "visible"

    def new_documents(self) -> tuple[int, int, str]:
        box = self.page.locator("#nouveaux-documents")
        box.wait_for(timeout=WAIT_MS)
        return int(box.get_attribute("data-total")), int(box.get_attribute("data-invisible")), box.inner_text()

    def insi_comparison(self) -> str:
        return self.page.locator("#comparaison").inner_text()

    def qualify_one_click(self, means: str = "cni") -> None:
        self.page.select_option("#qualifier select[name=moyen]", means)
        self._submit("#bouton-qualifier")
