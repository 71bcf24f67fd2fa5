"""Reference LGC: a minimal practice-management software, client of the national e-health services.

It never imports simulator code: every endpoint comes from configuration, so it could talk to the real
sandboxes, and a vendor's LGC can replace it unchanged.
"""

__version__ = "0.1.0"
