"""The endpoint a service call uses: the configuration's, then what was set in the LGC itself — the authentication
mode chosen for the teleservices (service_auth.py) and the MSSanté servers read by auto-configuration
(mailbox_setup.py). One place, for the call runner and the DMP outbox alike."""

from __future__ import annotations

from . import mailbox_setup, service_auth
from .db import Database
from .services.context import Endpoint


def effective(db: Database, service: str, endpoint: Endpoint) -> Endpoint:
    return mailbox_setup.endpoint_for(db, service, service_auth.endpoint_for(db, service, endpoint))
