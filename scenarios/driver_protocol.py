"""The step vocabulary: what a scenario asks of whoever drives the LGC under test.

Every method the steps (`scenarios/steps.py`) call on `run.driver` is declared here, with its types and what it
must do, in the user's words. Three drivers implement it: the reference LGC's Playwright driver
(`driver_playwright.ReferenceLgcDriver`, the worked example), the guided driver (a person at the vendor's LGC) and
any driver a QA team writes for its own LGC (`segur-bench run --driver package.module:Class`, template in
`driver_template.py`). A test keeps this list equal to the steps' calls and the signatures equal to the reference
driver's.

A plug-in driver is built as ``Class(page=page, lgc_url=lgc_url, sims=sims, rec=rec)``: the bench's Chromium page
(Playwright, sync API, already recording the video), the LGC's URL (`--against`), the simulators' control API
(`runtime.Sims`, e.g. to make the Appli carte Vitale present a patient) and the run's recorder (`runtime.RunRecorder`,
to time user actions). Methods that read the screen return what the LGC shows; the steps judge it, together with
what the simulators received. A method a driver lacks, or one that fails, stops the step with a message naming
the step and the method.

Codes used in answers: identity status ``provisoire | recuperee | validee | qualifiee``; call status ``en_cours |
reussi | echec``; DMP icon ``consultable | non-consultable``; outbox state ``differe | suspendu | a_envoyer |
envoi | envoye | echec | annule``; DICA keys ``D`` (DMP accessible), ``I`` (INS qualifiée), ``C`` (consentement),
``A`` (authentification).
"""

from __future__ import annotations

from typing import Protocol


