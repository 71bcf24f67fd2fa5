"""Appli carte Vitale (ApCV) simulator (SOAP 1.2): QR-code authentication of the patient, ApCV context."""
