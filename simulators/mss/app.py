"""MSSanté simulator: SMTP submission (default 127.0.0.1:2587, STARTTLS; 2465 implicit TLS) and IMAP4rev1
(127.0.0.1:2143, STARTTLS; 2993 implicit TLS) on one mailbox store, plus the HTTP control API (8107).

The SMTP and IMAP listeners start in each worker's event loop (ServiceSpec.startup), with SO_REUSEPORT so
several workers share the ports; mailboxes, messages, findings and channels are in the service's SQLite store.

Control routes (all under ``/_bench/mss``; see README.md):

* ``GET  /ca.pem`` — the bench CA chain to trust (the same as ``GET /_bench/pki/ca.pem``);
* ``GET  /ports`` — where SMTP, IMAP, SMTPS and IMAPS listen (useful with port 0 in tests);
* ``GET  /mailboxes`` and ``GET /mailboxes/<address>?folder=INBOX&raw=1`` — read any mailbox;
* ``GET  /mailboxes/<address>/messages/<uid>`` — one message as ``message/rfc822``;
* ``POST /inject`` — an incoming message (from a professional, or a patient via Mon espace santé; optional
  CDA wrapped by the bench in an IHE_XDM.zip);
* ``GET  /findings`` — every submission with its findings (``?sender=``, ``?errors=1``);
* ``POST /mdn`` — an MDN acknowledgement (or 900–906 error) from a mailbox about a message it received.

``GET /.well-known/autoconfig/mail/config-v1.1.xml`` serves a Thunderbird-style auto-configuration document
(the MSSanté TM3.3C format is not public: the bench's assumption).
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from flask import Flask, Response, jsonify, request

from simulators.core.app import problem_response
from simulators.core.bounded_input import InputError, query_int
from simulators.core.control import SHAPE_ERRORS, BadRequest, json_body, shape_error
from simulators.core.service import DEFAULT_TLS_NAMES, ServiceContext, ServiceSpec, pki_dir_of
from simulators.core.tls import ServerTls
from simulators.personas import load_personas

from .model import OUTCOMES, MssModel, Refused

DEFAULT_PORTS = {"smtp": 2587, "imap": 2143, "smtps": 2465, "imaps": 2993}
MAIL_NAMES = ("mss", "smtp.mss.bench", "imap.mss.bench")  # names the server certificate covers besides the bench's


def _model(ctx: ServiceContext) -> MssModel:
    model = ctx.models.get("mss")
    if model is None:
        model = MssModel(load_personas(), ctx.store, ctx.config.settings, ctx.clock)
        model.migrate()
        ctx.models["mss"] = model
    return model


def _server_tls(ctx: ServiceContext) -> ServerTls:
    """The TLS settings of the mail listeners: the simulator's own when it has a TLS port, else made here (the mail
    ports always speak TLS). Certificates come from the bench PKI."""
    if ctx.tls is None:
        names = [*(ctx.config.tls_names or DEFAULT_TLS_NAMES), *MAIL_NAMES,
                 *(ctx.config.settings.get("tls_names") or ())]
        ctx.tls = ServerTls(pki_dir_of(ctx.config), ctx.name, names, SPEC.client_cert_mode(ctx.config.settings))
    elif ctx.config.settings.get("tls_names"):
        ctx.tls.names = [*ctx.tls.names, *ctx.config.settings["tls_names"], *MAIL_NAMES]
    return ctx.tls


def _port_settings(settings: Any) -> dict[str, int]:
    """The port asked for each mail listener. When the STARTTLS ports are set to 0 (any free port: tests, embedded
    benches), the implicit-TLS ones default to 0 too, so two simulators never share 2465/2993 by SO_REUSEPORT."""
    free = settings.get("smtp_port") == 0 or settings.get("imap_port") == 0
    return {k: int(settings.get(f"{k}_port", 0 if free and k in ("smtps", "imaps") else v))
            for k, v in DEFAULT_PORTS.items()}


def _ports(ctx: ServiceContext) -> dict:
    return ctx.extras.get("mss_ports") or _port_settings(ctx.config.settings)


async def _startup(ctx: ServiceContext) -> None:
    from .imap import ImapFront
    from .smtp import SmtpFront

    model = _model(ctx)
    server_tls = _server_tls(ctx).context()
    s = ctx.config.settings
    host = str(s.get("mail_host", ctx.config.host))
    fronts = {"smtp": SmtpFront(ctx, model, server_tls), "imap": ImapFront(ctx, model, server_tls),
              "smtps": SmtpFront(ctx, model, server_tls, implicit=True),
              "imaps": ImapFront(ctx, model, server_tls, implicit=True)}
    ports: dict[str, int] = {}
    wanted = _port_settings(s)
    started = []
    try:
        for label, front in fronts.items():
            ports[label] = await front.start(host, wanted[label])
            started.append(front)
    except Exception:
        for front in started:
            await front.stop()
        raise
    ctx.extras["mss_fronts"] = tuple(fronts.values())
    ctx.extras["mss_ports"] = ports
    ctx.logger.info("MSSanté on %s: %s", host, ", ".join(f"{k.upper()} {v}" for k, v in ports.items()))


async def _shutdown(ctx: ServiceContext) -> None:
    for front in ctx.extras.pop("mss_fronts", ()):
        await front.stop()


def _autoconfig(ctx: ServiceContext) -> str:
    host = escape(str(ctx.config.settings.get("public_mail_host", ctx.config.host)))
    ports = _ports(ctx)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="mssante.bench">
    <domain>mssante.fr</domain>
    <displayName>MSSanté (banc segur-bench)</displayName>
    <incomingServer type="imap">
      <hostname>{host}</hostname><port>{ports['imaps']}</port><socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username><authentication>OAuth2</authentication>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>{host}</hostname><port>{ports['imap']}</port><socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username><authentication>OAuth2</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>{host}</hostname><port>{ports['smtps']}</port><socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username><authentication>OAuth2</authentication>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>{host}</hostname><port>{ports['smtp']}</port><socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username><authentication>OAuth2</authentication>
    </outgoingServer>
  </emailProvider>
  <oAuth2>
    <issuer>{escape(str(ctx.config.settings.get("psc_issuer", "")))}</issuer>
    <scope>openid scope_all</scope>
  </oAuth2>
</clientConfig>
"""


