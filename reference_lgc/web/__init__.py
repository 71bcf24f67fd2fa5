"""HTTP routes of the reference LGC, one module per area (auth, patients, calls)."""
