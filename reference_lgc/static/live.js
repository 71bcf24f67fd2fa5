// Live status elements of the reference LGC (no dependency).
// An element with data-poll="URL" is replaced by the fragment at URL every 500 ms while it keeps data-poll.
// When it ends, the regions listed in its data-refresh (CSS selectors of elements with data-src) are reloaded.
// Nothing here blocks the page: fetches are asynchronous and each replaces only its own element.
(function () {
  "use strict";
  const PERIOD_MS = 500;
  const inFlight = new WeakSet();

  async function fetchFragment(url, id) {
    const resp = await fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" });
    if (!resp.ok) throw new Error(resp.status);
    const html = (await resp.text()).trim();
    if (id && /^<!doctype/i.test(html)) {
      // A whole page (a region whose source is a page): take the element with the same id from it.
      return new DOMParser().parseFromString(html, "text/html").getElementById(id);
    }
    const tpl = document.createElement("template");
    tpl.innerHTML = html;
    return tpl.content.firstElementChild;
  }

  function keepOpenState(oldEl, newEl) {
    // Keep popovers (<details>, the DICA checklist) the user opened across a refresh.
    oldEl.querySelectorAll("details[id][open]").forEach((d) => {
      const twin = newEl.querySelector("#" + CSS.escape(d.id));
      if (twin) twin.open = true;
    });
    oldEl.querySelectorAll(".dica.open[id]").forEach((d) => {
      const twin = newEl.querySelector("#" + CSS.escape(d.id));
      if (twin) twin.classList.add("open");
    });
  }

  // The DMP icon opens (and closes) the DICA checklist on click; hover and keyboard focus show it too.
  document.addEventListener("click", (ev) => {
    const toggle = ev.target.closest(".dica-toggle");
    if (!toggle) return;
    const box = toggle.closest(".dica");
    const open = box.classList.toggle("open");
    toggle.setAttribute("aria-expanded", String(open));
  });

  // A region being filled in by the user is not replaced under their hands: the refresh waits until the form
  // is submitted or left alone (its own status elements keep updating meanwhile).
  document.addEventListener("input", (ev) => ev.target.form && ev.target.form.classList.add("dirty"));
  document.addEventListener("change", (ev) => ev.target.form && ev.target.form.classList.add("dirty"));

  function busy(region) {
    const active = document.activeElement;
    const typing = active && region.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
    return typing || region.querySelector("form.dirty") !== null;
  }

  async function refreshRegion(selector) {
    document.querySelectorAll(selector).forEach(async (region) => {
      const src = region.dataset.src;
      if (!src) return;
      if (busy(region)) {
        setTimeout(() => refreshRegion("#" + CSS.escape(region.id)), 1000);
        return;
      }
      try {
        const fresh = await fetchFragment(src, region.id);
        // Checked again once the fragment is here: the user may have started filling the form meanwhile (a box
        // ticked while the fetch ran was lost when the region was replaced).
        if (fresh && region.isConnected && busy(region)) {
          setTimeout(() => refreshRegion("#" + CSS.escape(region.id)), 1000);
        } else if (fresh && region.isConnected) {
          keepOpenState(region, fresh);
          region.replaceWith(fresh);
        }
      } catch (e) { /* next poll or user action will refresh */ }
    });
  }

  async function poll(el) {
    if (inFlight.has(el) || !el.isConnected) return;
    inFlight.add(el);
    try {
      const fresh = await fetchFragment(el.dataset.poll);
      if (!fresh || !el.isConnected) return;
      el.replaceWith(fresh);
      if (!fresh.dataset.poll && fresh.dataset.refresh) {
        fresh.dataset.refresh.split(",").forEach((s) => refreshRegion(s.trim()));
      }
    } catch (e) {
      // The LGC itself did not answer: try again at the next tick.
    } finally {
      inFlight.delete(el);
    }
  }

  setInterval(() => document.querySelectorAll("[data-poll]").forEach(poll), PERIOD_MS);

  // The LGC refuses a POST without its anti-forgery token (issue 16). Forms carry it as a field; every fetch()
  // POST also sends the page's token (its <meta>) as a header, so a body that is not an LGC form still passes.
  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // Retry buttons inside status elements: post in the background and swap in the new status element.
  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!form.matches("form[data-async]")) return;
    ev.preventDefault();
    const host = form.closest("[data-call]");
    try {
      const resp = await fetch(form.action, { method: "POST", body: new FormData(form),
        headers: { "X-Requested-With": "fetch", "X-CSRFToken": csrfToken() }, credentials: "same-origin" });
      // A refusal (e.g. the 403 page of a stale token) is shown as a page, not swapped into the status element.
      if (!resp.ok) throw new Error(resp.status);
      const tpl = document.createElement("template");
      tpl.innerHTML = (await resp.text()).trim();
      if (host && tpl.content.firstElementChild) host.replaceWith(tpl.content.firstElementChild);
    } catch (e) {
      form.submit();
    }
  });
})();
