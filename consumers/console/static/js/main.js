// The console page: sign-in with a console token, the toolbar (time range, tenant/model filters, per-view
// options, auto-refresh), the dashboard views rendered from /api/dashboard/<view>, and the audit browser.
// <body data-state> is "signed-out" | "loading" | "ready" | "error"; data-renders counts finished renders.

import { clearToken, getJson, getToken, setToken } from "./api.js";
import { renderAudit } from "./audit.js";
import { destroyAll } from "./charts.js";
import { $, h } from "./dom.js";
import { time } from "./format.js";
import { renderPanels } from "./panels.js";
import * as S from "./state.js";

const VIEW_OPTIONS = {
  quality: [["threshold", "Toxicity threshold", ["0.3", "0.5", "0.7", "0.9"]]],
  drift: [["field", "Field", ["prompt", "response"]], ["metric", "Metric", ["centroid_cosine", "mmd2", "mmd2_pvalue"]]],
};

let state = S.read();
let me = null;
let seq = 0;
let controller = null;
let timer = null;
let renders = 0;

function setStatus(text, kind = "") {
  const el = $("#status");
  el.textContent = text;
  el.className = `status ${kind}`;
}

function showSignin(message = "", kind = "error") {
  me = null;
  clearInterval(timer);
  controller?.abort();
  destroyAll();
  $("#view").replaceChildren();
  $("#drawer").hidden = true;
  for (const id of ["#toolbar", "#main", "#signout"]) $(id).hidden = true;
  $("#who").textContent = "";
  $("#signin").hidden = false;
  const error = $("#signin-error");
  error.textContent = message;
  error.className = kind;
  error.hidden = !message;
  document.body.dataset.state = "signed-out";
  $("#token-input").focus();
}

function showSession() {
  $("#signin").hidden = true;
  for (const id of ["#toolbar", "#main", "#signout"]) $(id).hidden = false;
  $("#who").textContent = me.admin ? `admin · ${me.token_id}` : `tenants ${me.scope.join(", ")} · ${me.token_id}`;
}

function params() {
  const win = S.timeWindow(state);
  const out = { from: win.from.toISOString(), to: win.to.toISOString(), tenant: state.tenant, model: state.model };
  for (const [name] of VIEW_OPTIONS[state.view] ?? []) out[name] = state[name];
  return out;
}

function fillSelect(select, values, current, allLabel) {
  const options = [h("option", { value: "" }, allLabel), ...values.map((v) => h("option", { value: v }, v))];
  if (current && !values.includes(current)) options.push(h("option", { value: current }, `${current} (no data)`));
  select.replaceChildren(...options);
  select.value = current ?? "";
}

async function loadOptions() {
  const { from, to } = params();
  try {
    const data = await getJson("/api/dashboard/filters", { from, to, tenant: state.tenant });
    fillSelect($("#tenant"), data.tenants, state.tenant, me.admin ? "All tenants" : "All my tenants");
    fillSelect($("#model"), data.models, state.model, "All models");
  } catch (err) {
    if (err.status !== 401) setStatus(`Filters: ${err.message}`, "error");
  }
}

function syncControls() {
  $("#range").value = state.range;
  $("#custom-range").hidden = state.range !== "custom";
  if (state.range === "custom") {
    $("#from").value = S.toLocalInput(S.parseUtc(state.from));
    $("#to").value = S.toLocalInput(S.parseUtc(state.to));
  }
  $("#refresh").value = state.refresh;
  for (const a of document.querySelectorAll("#tabs a")) {
    a.setAttribute("aria-current", a.dataset.view === state.view ? "page" : "false");
  }
  $("#view-options").replaceChildren(...(VIEW_OPTIONS[state.view] ?? []).map(([name, label, values]) =>
    h("label", {}, label, h("select", { id: `opt-${name}`, onchange: (e) => update({ [name]: e.target.value }) },
      values.map((v) => h("option", { value: v, selected: v === state[name] }, v))))));
}

function schedule() {
  clearInterval(timer);
  const seconds = Number(state.refresh);
  if (seconds > 0) {
    timer = setInterval(() => {
      if (!document.hidden && state.view !== "audit" && document.body.dataset.state !== "loading") render();
    }, seconds * 1000);
  }
}

/** Change the state, write it to the URL and render; ``push`` makes a history entry (view changes). */
function update(changes, { push = false, reloadOptions = false } = {}) {
  state = { ...state, ...changes };
  S.write(state, { push });
  syncControls();
  schedule();
  if (reloadOptions) loadOptions();
  render();
}

