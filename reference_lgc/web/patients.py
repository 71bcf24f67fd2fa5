"""Patients: list and search, create/edit with the INS rules, the patient file (identity, ApCV, DMP/DICA,
consent, local documents) and identity traces. Every national-service call starts in the background."""

from __future__ import annotations

import io
from typing import Any

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for

from .. import identity as idn
from ..calls import CallRunner
from ..consent import Consent, ConsentError, check_consent_input
from ..operations import CertificateError, Operations
from ..operations.identity_ops import card_beneficiaries_for
from ..records import Patient, Records
from ..services import carte_vitale
from ..services.context import ServiceError

bp = Blueprint("patients", __name__)


def _records() -> Records:
    return current_app.config["RECORDS"]


def _ops() -> Operations:
    return current_app.config["OPERATIONS"]


def _runner() -> CallRunner:
    return current_app.config["RUNNER"]


def user_label() -> str:
    u = g.user
    return f"{u['family_name']} {u['given_name']} ({u['national_id'] or u['login']})" if u else "système"


def _patient(patient_id: int) -> Patient:
    p = _records().get(patient_id)
    if p is None:
        abort(404, description=f"Patient {patient_id} introuvable")
    return p


@bp.get("/")
def home() -> Any:
    return redirect(url_for("patients.index"))


@bp.get("/patients")
def index() -> Any:
    name = request.args.get("nom", "").strip()
    birth = request.args.get("naissance", "").strip()
    ins = request.args.get("ins", "").strip()
    patients = _records().search(name=name, birth_date=birth, ins=ins)
    return render_template("patients.html", patients=patients, nom=name, naissance=birth, ins=ins)


def _form_values(p: Patient | None = None) -> dict[str, Any]:
    if p is None:
        return {"birth_name": "", "first_names": "", "used_name": "", "used_first_name": "", "sex": "",
                "birth_date": "", "birthplace_cog": ""}
    return dict(p.traits.__dict__)


def _cog_choices() -> list[tuple[str, str]]:
    return sorted(((code, f"{label} ({code})") for code, (label, _) in idn.cog_referential().items()),
                  key=lambda x: x[1])


@bp.route("/patients/nouveau", methods=["GET", "POST"])
def create() -> Any:
    values, errors, attrs = _form_values(), {}, {"homonyme": False, "douteuse": False, "fictive": False}
    if request.method == "POST":
        values = {k: request.form.get(k, "") for k in values}
        attrs = _attributes_from_form()
        try:
            traits = idn.validate_traits(values)
            pid = _records().create(traits, user_label=user_label(), **attrs)
        except idn.IdentityError as exc:
            errors = exc.errors
        else:
            flash("Patient créé (identité provisoire).", "ok")
            return redirect(url_for("patients.show", patient_id=pid))
    return render_template("patient_form.html", values=values, errors=errors, patient=None, cogs=_cog_choices(),
                           attrs=attrs), (400 if errors else 200)


def _attributes_from_form() -> dict[str, bool]:
    return {k: request.form.get(k) == "on" for k in ("homonyme", "douteuse", "fictive")}


@bp.route("/patients/<int:patient_id>/modifier", methods=["GET", "POST"])
def edit(patient_id: int) -> Any:
    p = _patient(patient_id)
    values, errors = _form_values(p), {}
    if request.method == "POST":
        values = {k: request.form.get(k, "") for k in values}
        try:
            traits = idn.validate_traits(values)
        except idn.IdentityError as exc:
            errors = exc.errors
        else:
            if _records().update_traits(patient_id, traits, user_label=user_label()):
                flash("Traits modifiés : l'INS a été dissociée, l'identité doit être à nouveau récupérée.", "warn")
            else:
                flash("Identité mise à jour.", "ok")
            return redirect(url_for("patients.show", patient_id=patient_id))
    return render_template("patient_form.html", values=values, errors=errors, patient=p, cogs=_cog_choices()), \
        (400 if errors else 200)


@bp.post("/patients/<int:patient_id>/attributs")
def attributes(patient_id: int) -> Any:
    _patient(patient_id)
    try:
        change = _records().set_attributes(patient_id, user_label=user_label(), **_attributes_from_form())
    except idn.IdentityError as exc:
        flash(" ".join(exc.errors.values()), "error")
    else:
        if change.demoted:
            flash("Attribut posé : l'identité repasse au statut provisoire et l'INS est dissociée.", "warn")
        else:
            flash("Attributs enregistrés.", "ok")
    return redirect(url_for("patients.show", patient_id=patient_id))


