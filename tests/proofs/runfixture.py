"""A realistic scenario run directory for LGC.DMP/UX.10.01, written by hand as the scenario runner would."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime
from pathlib import Path

from PIL import Image

STARTED = "2026-11-25T09:00:00.250Z"
REQUIREMENT = "LGC.DMP/UX.10.01"

# Single-line bodies, as they travel on the wire: the pretty journal must indent them.
INSI_REQUEST = (
    '<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:ins="http://www.cnamts.fr/webservice"><soap:Header/><soap:Body><ins:RECSANSVITALE>'
    '<ins:NomNaissance>CLÉRICO</ins:NomNaissance><ins:Prenom>Côme</ins:Prenom><ins:Sexe>M</ins:Sexe>'
    "<ins:DateNaissance>1943-11-10</ins:DateNaissance></ins:RECSANSVITALE></soap:Body></soap:Envelope>"
)
INSI_RESPONSE = (
    '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>'
    '<RESULTAT xmlns="http://www.cnamts.fr/webservice"><CR><CodeCR>00</CodeCR><LibelleCR>OK</LibelleCR></CR>'
    "<INDIVIDU><INSACTIF><IdIndividu><NumIdentifiant>1431100950837</NumIdentifiant><Cle>13</Cle></IdIndividu>"
    "</INSACTIF></INDIVIDU></RESULTAT></soap:Body></soap:Envelope>"
)
PDF_BYTES = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
ZIP_BYTES = b"PK\x03\x04" + bytes(range(256)) * 4
LATENCY = {"rule": "latence-3s-insi", "effect": "latency", "call": 1, "description": "latence fixe de 3000 ms",
           "latency_ms": 3000.0, "incident": "latence-3s"}


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _entry(service: str, n: int, operation: str, received: str, duration_ms: float, *, protocol: str = "http",
           method: str = "POST", url: str = "", status: int | None = 200, req_headers: list | None = None,
           req_body: str = "", req_encoding: str | None = None, resp_headers: list | None = None,
           resp_body: str | None = "", resp_encoding: str | None = None, waited_ms: float | None = None,
           faults: list | None = None, outcome: str | None = None, error: str | None = None) -> dict:
    received_at = datetime.fromisoformat(received.replace("Z", "+00:00")).timestamp()
    response = None if resp_body is None else {
        "headers": resp_headers or [], "body": resp_body, "encoding": resp_encoding, "truncated": False,
        "size": len(base64.b64decode(resp_body)) if resp_encoding else len(resp_body.encode())}
    return {
        "id": f"0192f0a0{n:024x}", "service": service, "protocol": protocol, "operation": operation,
        "received_at": received_at, "responded_at": None if response is None else received_at + duration_ms / 1000,
        "received": received, "responded": None, "duration_ms": None if response is None else duration_ms,
        "waited_ms": waited_ms, "method": method, "url": url, "http_version": "1.1",
        "status": status if response is not None else None,
        "request": {"headers": req_headers or [], "body": req_body, "encoding": req_encoding, "truncated": False,
                    "size": len(base64.b64decode(req_body)) if req_encoding else len(req_body.encode())},
        "response": response, "faults": faults or [], "outcome": outcome, "run": "run-ux-10-01",
        "correlation": None, "client": "127.0.0.1", "error": error,
    }


def _mtom() -> bytes:
    xml = ('<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>'
           '<xds:ProvideAndRegisterDocumentSetRequest xmlns:xds="urn:ihe:iti:xds-b:2007"><xds:Document id="doc1">'
           '<xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:doc1@bench"/></xds:Document>'
           "</xds:ProvideAndRegisterDocumentSetRequest></soap:Body></soap:Envelope>")
    return (b"--MIMEBoundary_1\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
            b"Content-ID: <root@bench>\r\n\r\n" + xml.encode() + b"\r\n--MIMEBoundary_1\r\n"
            b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <doc1@bench>\r\n\r\n"
            + PDF_BYTES + b"\r\n--MIMEBoundary_1--\r\n")


def _mail() -> str:
    attachment = base64.encodebytes(ZIP_BYTES).decode()
    return ("From: dr.house@medecin.mssante.fr\r\nTo: 1431100950837@patient.mssante.fr\r\n"
            "Subject: XDM/1.0/DDM+Ordonnance CLERICO Côme 19431110\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            "Bonjour, voici votre ordonnance.\r\n--b1\r\nContent-Type: application/zip; name=IHE_XDM.zip\r\n"
            "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=IHE_XDM.zip\r\n\r\n"
            f"{attachment}--b1--\r\n")


def journals() -> dict[str, list[dict]]:
    soap = [["Content-Type", 'application/soap+xml; charset=utf-8; action="urn:ServiceIdentiteCertifiee:1.0.0'
             ':rechercherInsAvecTraitsIdentite"']]
    mtom = _mtom()
    return {
        "insi": [
            _entry("insi", 1, "rechercherInsAvecTraitsIdentite", "2026-11-25T09:00:05.100Z", 3012.481,
                   url="http://127.0.0.1:8101/lps/ServiceIdentiteCertifiee", req_headers=soap, req_body=INSI_REQUEST,
                   resp_headers=[["Content-Type", "application/soap+xml; charset=utf-8"]], resp_body=INSI_RESPONSE,
                   waited_ms=3000.4, faults=[LATENCY], outcome="00"),
        ],
        "on": [
            _entry("on", 2, "POST /prescriptions", "2026-11-25T09:00:20.000Z", 3005.2,
                   url="http://127.0.0.1:8103/api/v1/prescriptions",
                   req_headers=[["Content-Type", "application/json"]],
                   req_body='{"patient":{"ins":"143110095083713"},"lignes":[{"produit":"PARACETAMOL 1 g"}]}',
                   resp_headers=[["Content-Type", "application/json"]],
                   resp_body='{"id":"ON-2026-0001","statut":"enregistree"}', waited_ms=3000.0, status=201),
            _entry("on", 3, "GET /prescriptions/{id}/qrcode", "2026-11-25T09:00:24.000Z", 3001.0, method="GET",
                   url="http://127.0.0.1:8103/api/v1/prescriptions/ON-2026-0001/qrcode",
                   resp_headers=[["Content-Type", "image/png"]],
                   resp_body=base64.b64encode(png((0, 0, 0), (21, 21))).decode(), resp_encoding="base64",
                   waited_ms=3000.0),
        ],
        "dmp": [
            _entry("dmp", 4, "ProvideAndRegisterDocumentSet-b", "2026-11-25T09:00:30.000Z", 3150.0,
                   url="http://127.0.0.1:8102/si-dmp-server/v2/services/repository",
                   req_headers=[["Content-Type", 'multipart/related; boundary="MIMEBoundary_1"; '
                                 'type="application/xop+xml"; start="<root@bench>"']],
                   req_body=base64.b64encode(mtom).decode(), req_encoding="base64",
                   resp_headers=[["Content-Type", "application/soap+xml"]],
                   resp_body='<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>'
                             '<rs:RegistryResponse xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0" '
                             'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"/>'
                             "</soap:Body></soap:Envelope>",
                   waited_ms=3000.0),
        ],
        "mss": [
            _entry("mss", 5, "SMTP MAIL", "2026-11-25T09:00:40.000Z", 3001.0, protocol="smtp", method="MAIL",
                   req_body="MAIL FROM:<dr.house@medecin.mssante.fr>", resp_body="250 OK", status=250,
                   waited_ms=3000.0),
            _entry("mss", 6, "SMTP DATA", "2026-11-25T09:00:44.000Z", 3003.0, protocol="smtp", method="DATA",
                   req_body=_mail(), resp_body="250 Message accepted", status=250, waited_ms=3000.0),
            _entry("mss", 7, "SMTP QUIT", "2026-11-25T09:00:48.000Z", 0.0, protocol="smtp", method="QUIT",
                   req_body="QUIT", resp_body=None, error="connexion coupée par le client"),
        ],
        "psc": [
            _entry("psc", 8, "POST /token", "2026-11-25T09:00:01.000Z", 12.5,
                   url="http://127.0.0.1:8104/auth/realms/esante-wallet/protocol/openid-connect/token",
                   req_headers=[["Content-Type", "application/x-www-form-urlencoded"]],
                   req_body="grant_type=authorization_code&code=abc&redirect_uri=http%3A%2F%2Flocalhost%2Fcb",
                   resp_headers=[["Content-Type", "application/json"]],
                   resp_body='{"access_token":"eyJ.x.y","token_type":"Bearer","expires_in":120}'),
        ],
    }


STEPS = [
    ("Quand", "le médecin lit l'Appli carte Vitale du patient", "01-lecture-apcv.png", (200, 30, 30)),
    ("Et", "le LGC qualifie l'INS par le téléservice INSi", "02-qualification-ins.png", (30, 200, 30)),
    ("Et", "le médecin rédige l'ordonnance <script>alert('x')</script>", "03-ordonnance.png", (30, 30, 200)),
    ("Et", "l'ordonnance est envoyée au service ON", "04-envoi-on.png", (200, 200, 30)),
    ("Et", "le QR code est obtenu puis l'ordonnance est envoyée au DMP", "05-envoi DMP é.png", (30, 200, 200)),
    ("Alors", "l'ordonnance est envoyée au patient par MSSanté", "06-envoi-mss.png", (200, 30, 200)),
]


def write_run(run_dir: Path, *, video: bool = True, har: bool = True) -> Path:
    (run_dir / "screenshots").mkdir(parents=True)
    (run_dir / "journals").mkdir()
    run = {
        "requirement_id": REQUIREMENT, "scenario": "Consultation complète sous latence de 3 s",
        "feature": "scenarios/features/lgc_dmp_ux_10_01.feature",
        "personas": [{"role": "patient", "name": "CLÉRICO Côme", "ins": "143110095083713"},
                     {"role": "médecin", "name": "Dr HOUSE Grégoire", "ins": None}],
        "started": STARTED, "ended": "2026-11-25T09:01:02.750Z", "bench_version": "0.1.0",
        "lgc": {"name": "LGC de référence", "version": "0.1.0", "url": "http://127.0.0.1:8000"},
        "driver": "playwright", "network_condition": "latence 3 s", "outcome": "passed",
    }
    (run_dir / "run.json").write_text(json.dumps(run, ensure_ascii=False, indent=2), encoding="utf-8")
    steps = []
    for n, (keyword, text, name, color) in enumerate(STEPS, start=1):
        (run_dir / "screenshots" / name).write_bytes(png(color))
        steps.append({"n": n, "keyword": keyword, "text": text, "started": f"2026-11-25T09:00:{n * 8:02d}.000Z",
                      "ended": f"2026-11-25T09:00:{n * 8 + 3:02d}.500Z", "status": "passed",
                      "screenshot": f"screenshots/{name}", "error": None})
    (run_dir / "steps.json").write_text(json.dumps(steps, ensure_ascii=False), encoding="utf-8")
    if video:
        (run_dir / "video").mkdir()
        (run_dir / "video" / "run.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(512))
    for service, entries in journals().items():
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        (run_dir / "journals" / f"{service}.jsonl").write_text(lines, encoding="utf-8")
    if har:
        (run_dir / "network.har").write_text(json.dumps({"log": {"version": "1.2", "creator": {
            "name": "segur-bench", "version": "0.1.0"}, "entries": []}}), encoding="utf-8")
    (run_dir / "timings.json").write_text(json.dumps({
        "actions": [{"action": "ouvrir la liste des patients", "ms": 12.3, "during": "INSi en cours"},
                    {"action": "saisir une ligne d'ordonnance", "ms": 35.0, "during": "ON en cours"}],
        "p50_ms": 12.3, "p95_ms": 35.0, "max_ms": 35.0}), encoding="utf-8")
    (run_dir / "verdicts.json").write_text(json.dumps([
        {"id": "V1", "assertion": "INSi appelé avant ON", "ok": True, "detail": "09:00:05 < 09:00:20",
         "source": "journal insi"},
        {"id": "V2", "assertion": "interface jamais bloquée (p95 < 200 ms)", "ok": True, "detail": "p95 = 35 ms",
         "source": "timings"},
    ], ensure_ascii=False), encoding="utf-8")
    return run_dir
