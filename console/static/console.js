// The trainers' console page: calls only the console's own API (same origin), which calls the simulators'.
// Every text from the bench is put in the page with textContent, never as HTML.
"use strict";

const csrf = document.querySelector('meta[name="console-csrf"]').content;
const $ = (sel) => document.querySelector(sel);
let services = [];

async function api(method, path, body) {
  const init = { method, headers: { "X-Console-Csrf": csrf } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) { window.location.href = "/connexion"; throw new Error("connexion requise"); }
  const type = resp.headers.get("content-type") || "";
  const data = type.includes("json") ? await resp.json() : null;
  if (!resp.ok) {
    throw new Error((data && data.detail) || `HTTP ${resp.status}`);
  }
  if (data && data.failed && Object.keys(data.failed).length) {
    say("Refusé par " + Object.entries(data.failed).map(([s, e]) => `${s} : ${e}`).join(" ; "), true);
  }
  return data;
}

function say(message, error = false) {
  const el = $("#etat");
  el.textContent = message;
  el.classList.toggle("erreur", error);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "type" || k === "title") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function action(label, fn) {
  try {
    say(label + "…");
    await fn();
    say(label + " : fait.");
  } catch (err) {
    say(`${label} : ${err.message}`, true);
  }
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "—";
  return `${Math.round(ms).toLocaleString("fr-FR")} ms`;
}

function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleTimeString("fr-FR") + "," + String(d.getMilliseconds()).padStart(3, "0");
}

// ------------------------------------------------------------------ services and rules
async function refreshServices() {
  const data = await api("GET", "/api/services");
  services = data.services;
  for (const s of services) {
    const row = document.querySelector(`#services-lignes tr[data-service="${s.name}"]`);
    if (!row) continue;
    const state = row.querySelector(".etat-service");
    state.textContent = s.up ? `en service (v${s.health.version})` : `injoignable : ${s.error}`;
    state.classList.toggle("erreur", !s.up);
    const inc = row.querySelector(".incidents-service");
    inc.replaceChildren(...(s.incidents || []).map((n) => el("span", { class: "pastille" }, n)));
    const rules = row.querySelector(".regles-service");
    rules.replaceChildren(...(s.rules || []).map((r) => el("div", { class: "regle", "data-rule": r.id },
      el("span", {}, `${r.operation ? r.operation + " : " : ""}${r.description}`
        + (r.incident ? ` [${r.incident}]` : "") + (r.active ? "" : " (épuisée)")),
      " ",
      el("button", { type: "button", class: "petit", "data-service": s.name, "data-rule-id": r.id,
                     "aria-label": `Supprimer la règle ${r.id} de ${s.name}`, onclick: deleteRule }, "Supprimer"))));
  }
  markIncidents();
  fillOutcomes();
}

async function deleteRule(event) {
  const b = event.currentTarget;
  await action("Suppression de la règle", () => api("DELETE", `/api/faults/${b.dataset.service}/${b.dataset.ruleId}`));
  await refreshServices();
}

// ------------------------------------------------------------------ incidents
async function loadIncidents() {
  const data = await api("GET", "/api/incidents");
  const list = $("#incidents-liste");
  list.replaceChildren(...data.incidents.map((inc) => el("li", { class: "carte", "data-incident": inc.name },
    el("h3", {}, inc.title || inc.name),
    el("p", { class: "discret" }, `${inc.name} — services : ${(inc.services || []).join(", ")}`),
    el("p", {}, inc.description || inc.error || ""),
    el("p", { class: "actif-sur" }),
    el("button", { type: "button", "data-incident": inc.name, "data-action": "apply",
                   onclick: () => incident("POST", inc) }, "Appliquer"),
    " ",
    el("button", { type: "button", "data-incident": inc.name, "data-action": "clear",
                   onclick: () => incident("DELETE", inc) }, "Lever"))));
  markIncidents();
}

async function incident(method, inc) {
  const label = (method === "POST" ? "Application de l'incident " : "Levée de l'incident ") + inc.name;
  await action(label, () => api(method, `/api/incidents/${encodeURIComponent(inc.name)}`));
  await refreshServices();
}

