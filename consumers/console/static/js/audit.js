// The audit-log browser: GET /api/audit with the page's time range, tenant and model plus its own filters,
// cursor pagination (newest first by default, or oldest first), a detail drawer with the full entry, and
// exports (JSONL, CSV, Parquet) of up to 1,000 rows of the current filter.

import { getBlob, getJson } from "./api.js";
import { $, clear, h } from "./dom.js";
import { fmt, time } from "./format.js";

const OUTCOMES = ["", "completed", "failed", "denied"];
const DECISIONS = ["", "allow", "flag", "deny"];
const PAGE_SIZES = ["25", "50", "100", "200"];
const ORDERS = [["desc", "newest first"], ["asc", "oldest first"]];
const EXPORT_ROWS = 1000;
const TEXT_FILTERS = [["key_id", "Key id"], ["end_user", "End user"], ["rule_id", "Policy rule"],
  ["pii_entity", "PII entity"], ["event_id", "Event id"], ["request_id", "Request id"]];
const COLUMNS = [["ts_start", "Time (UTC)", "time"], ["tenant", "Tenant"], ["request_model", "Model"],
  ["outcome", "Outcome", "badge"], ["policy_decision", "Decision", "badge"], ["status", "Status"],
  ["latency_ms", "Latency", "ms"], ["total_tokens", "Tokens", "short"], ["cost_usd", "Cost", "usd"],
  ["end_user", "End user"], ["event_id", "Event id", "mono"]];

// One search = one fixed time window (a preset range would otherwise move with every page) and the cursors of
// the pages seen so far (pages[i] fetches page i). Page 0 starts a new search.
let search = { window: null, pages: [null] };

/** The /api/audit query for the current state (without limit/cursor/format). */
export function auditQuery(state, window) {
  const query = { tenant: state.tenant, model: state.model };
  query.since = state.since || window.from.toISOString();
  query.until = state.until || window.to.toISOString();
  for (const [name] of TEXT_FILTERS) query[name] = state[name];
  query.outcome = state.outcome;
  query.decision = state.decision;
  query.order = state.order || "desc";
  return query;
}

function select(name, label, options, value) {
  return h("label", {}, label, h("select", { name }, options.map((o) =>
    h("option", { value: o, selected: o === (value ?? "") }, o || "any"))));
}

function filterForm(state, onSearch) {
  const form = h("form", { class: "audit-filters card", id: "audit-form" },
    TEXT_FILTERS.map(([name, label]) => h("label", {}, label,
      h("input", { name, value: state[name] ?? "", spellcheck: "false", autocomplete: "off" }))),
    select("outcome", "Outcome", OUTCOMES, state.outcome),
    select("decision", "Decision", DECISIONS, state.decision),
    select("limit", "Rows per page", PAGE_SIZES, state.limit || "50"),
    h("label", {}, "Order", h("select", { name: "order" }, ORDERS.map(([value, label]) =>
      h("option", { value, selected: value === (state.order || "desc") }, label)))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Search"),
      h("button", { type: "reset" }, "Clear")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    onSearch({ ...values, limit: values.limit === "50" ? "" : values.limit,
      order: values.order === "desc" ? "" : values.order });
  });
  form.addEventListener("reset", (event) => {
    event.preventDefault();
    onSearch(Object.fromEntries([...TEXT_FILTERS.map(([n]) => [n, ""]), ["outcome", ""], ["decision", ""],
      ["limit", ""], ["order", ""]]));
  });
  return form;
}