@bp.get("/patients/<int:patient_id>")
def show(patient_id: int) -> Any:
    p = _patient(patient_id)
    previous_visit = _records().visit(patient_id)
    # Background calls on opening the file: INSi when the INS is not retrieved (or due for verification), DMP
    # existence/authorisation test when the identity is qualified. The page renders at once with their status.
    _ops().on_open(p, g.user, g.session_row)
    return render_template("patient.html", **_ops().file_context(_patient(patient_id), g.user, g.session_row),
                           previous_visit=previous_visit)


@bp.get("/patients/<int:patient_id>/zone/<name>")
def region(patient_id: int, name: str) -> Any:
    if name not in ("identite", "dmp", "entete", "documents"):
        abort(404)
    return render_template(f"_{name}.html", **_ops().file_context(_patient(patient_id), g.user, g.session_row))


@bp.post("/patients/<int:patient_id>/insi")
def insi(patient_id: int) -> Any:
    p = _patient(patient_id)
    if p.fictive or p.douteuse:
        flash("Identité fictive ou douteuse : pas d'appel au téléservice INSi.", "error")
    else:
        _ops().start_insi(p, g.user, g.session_row, reason="manuel")
    return redirect(url_for("patients.show", patient_id=patient_id, _anchor="identite"))


@bp.post("/patients/<int:patient_id>/insi/<int:call_id>/accepter")
def accept_insi(patient_id: int, call_id: int) -> Any:
    _patient(patient_id)
    try:
        _ops().accept_insi(patient_id, call_id, user_label())
    except ValueError as exc:
        flash(str(exc), "error")
    else:
        flash("Identité INSi enregistrée : INS récupérée.", "ok")
    return redirect(url_for("patients.show", patient_id=patient_id, _anchor="identite"))


@bp.post("/patients/<int:patient_id>/qualifier")
def qualify(patient_id: int) -> Any:
    p = _patient(patient_id)
    means = request.form.get("moyen", "")
    if means not in idn.ID_DOCUMENTS:
        flash("Choisir la pièce d'identité contrôlée (ou la procédure d'exception).", "error")
    elif p.fictive or p.douteuse:
        flash("Identité fictive ou douteuse : elle ne peut pas être validée.", "error")
    else:
        _records().validate(patient_id, idn.ID_DOCUMENTS[means], user_label=user_label())
        now = _patient(patient_id)
        flash(f"{now.status_label} ({idn.ID_DOCUMENTS[means]}).", "ok")
        if now.qualified:
            _ops().start_dmp_check(now, g.user, g.session_row)
    return redirect(url_for("patients.show", patient_id=patient_id, _anchor="identite"))


@bp.post("/patients/<int:patient_id>/certificats")
def certificate_save(patient_id: int) -> Any:
    """A child health certificate (CS9, CS24) kept as a draft: nothing leaves before its validation."""
    p = _patient(patient_id)
    try:
        _ops().save_certificate(p, g.user, request.form.to_dict())
    except CertificateError as exc:
        flash(str(exc), "error")
    else:
        flash("Certificat enregistré (brouillon) : il partira à la plateforme CSE à sa validation.", "ok")
    return redirect(url_for("patients.show", patient_id=patient_id, _anchor="certificats"))


@bp.post("/patients/<int:patient_id>/certificats/<int:doc_id>/valider")
def certificate_validate(patient_id: int, doc_id: int) -> Any:
    """Validation sends the certificate to the CSE platform by MSSanté, by itself (LGC.CSE.12)."""
    p = _patient(patient_id)
    try:
        _ops().validate_certificate(p, doc_id, g.user, g.session_row)
    except CertificateError as exc:
        flash(str(exc), "error")
    return redirect(url_for("patients.show", patient_id=patient_id, _anchor="certificats"))


@bp.post("/patients/<int:patient_id>/carte-vitale")
def carte_vitale_read(patient_id: int) -> Any:
    """Read the carte Vitale (the bench's card image in place of a reader), then search the INS with it."""
    p = _patient(patient_id)
    back = redirect(url_for("patients.show", patient_id=patient_id, _anchor="carte-vitale"))
    if p.fictive or p.douteuse:
        flash("Identité fictive ou douteuse : pas d'appel au téléservice INSi.", "error")
        return back
    image = (request.form.get("image") or "").strip()
    upload = request.files.get("fichier")
    if not image and upload is not None and upload.filename:
        image = upload.read(carte_vitale.MAX_IMAGE_BYTES + 1).decode("utf-8", "replace")
    try:
        card = carte_vitale.read_image(image)
    except ServiceError as exc:
        flash(exc.reason, "error")
        return back
    choice = request.form.get("choix", "")
    if choice.isdigit() and int(choice) < len(card.beneficiaries):
        candidates = [card.beneficiaries[int(choice)]]
    else:
        candidates = card_beneficiaries_for(card, p)
    if len(candidates) != 1:  # nobody born that day on this card, or twins the file does not tell apart
        return render_template("carte_vitale_choix.html", patient=p, card=card, image=image,
                               none_dated=not candidates)
    _ops().start_insi_vitale(p, g.user, g.session_row, card, candidates[0])
    return redirect(url_for("patients.show", patient_id=patient_id, _anchor="identite"))


