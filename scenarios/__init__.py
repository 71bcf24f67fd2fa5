"""Scenario suites: the REM's requirement scenarios in French Gherkin (pytest-bdd), driven against the reference
LGC (Playwright) or a vendor's LGC (guided operator), judged from the simulators' journals, each run leaving a
proof bundle (proofs/)."""
