"""`segur-bench pki …`: the bench PKI from the command line (simulators/core/pki.py does the work)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from simulators.core.pki import CLIENT_KINDS, PROFILES, BenchPki, PkiError, load_certificate

from .config import BenchConfig


def _pki(ctx: click.Context, *, create: bool = True) -> BenchPki:
    config: BenchConfig = ctx.find_root().obj["config"]
    data_dir = ctx.obj.get("pki_data_dir") or config.data_dir
    directory = Path(data_dir) / "pki"
    if not create and not BenchPki(directory).exists():
        raise click.ClickException(f"no bench PKI in {directory} yet: `segur-bench pki init` (or `segur-bench up`) "
                                   "creates it")
    if not BenchPki(directory).exists():
        click.echo(f"creating the bench PKI in {directory} …", err=True)
    try:
        return BenchPki.open(directory)
    except OSError as exc:
        raise click.ClickException(f"cannot use the PKI directory {directory}: {exc}") from None


@click.group()
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="The bench's data directory (default: the settings' data_dir, .segur-bench/data).")
@click.pass_context
def pki(ctx: click.Context, data_dir: Path | None) -> None:
    """The bench PKI: a root and an intermediate CA shaped like IGC-Santé TEST, kept in <data_dir>/pki.

    Give a vendor's LGC the CA chain (`pki ca`) to trust the simulators, and a client certificate
    (`pki issue-client`) for the services that ask for one (INSi in mutual-TLS mode, DMP)."""
    ctx.obj = {**(ctx.obj or {}), "pki_data_dir": data_dir}


@pki.command("init")
@click.pass_context
def pki_init(ctx: click.Context) -> None:
    """Create the PKI when it does not exist yet (idempotent); print where it is."""
    bench_pki = _pki(ctx)
    root = bench_pki.root()
    click.echo(f"bench PKI in {bench_pki.directory}")
    click.echo(f"  root:          {root.subject.rfc4514_string()}")
    click.echo(f"  intermediate:  {bench_pki.ca().subject.rfc4514_string()}")
    click.echo(f"  CA chain:      {bench_pki.chain_path}")
    click.echo(f"  CRL:           {bench_pki.crl_path}")


@pki.command("ca")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="File to write (PEM: intermediate then root; .der/.cer: the root alone, in DER).")
@click.pass_context
def pki_ca(ctx: click.Context, out: Path) -> None:
    """Write the CA chain a vendor installs in the LGC's trust store."""
    from cryptography.hazmat.primitives import serialization

    bench_pki = _pki(ctx)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".der", ".cer"):
        out.write_bytes(bench_pki.root().public_bytes(serialization.Encoding.DER))
        click.echo(f"root CA (DER) written to {out}; also install the intermediate "
                   f"({bench_pki.ca_path}) as an intermediate authority")
    else:
        out.write_bytes(bench_pki.chain_path.read_bytes())
        click.echo(f"CA chain (intermediate + root, PEM) written to {out}")


@pki.command("issue-client")
@click.argument("name")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Directory to write.")
@click.option("--kind", type=click.Choice(CLIENT_KINDS), default="structure", show_default=True,
              help="structure: ORG AUTH_CLI of a practice (DMP); software: the same named INSI-AUTO (INSi "
                   "mutual TLS); person: a professional's authentication certificate, like a CPS.")
@click.option("--cn", default=None, help="Common name (default: NAME; INSI-AUTO for --kind software).")
@click.option("--structure-id", default=None,
              help="OU: identifier type digit + structure id (default 499700366240007, the flagship practice).")
@click.option("--structure-name", default=None, help="O: legal name of the structure.")
@click.option("--national-id", default=None, help="person: the professional's national id (CN).")
@click.option("--days", type=click.IntRange(1, 3650), default=3 * 365, show_default=True, help="Validity.")
@click.option("--password", default=None, help="Password of the .p12 (default: a random one, printed).")
@click.pass_context
def pki_issue_client(ctx: click.Context, name: str, out: Path, kind: str, cn: str | None, structure_id: str | None,
                     structure_name: str | None, national_id: str | None, days: int, password: str | None) -> None:
    """Issue a client certificate: NAME.crt, NAME.key, NAME.p12 (password printed) and ca.pem in --out."""
    bench_pki = _pki(ctx)
    extra = {k: v for k, v in {"structure_id": structure_id, "structure_name": structure_name,
                               "national_id": national_id}.items() if v}
    try:
        bundle = bench_pki.issue_client(name, out, kind=kind, cn=cn, days=days, password=password, **extra)
    except PkiError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{PROFILES[kind].title}: {bundle.cert.subject.rfc4514_string()}")
    click.echo(f"  serial {bundle.cert.serial_number:X}, valid until {bundle.cert.not_valid_after_utc:%Y-%m-%d}")
    for label, path in (("certificate", bundle.crt_path), ("private key", bundle.key_path),
                        ("PKCS#12", bundle.p12_path), ("CA chain", bundle.ca_path)):
        click.echo(f"  {label:<12} {path}")
    click.echo(f"  .p12 password: {bundle.password}")