@bp.post("/patients/<int:patient_id>/apcv")
def apcv(patient_id: int) -> Any:
    p = _patient(patient_id)
    payload = (request.form.get("payload") or "").strip()
    upload = request.files.get("image")
    if not payload and upload is not None and upload.filename:
        payload = _decode_qr(upload.read()) or ""
        if not payload:
            flash("Aucun QR code lisible dans l'image fournie.", "error")
            return redirect(url_for("patients.show", patient_id=patient_id, _anchor="apcv"))
    if not payload:
        flash("Coller le contenu du QR code de l'Appli carte Vitale, ou fournir son image.", "error")
        return redirect(url_for("patients.show", patient_id=patient_id, _anchor="apcv"))
    _ops().start_apcv(p, g.user, g.session_row, payload)
    return redirect(url_for("patients.show", patient_id=patient_id, _anchor="identite"))


def _decode_qr(data: bytes) -> str | None:
    try:
        import zxingcpp
        from PIL import Image

        results = zxingcpp.read_barcodes(Image.open(io.BytesIO(data)))
    except Exception:  # not an image, or no decoder: the caller says so to the user
        return None
    return results[0].text if results else None


@bp.post("/patients/<int:patient_id>/consentement")
def consent(patient_id: int) -> Any:
    p = _patient(patient_id)
    emergency = request.form.get("bris_de_glace") == "on"
    reason = (request.form.get("motif") or "").strip()
    consult = request.form.get("consultation") == "on"
    try:
        check_consent_input(consultation_consent=consult, emergency=emergency, emergency_reason=reason)
    except ConsentError as exc:
        flash(str(exc), "error")
        return redirect(url_for("patients.show", patient_id=patient_id, _anchor="dmp"))
    c = Consent(episode=(request.form.get("episode") or "Épisode de soins en cours").strip(),
                feeding_opposed=request.form.get("opposition") == "on", consultation_consent=consult,
                emergency_reason=reason if emergency else "", user_label=user_label())
    _records().record_consent(patient_id, c)
    flash("Consentement enregistré.", "ok")
    if c.feeding_opposed:
        cancelled, beyond = current_app.config["OUTBOX"].cancel_pending_sends(patient_id)
        if cancelled:
            _records().trace(patient_id, c.user_label, "envois_dmp_annules_opposition",
                             {"envois": [i.id for i in cancelled]})
            flash(f"Opposition du patient : {len(cancelled)} envoi(s) au DMP en attente annulé(s).", "ok")
        if beyond:
            flash(f"{len(beyond)} envoi(s) au DMP déjà en cours n'ont pas pu être arrêtés : s'ils sont parvenus au "
                  "DMP, les supprimer du DMP depuis le dossier.", "error")
    _ops().after_consent(p, g.user, g.session_row)
    return redirect(url_for("patients.show", patient_id=patient_id, _anchor="dmp"))


@bp.get("/patients/<int:patient_id>/traces")
def traces(patient_id: int) -> Any:
    p = _patient(patient_id)
    return render_template("traces.html", patient=p, traces=_records().traces(patient_id))


def spreadsheet_safe(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula (a name or a reason typed by a user may start with = + -
    @ or a tab): such a cell is prefixed with an apostrophe, as OWASP advises for CSV injection."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@bp.get("/patients/<int:patient_id>/traces.csv")
def traces_csv(patient_id: int) -> Any:
    """The file's traces as CSV (SC.DMP/CONF.14: extraction of the traces of access to DMP documents), oldest
    first; `?operation=integration_dmp` keeps one kind. Semicolon-separated, UTF-8 with BOM, as spreadsheets in
    French read it."""
    import csv

    p = _patient(patient_id)
    kind = request.args.get("operation", "")
    rows = [t for t in reversed(_records().traces(patient_id)) if not kind or t["operation"] == kind]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["date (UTC)", "utilisateur", "opération", "détail"])
    for t in rows:
        writer.writerow([spreadsheet_safe(str(v)) for v in (t["at"], t["user_label"], t["operation"], t["detail"])])
    name = f"traces-{p.id}{'-' + kind if kind else ''}.csv"
    return current_app.response_class("\ufeff" + out.getvalue(), mimetype="text/csv",
                                      headers={"Content-Disposition": f'attachment; filename="{name}"'})
