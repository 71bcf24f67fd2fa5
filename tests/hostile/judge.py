"""What every answer of the hostile campaign must satisfy, and the list of what did not.

The rules (issue 16): no 5xx other than a SOAP fault from a SOAP service (the teleservices send every fault with
HTTP 500, the DMP its Receiver faults), no stack trace or Python exception name in anything a client reads, no
hang past the documented deadlines."""

from __future__ import annotations

import builtins
import importlib
import pkgutil
import re
from dataclasses import dataclass, field

import httpx
from lxml import etree

import simulators

SOAP_ENV = "http://www.w3.org/2003/05/soap-envelope"
SOAP_SERVICES = {"insi", "apcv", "on", "dmp"}


def _exception_names() -> set[str]:
    names = {n for n, v in vars(builtins).items()
             if isinstance(v, type) and issubclass(v, BaseException) and n.endswith(("Error", "Exception"))}
    names |= {"XMLSyntaxError", "JSONDecodeError", "BadZipFile", "ParseError", "HTTPException", "StopIteration",
              "KeyboardInterrupt", "SystemExit", "DocumentInvalid", "XPathEvalError", "SerialisationError"}
    for mod in pkgutil.walk_packages(simulators.__path__, "simulators."):
        try:
            module = importlib.import_module(mod.name)
        except Exception:  # a module with optional dependencies: its classes cannot reach the wire either
            continue
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, BaseException) and name.endswith(("Error", "Exception")):
                names.add(name)
    return names


EXCEPTION_NAMES = _exception_names()
_LEAK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+|\b(?:"
                   + "|".join(sorted(map(re.escape, EXCEPTION_NAMES))) + r")\b")


def leaks(text: bytes | str) -> str | None:
    """The first stack-trace line or exception name in `text`, if any."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    match = _LEAK.search(text)
    return match.group(0) if match else None


def is_soap_fault(content: bytes) -> bool:
    if b"Fault" not in content:
        return False
    if content.lstrip()[:2] == b"--":  # an MTOM answer: the fault is in the root part
        content = content[content.find(b"<"):]
    try:
        root = etree.fromstring(content[:content.rfind(b">") + 1],
                                etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False))
    except etree.XMLSyntaxError:
        return False
    return root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault") is not None


TOTALS: dict[str, int] = {}  # cases run per protocol, reported at the end of the campaign


@dataclass
class Campaign:
    """Collects the violations of one protocol's cases; `assert_clean` lists them all at the end."""

    service: str
    cases: int = 0
    violations: list[str] = field(default_factory=list)

    def fail(self, label: str, why: str) -> None:
        self.violations.append(f"{self.service} · {label}: {why}")

    def http(self, label: str, resp: httpx.Response | Exception) -> None:
        self.cases += 1
        if isinstance(resp, httpx.TimeoutException):
            self.fail(label, "no answer within the client's 10 s (hang)")
            return
        if isinstance(resp, Exception):
            self.fail(label, f"connection broken without an answer ({type(resp).__name__})")
            return
        if resp.status_code >= 500:
            documented = self.service in SOAP_SERVICES and resp.status_code == 500 and is_soap_fault(resp.content)
            # 501 (a route the simulator does not implement) and 503 (connection cap) are deliberate answers.
            if not documented and resp.status_code not in (501, 503):
                self.fail(label, f"HTTP {resp.status_code}: {resp.content[:200]!r}")
        self.text(label, resp.content)
        self.text(label, "\n".join(f"{k}: {v}" for k, v in resp.headers.items()))

    def text(self, label: str, data: bytes | str) -> None:
        found = leaks(data)
        if found:
            self.fail(label, f"the client reads {found!r}")

    def assert_clean(self, minimum_cases: int) -> None:
        TOTALS[self.service] = TOTALS.get(self.service, 0) + self.cases
        assert self.cases >= minimum_cases, f"{self.service}: only {self.cases} cases ran"
        assert not self.violations, f"{len(self.violations)} violation(s) in {self.cases} cases:\n" + \
            "\n".join(self.violations[:60])