def _register(app: Flask, ctx: ServiceContext) -> None:
    _model(ctx)

    _server_tls(ctx)

    @app.get("/_bench/mss/ca.pem")
    def ca_pem() -> Response:
        return Response(_server_tls(ctx).pki.chain_path.read_bytes(), content_type="application/x-pem-file")

    @app.get("/_bench/mss/ports")
    def ports() -> Any:
        return jsonify(_ports(ctx))

    @app.get("/_bench/mss/mailboxes")
    def mailboxes() -> Any:
        return jsonify(_model(ctx).state()["mailboxes"])

    @app.get("/_bench/mss/mailboxes/<address>")
    def mailbox(address: str) -> Any:
        model = _model(ctx)
        box = model.mailbox(address)
        if box is None:
            return problem_response(404, f"no mailbox {address}")
        folder = request.args.get("folder", "INBOX")
        raw = request.args.get("raw") in ("1", "true", "yes")
        return jsonify({**box, "folder": folder, "messages": model.messages(address, folder, with_raw=raw)})

    @app.get("/_bench/mss/mailboxes/<address>/messages/<int:uid>")
    def message(address: str, uid: int) -> Any:
        row = _model(ctx).message(address, uid)
        if row is None:
            return problem_response(404, f"no message {uid} in mailbox {address}")
        return Response(bytes(row["raw"]), content_type="message/rfc822")

    @app.post("/_bench/mss/inject")
    def inject() -> Any:
        try:
            return jsonify(_model(ctx).inject(json_body())), 201
        except Refused as exc:
            return problem_response(409, str(exc))
        except BadRequest as exc:
            return problem_response(400, exc.detail)
        except ValueError as exc:
            return problem_response(400, f"bad injection: {exc}")
        except SHAPE_ERRORS as exc:
            return problem_response(400, shape_error(ctx, exc, "the injection").detail)

    @app.get("/_bench/mss/findings")
    def findings() -> Any:
        try:
            limit = query_int(request.args, "limit", 200, maximum=10_000)
        except InputError as exc:
            return problem_response(400, str(exc))
        subs = _model(ctx).submissions(sender=request.args.get("sender"), limit=limit)
        if request.args.get("errors") in ("1", "true", "yes"):
            subs = [s for s in subs if any(f["severity"] == "erreur" for f in s["findings"])]
        return jsonify(subs)

    @app.post("/_bench/mss/mdn")
    def mdn() -> Any:
        try:
            return jsonify(_model(ctx).send_mdn(json_body())), 201
        except BadRequest as exc:
            return problem_response(400, exc.detail)
        except ValueError as exc:
            return problem_response(400, f"bad MDN request: {exc}")
        except SHAPE_ERRORS as exc:
            return problem_response(400, shape_error(ctx, exc, "the MDN request").detail)

    @app.get("/.well-known/autoconfig/mail/config-v1.1.xml")
    @app.get("/mail/config-v1.1.xml")
    def autoconfig() -> Response:
        return Response(_autoconfig(ctx), content_type="application/xml")


def _state_get(ctx: ServiceContext) -> dict:
    return {**_model(ctx).state(), "ports": _ports(ctx)}


def _state_post(ctx: ServiceContext, body: Any) -> dict:
    return _model(ctx).apply(body)


def _reset(ctx: ServiceContext) -> None:
    _model(ctx).reset()


SPEC = ServiceSpec(
    name="mss",
    title="MSSanté",
    default_port=8107,
    register=_register,
    outcomes=OUTCOMES,
    error_format="problem",
    state_get=_state_get,
    state_post=_state_post,
    reset=_reset,
    startup=_startup,
    shutdown=_shutdown,
    description="Messagerie sécurisée de santé : soumission SMTP et accès IMAP (STARTTLS ou TLS implicite) et "
    "jeton Pro Santé Connect (XOAUTH2/OAUTHBEARER), contrôles des messages (XDM, en-têtes X-MSS), BAL des personas.",
    # Asked, not required: a mail client that presents its workstation certificate can be told apart by it when
    # several runs share the bench (core/run_attribution.py); one without a certificate is served as before.
    client_cert="optional",
)
