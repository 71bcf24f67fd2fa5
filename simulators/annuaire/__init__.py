"""Annuaire santé simulator: FHIR R4 JSON API (/fhir/v2) built from the personas, MSSanté mailboxes."""