@pki.command("show")
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--password", default=None, help="Password of a .p12 file.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def pki_show(ctx: click.Context, file: Path, password: str | None, as_json: bool) -> None:
    """What the bench thinks of a certificate (PEM, DER or .p12): trusted? which profile? expiry? revoked?"""
    bench_pki = _pki(ctx, create=False)
    try:
        cert = load_certificate(file.read_bytes(), password)
    except PkiError as exc:
        raise click.ClickException(f"{file}: {exc}") from None
    verdict = bench_pki.verdict(cert)
    if as_json:
        data = {**verdict.__dict__, "not_before": verdict.not_before.isoformat(),
                "not_after": verdict.not_after.isoformat(), "ok": verdict.ok}
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        left = verdict.not_after - dt.datetime.now(dt.UTC)
        click.echo(f"subject:     {verdict.subject}")
        click.echo(f"issuer:      {verdict.issuer}")
        click.echo(f"serial:      {verdict.serial}")
        click.echo(f"SHA-256:     {verdict.fingerprint}")
        click.echo(f"valid:       {verdict.not_before:%Y-%m-%d} → {verdict.not_after:%Y-%m-%d}"
                   + (f" ({left.days} days left)" if left.total_seconds() > 0 else ""))
        profile = PROFILES[verdict.kind].title if verdict.kind else "aucun profil du banc"
        click.echo(f"profile:     {profile}" + (f" — issued as {verdict.issued_as!r}" if verdict.issued_as else ""))
        if verdict.names:
            click.echo(f"names:       {', '.join(verdict.names)}")
        click.echo(f"trusted:     {'yes, by this bench CA' if verdict.trusted else 'no'}")
        for problem in verdict.problems:
            click.echo(f"problem:     {problem}")
        click.echo("verdict:     " + ("accepted by the bench" if verdict.ok else "REFUSED by the bench"))
    sys.exit(0 if verdict.ok else 1)


@pki.command("list")
@click.pass_context
def pki_list(ctx: click.Context) -> None:
    """Every certificate the bench issued, with its state."""
    rows = _pki(ctx, create=False).index()
    if not rows:
        click.echo("no certificate issued yet")
        return
    for r in rows:
        state = f"revoked {r.revoked_at[:10]} ({r.reason})" if r.revoked_at else f"valid until {r.not_after[:10]}"
        click.echo(f"{r.serial:<42} {r.kind:<9} {r.name:<24} {state}  {r.subject}")


@pki.command("revoke")
@click.argument("name_or_serial")
@click.option("--reason", default="unspecified", show_default=True,
              help="RFC 5280 reason (keyCompromise, superseded, cessationOfOperation, …).")
@click.pass_context
def pki_revoke(ctx: click.Context, name_or_serial: str, reason: str) -> None:
    """Revoke certificates (by name or serial): the CRL is re-signed and the simulators refuse them at once."""
    try:
        revoked = _pki(ctx, create=False).revoke(name_or_serial, reason)
    except PkiError as exc:
        raise click.ClickException(str(exc)) from None
    if not revoked:
        click.echo(f"{name_or_serial}: already revoked")
    for r in revoked:
        click.echo(f"revoked {r.serial} ({r.name}, {r.subject})")


@pki.command("crl")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True, help="File to write (PEM).")
@click.pass_context
def pki_crl(ctx: click.Context, out: Path) -> None:
    """Write the current revocation lists (intermediate and root, PEM)."""
    bench_pki = _pki(ctx, create=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bench_pki.crl_path.read_bytes())
    click.echo(f"CRLs written to {out}")