async function render() {
  const mine = ++seq;
  controller?.abort();
  controller = new AbortController();
  document.body.dataset.state = "loading";
  setStatus("Loading…");
  const target = h("div", { class: `view-body view-${state.view}` });
  let draw = null;
  try {
    if (state.view === "audit") {
      await renderAudit(target, state, S.timeWindow(state), { navigate: (c) => update(c), signal: controller.signal });
    } else {
      const data = await getJson(`/api/dashboard/${state.view}`, params(), { signal: controller.signal });
      draw = renderPanels(target, data.panels);
    }
  } catch (err) {
    if (err.name === "AbortError" || mine !== seq || err.status === 401) return;
    target.replaceChildren(h("div", { class: "card error-card", role: "alert" }, h("h2", {}, "Could not load this view"),
      h("p", {}, err.message)));
    document.body.dataset.state = "error";
  }
  if (mine !== seq) return;
  destroyAll($("#view"));
  $("#view").replaceChildren(target);
  draw?.();
  document.body.dataset.view = state.view;
  if (document.body.dataset.state !== "error") {
    document.body.dataset.state = "ready";
    const auto = Number(state.refresh) ? ` · auto-refresh ${$("#refresh").selectedOptions[0].textContent}` : "";
    setStatus(`Updated ${time(new Date()).slice(11)} UTC${auto}`);
  } else {
    setStatus("Error", "error");
  }
  document.body.dataset.renders = String(++renders);
}

async function start() {
  showSession();
  syncControls();
  schedule();
  await loadOptions();
  await render();
}

async function signIn(token, remember) {
  try {
    me = await getJson("/api/whoami", {}, { token });
  } catch (err) {
    showSignin(err.status === 401 ? "That console token is invalid or has been revoked." : err.message);
    return;
  }
  setToken(token, remember);
  await start();
}

function navigateToHash(hash) {
  const link = new URLSearchParams(hash.split("?")[1] ?? "");
  const view = hash.replace(/^#/, "").split("?")[0];
  // a link names exactly what to show: the audit filters it does not set are cleared
  const changes = { view, open: "", since: "", until: "", _page: "0" };
  for (const name of S.AUDIT_FIELDS) if (name !== "limit") changes[name] = "";
  for (const [name, value] of link) changes[name] = value;
  update(changes, { push: true });
}

function wire() {
  $("#signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token-input").value.trim();
    $("#token-input").value = "";
    if (token) signIn(token, $("#remember").checked);
  });
  $("#signout").addEventListener("click", () => {
    clearToken();
    showSignin("Signed out. The token was removed from this browser.", "info");
  });
  $("#tabs").addEventListener("click", (event) => {
    const a = event.target.closest("a[data-view]");
    if (!a || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    update({ view: a.dataset.view, open: "" }, { push: true });
  });
  $("#view").addEventListener("click", (event) => {
    const a = event.target.closest('a[href^="#"]');
    if (!a || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    navigateToHash(a.getAttribute("href"));
  });
  $("#range").addEventListener("change", (e) => {
    if (e.target.value === "custom") {
      const win = S.timeWindow(state);
      $("#from").value = S.toLocalInput(win.from);
      $("#to").value = S.toLocalInput(win.to);
      $("#custom-range").hidden = false;
      return;
    }
    update({ range: e.target.value, _page: "0" }, { reloadOptions: true });
  });
  $("#apply-range").addEventListener("click", () => {
    const from = S.parseUtc($("#from").value);
    const to = S.parseUtc($("#to").value);
    if (!from || !to || from >= to) return setStatus("The custom range needs a start before its end.", "error");
    update({ range: "custom", from: $("#from").value, to: $("#to").value, _page: "0" }, { reloadOptions: true });
  });
  $("#tenant").addEventListener("change", (e) => update({ tenant: e.target.value, _page: "0" }, { reloadOptions: true }));
  $("#model").addEventListener("change", (e) => update({ model: e.target.value, _page: "0" }));
  $("#refresh").addEventListener("change", (e) => update({ refresh: e.target.value }));
  $("#reload").addEventListener("click", () => render());
  $("#drawer-close").addEventListener("click", () => { $("#drawer").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("#drawer").hidden = true; });
  window.addEventListener("hashchange", () => {
    state = { ...state, ...S.read() };
    if (me) { syncControls(); schedule(); render(); }
  });
  window.addEventListener("gatewatch:unauthorized", () => {
    if (!me) return;
    clearToken();
    showSignin("The console rejected the token (revoked?). Sign in again.");
  });
}

async function boot() {
  wire();
  const linked = S.takeToken();
  if (linked) setToken(linked, false);
  state = S.read();
  if (!getToken()) return showSignin();
  try {
    me = await getJson("/api/whoami");
  } catch (err) {
    if (err.status === 401) {
      clearToken();
      return showSignin("The saved console token was rejected (revoked?). Sign in again.");
    }
    return showSignin(err.message);
  }
  await start();
}

boot();
