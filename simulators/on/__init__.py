"""Ordonnance numérique (e-prescription) simulator: SOAP 1.2 format assumed by the bench, QR code."""