function markIncidents() {
  for (const card of document.querySelectorAll("#incidents-liste li[data-incident]")) {
    const name = card.dataset.incident;
    const on = services.filter((s) => (s.incidents || []).includes(name)).map((s) => s.name);
    card.classList.toggle("actif", on.length > 0);
    card.querySelector(".actif-sur").textContent = on.length ? `Actif sur : ${on.join(", ")}` : "Inactif";
  }
}

// ------------------------------------------------------------------ custom rule
function fillOutcomes() {
  const service = $("#regle-service").value;
  const select = $("#regle-resultat");
  const current = select.value;
  const options = [];
  for (const s of services) {
    if (service !== "*" && s.name !== service) continue;
    for (const [name, text] of Object.entries(s.outcomes || {})) options.push(el("option", { value: name }, `${name} — ${text}`));
  }
  select.replaceChildren(...options);
  if (current) select.value = current;
}

function showEffectFields() {
  const effect = $("#regle-effet").value;
  for (const p of document.querySelectorAll("#regle-form [data-effet]")) p.hidden = p.dataset.effet !== effect;
}

async function addRule(event) {
  event.preventDefault();
  const form = new FormData(event.currentTarget);
  const body = Object.fromEntries(form.entries());
  await action("Ajout de la règle", () => api("POST", "/api/faults", body));
  await refreshServices();
}

// ------------------------------------------------------------------ live journal
let source = null;
const seen = new Set();

function connectJournal() {
  if (source) source.close();
  const params = new URLSearchParams(new FormData($("#journal-filtres")));
  for (const [k, v] of [...params.entries()]) if (!v) params.delete(k);
  $("#journal-lignes").replaceChildren();
  seen.clear();
  source = new EventSource("/api/journal/stream?" + params.toString());
  source.onopen = () => { $("#journal-etat").textContent = "Journal en direct : connecté."; };
  source.onerror = () => { $("#journal-etat").textContent = "Journal en direct : reconnexion…"; };
  source.onmessage = (msg) => {
    const event = JSON.parse(msg.data);
    if (event.type === "entry") addEntry(event.entry);
    else if (event.type === "hello") {
      $("#journal-etat").textContent = "Journal en direct : connecté.";
    } else if (event.type === "service" && event.error) {
      $("#journal-etat").textContent = `Journal : ${event.service} injoignable (${event.error}).`;
    }
  };
}

function addEntry(e) {
  if (seen.has(e.key)) return;
  seen.add(e.key);
  const waited = e.waited_ms && e.waited_ms > 0 ? fmtMs(e.waited_ms) : "—";
  const row = el("tr", { "data-key": e.key, "data-service": e.service, "data-run": e.run || "",
                        "data-waited": String(e.waited_ms || 0) },
    el("td", {}, fmtTime(e.received)),
    el("td", {}, e.service),
    el("td", {}, el("button", { type: "button", class: "lien", onclick: () => showEntry(e) },
      e.operation || `${e.method} ${e.path}`)),
    el("td", { class: e.status >= 400 || e.error ? "erreur" : "" }, e.status ?? (e.error ? "sans réponse" : "—")),
    el("td", {}, fmtMs(e.duration_ms)),
    el("td", { class: "latence" }, waited),
    el("td", {}, [...(e.faults || []), e.outcome ? `résultat : ${e.outcome}` : null].filter(Boolean).join(" ; ")),
    el("td", {}, e.run || ""));
  const body = $("#journal-lignes");
  body.prepend(row);
  while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
}

async function showEntry(e) {
  try {
    const d = await api("GET", `/api/journal/${encodeURIComponent(e.service)}/${encodeURIComponent(e.id)}`);
    $("#detail-titre").textContent = `${d.service} — ${d.operation}`;
    const facts = [
      ["Reçu", d.received], ["Répondu", d.responded || "—"], ["Méthode et URL", `${d.method} ${d.url}`],
      ["Statut", d.status ?? "—"], ["Durée", fmtMs(d.duration_ms)], ["Latence injectée", fmtMs(d.waited_ms)],
      ["Pannes appliquées", (d.faults || []).map((f) => f.description || JSON.stringify(f)).join(" ; ") || "aucune"],
      ["Résultat forcé", d.outcome || "aucun"], ["Run", d.run || "—"], ["Client", d.client || "—"],
      ["TLS", d.tls ? `${d.tls.version || ""} ${d.tls.cipher || ""} SNI ${d.tls.sni || "—"}` : "non (HTTP)"],
      ["Certificat client", certText(d.tls)], ["Erreur", d.error || "—"],
    ];
    $("#detail-faits").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
    $("#detail-requete-entetes").textContent = headersText(d.request.headers);
    $("#detail-requete").textContent = d.request.body.text || "(corps vide)";
    $("#detail-reponse-entetes").textContent = d.response ? headersText(d.response.headers) : "";
    $("#detail-reponse").textContent = d.response ? (d.response.body.text || "(corps vide)") : "(pas de réponse)";
    $("#journal-detail").hidden = false;
  } catch (err) {
    say(`Détail de l'échange : ${err.message}`, true);
  }
}