function download(blob, name) {
  const link = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

function cliHint(query, format) {
  const args = ["gatewatch audit"];
  for (const name of ["tenant", "model", "since", "until", ...TEXT_FILTERS.map(([n]) => n), "outcome", "decision"]) {
    if (query[name]) args.push(`--${name.replace(/_/g, "-")} '${query[name]}'`);
  }
  args.push(`--format ${format} -o audit.${format}`);
  return args.join(" ");
}

function exportBar(query, note) {
  const run = async (format) => {
    note.textContent = `Exporting ${format.toUpperCase()}…`;
    try {
      const { blob, nextCursor } = await getBlob("/api/audit", { ...query, format, limit: EXPORT_ROWS });
      download(blob, `gatewatch-audit-${new Date().toISOString().slice(0, 19).replace(/:/g, "")}.${format}`);
      note.textContent = nextCursor
        ? `Exported the first ${EXPORT_ROWS.toLocaleString()} rows. Everything: ${cliHint(query, format)}` : "";
    } catch (err) {
      note.textContent = `Export failed: ${err.message}`;
    }
  };
  return h("div", { class: "export" }, "Export ",
    ["jsonl", "csv", "parquet"].map((format) => h("button", { type: "button", dataset: { export: format },
      onclick: () => run(format) }, format.toUpperCase())));
}

function cell(row, [key, , kind]) {
  const value = row[key];
  if (kind === "badge" && value) return h("span", { class: `badge badge-${value}` }, value);
  if (kind === "mono") return h("span", { class: "mono" }, value);
  return fmt(value, kind);
}

function resultsTable(rows, onOpen) {
  return h("div", { class: "table-wrap tall" }, h("table", { class: "audit-rows" },
    h("thead", {}, h("tr", {}, COLUMNS.map(([, label, kind]) =>
      h("th", { class: ["ms", "short", "usd"].includes(kind) ? "num" : "", scope: "col" }, label)))),
    h("tbody", {}, rows.map((row) => h("tr", { tabindex: "0", dataset: { eventId: row.event_id },
      onclick: () => onOpen(row), onkeydown: (e) => { if (e.key === "Enter") onOpen(row); } },
    COLUMNS.map((c) => h("td", { class: ["ms", "short", "usd"].includes(c[2]) ? "num" : "" }, cell(row, c))))))));
}

export async function renderAudit(container, state, window, { navigate, signal }) {
  let page = Number(state._page || 0);
  if (!(page > 0 && page < search.pages.length && search.window)) {
    search = { window, pages: [null] };
    page = 0;
  }
  const query = auditQuery(state, search.window);
  const limit = state.limit || "50";
  const body = await getJson("/api/audit", { ...query, limit, cursor: search.pages[page] }, { signal });
  if (body.next_cursor) search.pages[page + 1] = body.next_cursor;
  const note = h("p", { class: "muted export-note", role: "status" });
  const go = (to) => navigate({ _page: String(to) });
  container.append(...[
    filterForm(state, (values) => navigate({ ...values, _page: "0" })),
    state.since ? h("p", { class: "chip" }, `Showing the exact time of a linked entry (${time(state.since)} UTC). `,
      h("button", { type: "button", class: "link", onclick: () => navigate({ since: "", until: "", event_id: "",
        open: "" }) }, "Back to the range picker")) : null,
    h("div", { class: "audit-bar" },
      h("span", { class: "muted", id: "audit-summary" },
        `Page ${page + 1} · ${body.count} row${body.count === 1 ? "" : "s"} · ${
          query.order === "asc" ? "oldest" : "newest"} first`),
      h("span", { class: "pager" },
        h("button", { type: "button", id: "audit-prev", disabled: page === 0, onclick: () => go(page - 1) }, "← Previous"),
        h("button", { type: "button", id: "audit-next", disabled: !body.next_cursor, onclick: () => go(page + 1) },
          "Next →")),
      exportBar(query, note)),
    note,
    body.rows.length ? resultsTable(body.rows, openEntry) : h("div", { class: "empty card" },
      "No audit entries match these filters in this time range."),
  ].filter(Boolean));
  container.dataset.rows = String(body.rows.length);
  if (state.open && body.rows.length === 1) openEntry(body.rows[0]);
}

function field(label, value) {
  return [h("dt", {}, label), h("dd", {}, value === null || value === undefined || value === "" ? "–" : value)];
}

function messages(title, list) {
  if (!list?.length) return null;
  return h("section", {}, h("h3", {}, title), list.map((m) => h("div", { class: "message" },
    h("span", { class: "role" }, m.role + (m.name ? ` (${m.name})` : "")),
    h("pre", {}, m.content ?? (m.content_sha256 ? `sha256 ${m.content_sha256} (not captured)` : "(not captured)")))));
}

export function openEntry(row) {
  const drawer = $("#drawer");
  const pii = Object.entries(row.pii_counts ?? {}).map(([k, v]) => `${k} × ${v}`).join(", ");
  const json = JSON.stringify(row, null, 2);
  clear($("#drawer-body")).append(
    h("dl", { class: "fields" },
      field("Event id", h("span", { class: "mono", id: "drawer-event-id" }, row.event_id)),
      field("Request id", h("span", { class: "mono" }, row.request_id)),
      field("Time", `${time(row.ts_start)} UTC → ${time(row.ts_end)}`),
      field("Tenant", row.tenant), field("Key", row.key_id), field("End user", row.end_user),
      field("Endpoint", `${row.endpoint}${row.stream ? " (stream)" : ""}`),
      field("Model", `${row.request_model ?? "–"} → ${row.response_model ?? "–"}`),
      field("Upstream", row.deployment ? `${row.deployment} (${row.provider ?? "?"}), ${row.attempts} attempt(s)` : null),
      field("Outcome", `${row.outcome} · HTTP ${row.status}${row.error_type ? ` · ${row.error_type}` : ""}`),
      field("Error", row.error_message),
      field("Latency", `${fmt(row.latency_ms, "ms")}${row.ttft_ms !== null ? ` · TTFT ${fmt(row.ttft_ms, "ms")}` : ""}`),
      field("Tokens", `${row.input_tokens ?? "–"} in · ${row.output_tokens ?? "–"} out · ${fmt(row.cost_usd, "usd")}`),
      field("Policy", `${row.policy_decision}${row.policy_rule_ids?.length ? ` · ${row.policy_rule_ids.join(", ")}` : ""}`
        + `${row.policy_reason ? ` · ${row.policy_reason}` : ""}${row.policy_version ? ` (v ${row.policy_version})` : ""}`),
      field("PII replaced", pii),
      field("Capture", row.capture),
      field("Gateway", `${row.gateway_instance} #${row.sequence}`),
      field("Content hash", h("span", { class: "mono" }, row.content_hash))),
    messages("Request messages", row.request_messages),
    messages("Retrieved context", row.request_context),
    h("section", {}, h("h3", {}, "Response"), h("pre", {}, row.response_text
      ?? (row.response_text_sha256 ? `sha256 ${row.response_text_sha256} (not captured)` : "(none)"))),
    h("section", {}, h("h3", {}, "Full entry (JSON)"),
      h("button", { type: "button", onclick: () => download(new Blob([json], { type: "application/json" }),
        `${row.event_id}.json`) }, "Download JSON"),
      h("pre", { class: "raw" }, json)));
  drawer.hidden = false;
  $("#drawer-close").focus();
}
