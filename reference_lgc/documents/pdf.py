"""The printed ordonnance as a PDF/A document (WeasyPrint).

Variant: **PDF/A-1b** (``pdf_variant="pdf/a-1b"``, PDF 1.4, uncompressed XMP packet carrying
``pdfaid:part="1"`` / ``pdfaid:conformance="B"``), as asked by the CI-SIS for the PDF embedded in a CDA N1
(domain.md §2: "N1, PDF/A-1 and N3 of one document come from the same data"). Fonts: DejaVu Sans, embedded
(subset) by WeasyPrint; no transparency (the QR code is an opaque PNG).
"""

from __future__ import annotations

import base64
import io
from html import escape

import segno

from .model import INS_OIDS, ClinicalNote, Prescription

PDF_VARIANT = "pdf/a-1b"
NO_QR_TEXT = "Ordonnance numérique non enregistrée : pas de QR code"

_CSS = """
@page { size: A4; margin: 15mm 15mm 18mm 15mm;
        @bottom-center { content: "Page " counter(page) " / " counter(pages); font-family: "DejaVu Sans";
                         font-size: 8pt; color: #444; } }
html, body { font-family: "DejaVu Sans"; font-size: 10pt; color: #000; }
.head { display: flex; justify-content: space-between; }
.block { width: 48%; }
.prescriber .name { font-weight: bold; font-size: 12pt; }
.patient { border: 1px solid #000; padding: 3mm; }
.small { font-size: 8.5pt; }
h1 { font-size: 14pt; text-align: center; margin: 6mm 0 3mm 0; }
.date { text-align: right; margin-bottom: 4mm; }
ol.lines { padding-left: 6mm; }
ol.lines li { margin-bottom: 3mm; }
.label { font-weight: bold; }
.ns { font-weight: bold; }
.notes { margin-top: 4mm; font-style: italic; }
.bottom { display: flex; justify-content: space-between; margin-top: 10mm; }
.qr { text-align: center; width: 45mm; }
.qr img { width: 35mm; height: 35mm; }
.qr .on { font-family: "DejaVu Sans Mono"; font-size: 9pt; }
.noqr { font-size: 9pt; width: 80mm; }
.signature { width: 70mm; height: 30mm; border: 1px dashed #000; padding: 2mm; }
"""


def qr_png(payload: str, *, scale: int = 4) -> bytes:
    """The ON QR code as an opaque greyscale PNG (error correction M, quiet zone 4 modules)."""
    buf = io.BytesIO()
    segno.make(payload, error="m", micro=False).save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


def _e(text: str | None) -> str:
    return escape(text or "")