function certText(tls) {
  const cert = tls && tls.client_cert;
  if (!cert) return "aucun";
  if (typeof cert !== "object") return String(cert);
  return Object.entries(cert).map(([k, v]) => `${k} : ${v}`).join("\n");
}

function headersText(headers) {
  return (headers || []).map(([k, v]) => `${k}: ${v}`).join("\n");
}

// ------------------------------------------------------------------ CIBA
const CIBA_STATUS = { pending: "en attente", approve: "approuvée", refuse: "refusée", expired: "expirée", consumed: "utilisée" };

async function refreshCiba() {
  if (!services.some((s) => s.name === "psc")) return;
  const data = await api("GET", "/api/ciba");
  $("#ciba-lignes").replaceChildren(...data.requests.map((r) => el("tr", { "data-auth-req-id": r.auth_req_id },
    el("td", {}, `${r.professional || r.national_id} (${r.national_id})`),
    el("td", {}, r.binding_message || "—"),
    el("td", {}, r.client_id),
    el("td", { class: "statut" }, CIBA_STATUS[r.status] || r.status, r.status === "pending" ? ` (${r.expires_in} s)` : ""),
    el("td", {}, r.status !== "pending" ? "" : [
      el("button", { type: "button", "data-decision": "approve", onclick: () => decide(r, "approve") }, "Approuver"),
      " ",
      el("button", { type: "button", class: "danger", "data-decision": "refuse", onclick: () => decide(r, "refuse") }, "Refuser"),
    ].reduce((span, n) => { span.append(n); return span; }, el("span"))))));
  if (!data.requests.length) $("#ciba-lignes").append(el("tr", {}, el("td", { colSpan: 5 }, "Aucune demande.")));
}

async function decide(r, decision) {
  await action(decision === "approve" ? "Approbation CIBA" : "Refus CIBA",
    () => api("POST", `/api/ciba/${encodeURIComponent(r.auth_req_id)}`, { decision }));
  await refreshCiba();
}

// ------------------------------------------------------------------ ApCV
async function loadApcv() {
  if (!services.some((s) => s.name === "apcv")) return;
  const data = await api("GET", "/api/apcv/patients");
  $("#apcv-liste").replaceChildren(...data.patients.map((p) => {
    const card = el("li", { class: "carte", "data-patient": p.id },
      el("h3", {}, p.name),
      el("p", { class: "discret" }, `INS ${p.ins || "—"}, né(e) le ${p.birth_date}, rang ${p.rang}`));
    const zone = el("div", { class: "qr" });
    card.append(el("button", { type: "button", onclick: () => showQr(p, zone) }, "Afficher un QR code"), zone);
    return card;
  }));
}

async function showQr(p, zone) {
  try {
    const qr = await api("GET", `/api/apcv/${encodeURIComponent(p.id)}/qr`);
    const payload = el("code", { class: "charge" }, qr.payload);
    zone.replaceChildren(
      el("img", { src: qr.png, alt: `QR code de l'Appli carte Vitale de ${p.name}`, width: 200, height: 200 }),
      el("p", { class: "discret" }, `Expire le ${new Date(qr.expires_at).toLocaleString("fr-FR")}`),
      payload,
      el("button", { type: "button", onclick: () => copy(qr.payload) }, "Copier le contenu"));
  } catch (err) {
    say(`QR code : ${err.message}`, true);
  }
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    say("Contenu du QR code copié.");
  } catch {
    say("Copie impossible ici : sélectionnez le texte du QR code et copiez-le.", true);
  }
}