class LgcDriver(Protocol):
    # ------------------------------------------------------------------------------------------ session
    def login(self, national_id: str) -> None:
        """Se connecter au LGC avec Pro Santé Connect sous l'identifiant national donné (première connexion :
        rattacher le compte local, accepter le message d'information)."""

    def login_ciba(self, national_id: str) -> None:
        """Demander à se connecter avec Pro Santé Connect par CIBA (validation sur le téléphone) sous l'identifiant
        national donné ; rend la main dès que le LGC attend la validation."""

    def ciba_outcome(self) -> str:
        """Attendre l'issue de la connexion CIBA : « connecte » une fois la session ouverte (première connexion :
        rattacher le compte local, accepter le message d'information), sinon le message d'échec affiché."""

    def account(self) -> str:
        """Le compte du LGC sous lequel on est connecté, tel que le LGC l'affiche : identifiant du compte local et
        identité Pro Santé Connect qui lui est associée."""

    def use_api_psc(self) -> None:
        """Régler le LGC pour appeler l'INSi, le DMP et l'Ordonnance numérique par l'API Pro Santé Connectée (jeton
        d'API obtenu par échange de jeton auprès de Pro Santé Connect, présenté avec l'assertion du professionnel)."""

    def search_directory(self, family: str, given: str = "", city: str = "") -> str:
        """Chercher un correspondant dans l'annuaire santé du LGC (nom, prénom, ville d'exercice) ; attendre la fin
        de la recherche ; rend le texte des résultats tel qu'affiché (ou l'échec et son motif)."""

    def configure_mailbox(self) -> str:
        """Configurer automatiquement la messagerie MSSanté du LGC (document de configuration de l'opérateur) ;
        rend les serveurs SMTP et IMAP (hôte:port) que le LGC affiche ensuite."""

    def read_inbox(self) -> list[dict]:
        """Relever la messagerie MSSanté du professionnel et lire la liste affichée : une entrée par message,
        {"expediteur": ce qui est affiché, "origine": "patient" | "professionnel", "objet": …, "marques": [
        "deja-integre", "mise-a-jour"…], "integrable": le message propose d'intégrer son document au dossier}."""

    def integrate_from_inbox(self, subject: str) -> str:
        """Depuis la messagerie, intégrer au dossier le document du message de cet objet ; rend reussi ou echec."""

    # ---------------------------------------------------------------------------------- patient, identity
    def open_patient(self, name: str) -> int:
        """Ouvrir le dossier du patient (nom de naissance) ; rend un identifiant du dossier (0 si inconnu)."""

    def ins_shown(self, wait_for: str = "") -> dict:
        """L'INS du dossier ouvert tel qu'affiché, une fois `wait_for` (un INS) affiché comme INS :
        {"ins": INS actuel (matricule et clé, 15 caractères), "precedents": [INS précédents de son historique],
        "statut": recuperee | qualifiee | …}."""

    def read_carte_vitale(self, patient: str) -> None:
        """Dans le dossier ouvert, lire la carte Vitale de test sur laquelle figure ce patient (identifiant de
        persona) et rechercher l'INS avec elle ; rend la main une fois la recherche lancée."""

    def accept_insi(self) -> None:
        """Enregistrer, en un clic, l'identité renvoyée par l'INSi (elle remplace les traits du dossier)."""

    def write_child_certificate(self, kind: str, exam_date: str, weight_kg: float, height_cm: float,
                                head_cm: float) -> None:
        """Dans le dossier ouvert d'un enfant, rédiger le certificat de santé (CS9 ou CS24) de l'examen de cette date
        avec ces mesures, et l'enregistrer sans le valider."""

    def validate_child_certificate(self) -> str:
        """Valider le certificat de santé rédigé ; rend reussi ou echec une fois son envoi à la plateforme CSE
        terminé (tel que le LGC l'affiche)."""

    def query_insi(self) -> str:
        """Dans le dossier ouvert, interroger de nouveau le téléservice INSi ; rend reussi ou echec une fois l'appel
        terminé."""

    def local_documents(self) -> str:
        """Le texte de la liste des documents du dossier local."""

    def identity_status(self) -> str:
        """Le statut d'identité affiché sans clic (provisoire, recuperee, validee, qualifiee)."""

    def read_apcv(self, ins: str) -> None:
        """Lire l'Appli carte Vitale que présente le patient d'INS `ins` (QR code ; le contenu est donné par le
        simulateur ApCV : ``sims.call("apcv", "POST", "/state", {"present": ins})``)."""

    def wait_identity(self, status: str) -> None:
        """Attendre que le dossier affiche ce statut d'identité (échoue au-delà d'une minute)."""

    def identity_panel(self) -> str:
        """Le texte du panneau d'identité (notes du LGC, ex. relance automatique avec le COG)."""

    def insi_comparison(self) -> str:
        """Le texte de la comparaison traits du dossier / identité renvoyée par INSi (matricule compris)."""

    def qualify_one_click(self, means: str = "cni") -> None:
        """Qualifier l'identité en un clic, la pièce d'identité contrôlée étant `means` (cni, passeport…)."""

    # ----------------------------------------------------------------------------------- service calls
    def watch_call(self, service: str, *, operation: str | None = None, within: str = "", probe: bool = True,
                   during: str = "") -> list[str]:
        """Observer l'état de l'appel au service : rend la suite des états vus (attendu : en_cours puis reussi).
        Avec `probe`, utiliser le LGC pendant l'appel (autre dossier, recherche) et chronométrer ces actions dans
        `rec` (``rec.timed(nom, during)``)."""

    def wait_call_done(self, service: str, *, operation: str | None = None, within: str = "") -> str:
        """Attendre la fin de l'appel au service (et à l'opération) ; rend reussi ou echec."""

    # ------------------------------------------------------------------------------------- prescriptions
    def write_prescription(self, lines: list[tuple[str, str, str]], *, mss: bool = True, delay_s: float = 3) -> int:
        """Rédiger une ordonnance de produits de santé (produit, posologie, durée en jours par ligne), envoi au
        patient par MSSanté ou non, envoi au DMP différé de `delay_s` secondes ; l'enregistrer sans la valider."""

    def validate_prescription(self) -> None:
        """Valider l'ordonnance rédigée (envois : Ordonnance numérique, DMP, MSSanté)."""

    def open_prescription(self) -> None:
        """Revenir à l'ordonnance rédigée en dernier (état de ses envois)."""

    def prescription_error(self) -> str:
        """Pourquoi l'ordonnance n'est pas partie partout (ex. « DMP non alimenté : … »), une fois la validation
        faite ; vide s'il n'y a rien."""

    def on_number(self) -> str | None:
        """Le numéro d'ordonnance numérique affiché, ou None."""

    def prescription_has_qr(self) -> tuple[bool, str]:
        """L'ordonnance imprimée porte-t-elle le QR code ? (oui/non, détail)."""

    def without_qr_reason(self) -> str:
        """Le texte qui explique que l'ordonnance part sans QR code, et pourquoi."""

    # ----------------------------------------------------------------------------------- DMP feeding
    def wait_dmp_sent(self) -> str:
        """Attendre que l'envoi de l'ordonnance au DMP aboutisse ; rend envoye ou echec."""

    def wait_outbox_state(self, *states: str) -> str | None:
        """Attendre que l'envoi de l'ordonnance au DMP soit dans l'un de ces états ; rend l'état affiché."""

    def wait_queued_with_reason(self) -> str:
        """Attendre l'envoi en attente avec son motif (DMP injoignable) ; rend le texte affiché."""

    def outbox_action(self, action: str) -> None:
        """Un clic sur l'envoi de l'ordonnance au DMP : suspendre, reprendre, envoyer (maintenant), annuler,
        invisible (rendre le document invisible au patient avant l'envoi)."""

    def send_local_document(self, title: str) -> str:
        """Demander l'envoi au DMP d'un document du dossier (document historique) ; rend la réponse du LGC."""

    def local_document_markers(self, title: str, wait_for: str = "") -> list[str]:
        """Les marqueurs du document du dossier (importe-dmp, envoye-dmp, recu-mss), après avoir attendu
        `wait_for` s'il est donné."""

    def local_document_versions(self, title: str, expect: list[dict] | None = None) -> list[dict]:
        """Les documents du dossier portant ce titre : ``{"version": int, "warning": str, "imported": bool}`` par
        version (l'avertissement affiché à côté). `expect` ne sert qu'au pilote guidé (ce qu'on demande à
        l'opérateur de confirmer)."""

    # --------------------------------------------------------------------------------- DMP access, DICA
    def dica(self, expect: dict[str, tuple[str, str]] | None = None) -> dict[str, tuple[str, str]]:
        """La liste DICA affichée : clé (D, I, C, A) → (ok ou ko, texte avec la cause)."""

    def show_dica(self) -> None:
        """Faire apparaître la liste DICA (survol ou clic de l'icône DMP)."""

    def dmp_icon(self) -> str:
        """L'icône DMP affichée sans clic : consultable ou non-consultable."""

    def wait_dmp_icon(self, state: str) -> None:
        """Attendre que l'icône DMP indique cet état."""

    def record_consent(self, *, consultation: bool = True, opposition: bool = False,
                       emergency_reason: str = "") -> None:
        """Enregistrer les réponses du patient pour l'épisode de soins : consentement à la consultation,
        opposition à l'alimentation, ou accès en urgence (bris de glace) avec son motif."""

    def feeding_status(self) -> str:
        """Ce que le dossier dit de l'alimentation du DMP : « possible: … » ou « impossible: <cause> »."""

    def consent_traces(self, expect: list[dict] | None = None) -> list[dict]:
        """Les recueils de consentement tracés dans le dossier, du plus ancien au plus récent :
        ``{"consultation", "opposition", "bris_de_glace", "user", "at"}``."""

    def identity_traces(self) -> list[dict]:
        """Les traces des opérations d'identité du dossier ouvert (recherche INSi, INS récupérée, validation…), les
        plus anciennes d'abord : {"at", "user", "operation", "detail": {…}}."""

    def dmp_access_traces(self, expect: list[str] | None = None) -> list[dict]:
        """Les traces d'accès aux documents du DMP telles que le LGC les exporte : ``{"at", "user",
        "documents": [identifiants uniques]}``."""

    # ------------------------------------------------------------------------------ DMP consultation
    def new_documents(self) -> tuple[int, int, str]:
        """Les nouveaux documents du DMP annoncés sans clic : (total, dont invisibles au patient, texte)."""

    def refresh_dmp_documents(self) -> str:
        """Demander la liste des documents du DMP à jour ; rend ce que répond le LGC (vide si rien à dire)."""

    def integrate_from_dmp(self, titles: list[str]) -> str:
        """Sélectionner ensemble les documents du DMP de ces titres (non encore intégrés) et les intégrer au
        dossier ; rend « reussi: … » ou « echec: … » avec ce que dit le LGC (doublons signalés compris)."""

    def make_visible_in_dmp(self, title: str) -> None:
        """Dans la liste du DMP, rendre visible au patient le document de ce titre (un clic)."""

    def delete_in_dmp(self, title: str) -> str:
        """Depuis la liste du DMP, supprimer le document de ce titre ; rend « reussi » ou « echec: <motif> »."""

    def dmp_document_visibility(self, title: str, refresh: bool = True) -> str:
        """Comment la liste du DMP montre ce document : visible, invisible (au patient) ou absent."""