def render_html(p: Prescription, *, qr_payload: str | None, on_number: str | None) -> str:
    a, s, pt = p.author, p.author.structure, p.patient
    address = " ".join(x for x in (s.postal_code, s.city) if x)
    used = ""
    if pt.used_family and pt.used_family != pt.birth_family:
        used += f"<div>Nom utilisé : {_e(pt.used_family)}</div>"
    if pt.used_given and pt.used_given != pt.first_given:
        used += f"<div>Prénom utilisé : {_e(pt.used_given)}</div>"
    lines = []
    for line in p.lines:
        details = [_e(line.dosage)]
        if line.duration_text:
            details.append(f"pendant {_e(line.duration_text)}")
        extra = [f"Quantité : {line.quantity} {_e(line.quantity_unit)}"]
        if line.renewals:
            extra.append(f"À renouveler {line.renewals} fois")
        if line.product:
            extra.append(f"{line.product.system} {_e(line.product.code)}")
        ns = ' <span class="ns">[NON SUBSTITUABLE]</span>' if line.non_substitutable else ""
        lines.append(f'<li><div class="label">{_e(line.label)}{ns}</div><div>{", ".join(details)}</div>'
                     f'<div class="small">{" — ".join(extra)}</div></li>')
    if qr_payload:
        uri = "data:image/png;base64," + base64.b64encode(qr_png(qr_payload)).decode("ascii")
        qr = (f'<div class="qr"><img src="{uri}" alt="QR code de l\'ordonnance numérique"/>'
              f'<div class="on">{_e(on_number)}</div></div>')
    else:
        qr = f'<div class="noqr">{NO_QR_TEXT}</div>'
    notes = f'<div class="notes">{_e(p.notes)}</div>' if p.notes else ""
    return f"""<!DOCTYPE html>
<html lang="fr"><head><meta charset="utf-8"/><title>{_e(p.title)}</title>
<meta name="author" content="{_e(a.given_name)} {_e(a.family_name)}"/>
<style>{_CSS}</style></head><body>
<div class="head">
 <div class="block prescriber">
  <div class="name">Dr {_e(a.given_name)} {_e(a.family_name)}</div>
  <div>{_e(a.speciality_label)}</div>
  <div>RPPS : {_e(a.rpps)}</div>
  <div>{_e(s.name)}</div>
  <div>{_e(s.street)}</div><div>{_e(address)}</div>
  <div>Tél. : {_e(s.phone)}</div>
  <div class="small">Structure : {_e(s.id)}</div>
 </div>
 <div class="block patient">
  <div><b>{_e(pt.birth_family)}</b> {_e(" ".join(pt.birth_given_names))}</div>
  {used}
  <div>{"Né" if pt.sex == "M" else "Née"} le {pt.birth_date:%d/%m/%Y}</div>
  <div>Sexe : {pt.sex}</div>
  <div class="small">INS : {_e(pt.ins)} ({_e(INS_OIDS.get(pt.ins_oid, pt.ins_oid))})</div>
 </div>
</div>
<h1>{_e(p.title)}</h1>
<div class="date">Le {p.created:%d/%m/%Y}</div>
<ol class="lines">{"".join(lines)}</ol>
{notes}
<div class="bottom">{qr}<div class="signature">Signature du prescripteur</div></div>
</body></html>"""


def render_pdf(p: Prescription, *, qr_payload: str | None, on_number: str | None) -> bytes:
    """The ordonnance as PDF/A-1b bytes. With ``qr_payload`` the ON QR code is drawn with ``on_number`` under
    it; without, the sheet says ``NO_QR_TEXT`` (the ON server did not register the prescription)."""
    import weasyprint  # heavy import: only when a PDF is actually rendered

    html = render_html(p, qr_payload=qr_payload, on_number=on_number)
    doc = weasyprint.HTML(string=html, base_url=None)
    return doc.write_pdf(pdf_variant=PDF_VARIANT, pdf_identifier=p.id.hex.encode("ascii"))


def render_note_pdf(note: ClinicalNote) -> bytes:
    """A note of the record as PDF/A-1b: author, patient (INS), date of the act, title and text."""
    import weasyprint

    a, pt = note.author, note.patient
    paragraphs = "".join(f"<p>{_e(line)}</p>" for line in note.text.splitlines() if line.strip())
    html = (f'<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>{_e(note.title)}</title>'
            f"<style>{_CSS}</style></head><body>"
            f'<div class="head"><div class="block prescriber"><div class="name">Dr {_e(a.given_name)} '
            f"{_e(a.family_name)}</div><div>{_e(a.speciality_label)}</div><div>{_e(a.structure.name)}</div>"
            f'<div class="small">N° RPPS {_e(a.rpps)}</div></div>'
            f'<div class="block patient"><div class="name">{_e(pt.birth_family)} {_e(" ".join(pt.birth_given_names))}'
            f'</div><div class="small">Né(e) le {pt.birth_date.strftime("%d/%m/%Y")} — INS {_e(pt.ins)} '
            f"({_e(INS_OIDS.get(pt.ins_oid, pt.ins_oid))})</div></div></div>"
            f'<h1>{_e(note.title)}</h1><div class="date">Acte du {note.created.strftime("%d/%m/%Y")}</div>'
            f"{paragraphs}</body></html>")
    return weasyprint.HTML(string=html, base_url=None).write_pdf(pdf_variant=PDF_VARIANT,
                                                               pdf_identifier=note.id.hex.encode("ascii"))