// ------------------------------------------------------------------ MSSanté
async function refreshMss() {
  if (!services.some((s) => s.name === "mss")) return;
  const data = await api("GET", "/api/mss/mailboxes");
  $("#mss-lignes").replaceChildren(...data.mailboxes.map((b) => el("tr", { "data-address": b.address },
    el("td", {}, b.address), el("td", {}, b.kind), el("td", {}, b.label || b.owner || ""),
    el("td", {}, Object.entries(b.messages || {}).map(([f, n]) => `${f} ${n}`).join(", ")),
    el("td", {}, el("button", { type: "button", onclick: () => showMailbox(b.address) }, "Voir les messages")))));
}

async function showMailbox(address) {
  try {
    const box = await api("GET", `/api/mss/mailboxes/${encodeURIComponent(address)}`);
    const zone = $("#mss-messages");
    zone.replaceChildren(el("h3", {}, `Boîte ${address} — ${box.folder}`));
    if (!box.messages.length) { zone.append(el("p", {}, "Aucun message.")); return; }
    zone.append(el("table", {}, el("thead", {}, el("tr", {}, ...["Reçu", "De", "Objet", "Pièces jointes", "Taille"]
      .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, ...box.messages.map((m) => el("tr", {},
        el("td", {}, m.received), el("td", {}, m.from), el("td", {}, m.subject || ""),
        el("td", {}, (m.attachments || []).map((a) => a.filename).join(", ")),
        el("td", {}, `${m.size} o`))))));
  } catch (err) {
    say(`Boîte ${address} : ${err.message}`, true);
  }
}

// ------------------------------------------------------------------ clock
async function refreshClock() {
  const data = await api("GET", "/api/clock");
  const clocks = Object.entries(data.clocks).filter(([, c]) => c && !c.error);
  if (!clocks.length) return;
  const [, first] = clocks[0];
  $("#horloge-maintenant").textContent = new Date(first.now).toLocaleString("fr-FR");
  $("#horloge-maintenant").dataset.now = first.now;
  $("#horloge-figee").textContent = first.frozen ? "(figée)" : "";
  const offsets = new Set(clocks.map(([, c]) => Math.round(c.offset_seconds)));
  const days = first.offset_seconds / 86400;
  $("#horloge-decalage").textContent = `Décalage sur l'heure réelle : ${Math.round(first.offset_seconds).toLocaleString("fr-FR")} s`
    + (Math.abs(days) >= 1 ? ` (${days.toFixed(1)} j)` : "")
    + (offsets.size > 1 ? " — attention : les simulateurs n'ont pas tous la même heure." : "");
}

async function clock(body, label) {
  await action(label, () => api("POST", "/api/clock", body));
  await refreshClock();
}

// ------------------------------------------------------------------ start
async function tick() {
  try {
    await refreshServices();
    await Promise.all([refreshCiba(), refreshClock()]);
  } catch (err) {
    say(`Actualisation : ${err.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#regle-effet").addEventListener("change", showEffectFields);
  $("#regle-service").addEventListener("change", fillOutcomes);
  $("#regle-form").addEventListener("submit", addRule);
  $("#tout-lever").addEventListener("click", async () => {
    await action("Levée de toutes les règles", () => api("DELETE", "/api/faults"));
    await refreshServices();
  });
  $("#journal-filtres").addEventListener("submit", (e) => { e.preventDefault(); connectJournal(); });
  $("#journal-vider").addEventListener("click", () => { $("#journal-lignes").replaceChildren(); });
  $("#mss-actualiser").addEventListener("click", () => refreshMss().catch((err) => say(err.message, true)));
  $("#horloge-form").addEventListener("submit", (e) => {
    e.preventDefault();
    clock({ advance: $("#horloge-avance").value }, "Avance de l'horloge");
  });
  $("#horloge-figer").addEventListener("click", () => clock({ freeze: true }, "Horloge figée"));
  $("#horloge-liberer").addEventListener("click", () => clock({ freeze: false }, "Horloge libérée"));
  $("#horloge-remettre").addEventListener("click", () => clock({ reset: true }, "Retour à l'heure réelle"));
  showEffectFields();
  connectJournal();
  await tick();
  try {
    await Promise.all([loadIncidents(), loadApcv(), refreshMss()]);
  } catch (err) {
    say(err.message, true);
  }
  document.body.dataset.pret = "oui";
  setInterval(tick, 2000);
});
