// What the page shows lives in the URL fragment, so a view can be bookmarked or shared:
//   #traffic?range=6h&tenant=acme&model=gpt-4o&refresh=30
//   #audit?range=custom&from=2026-11-01T00:00&to=2026-11-02T00:00&outcome=failed&event_id=ev-...
// A console link may carry the token once (#token=gwc-...): it is moved into storage and removed from the URL.

export const VIEWS = ["traffic", "usage", "governance", "quality", "drift", "alerts", "audit"];
export const RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
export const AUDIT_FIELDS = ["key_id", "end_user", "outcome", "decision", "rule_id", "pii_entity", "event_id",
  "request_id", "limit"];
const DEFAULTS = { range: "6h", refresh: "0", threshold: "0.5", field: "prompt", metric: "centroid_cosine" };
const GLOBAL = ["range", "from", "to", "tenant", "model", "refresh"];
const PER_VIEW = { quality: ["threshold"], drift: ["field", "metric"], audit: [...AUDIT_FIELDS, "open"] };

function parse(hash) {
  const text = hash.replace(/^#/, "");
  const [head, query = ""] = text.includes("?") ? text.split(/\?(.*)/s, 2) : [text, ""];
  const params = new URLSearchParams(head.includes("=") ? head : query);
  return { view: head.includes("=") ? "" : head, params };
}

/** The token a console link carries (#token=...), removed from the address bar. */
export function takeToken() {
  const { view, params } = parse(location.hash);
  const token = params.get("token");
  if (!token) return "";
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", `${location.pathname}${location.search}#${view || "traffic"}${rest ? `?${rest}` : ""}`);
  return token;
}

export function read() {
  const { view, params } = parse(location.hash);
  const state = { view: VIEWS.includes(view) ? view : "traffic" };
  for (const [name, value] of Object.entries(DEFAULTS)) state[name] = value;
  for (const [name, value] of params) state[name] = value;
  if (!(state.range in RANGES) && state.range !== "custom") state.range = DEFAULTS.range;
  if (state.range === "custom" && !(parseUtc(state.from) && parseUtc(state.to))) state.range = DEFAULTS.range;
  return state;
}

/** Write ``state`` to the fragment: globals always, the view's own parameters only on that view. */
export function write(state, { push = false } = {}) {
  const params = new URLSearchParams();
  const keys = [...GLOBAL, ...(PER_VIEW[state.view] ?? [])];
  for (const name of keys) {
    const value = state[name];
    if (value === undefined || value === null || value === "" || value === DEFAULTS[name]) continue;
    if ((name === "from" || name === "to") && state.range !== "custom") continue;
    params.set(name, value);
  }
  const query = params.toString();
  const hash = `#${state.view}${query ? `?${query}` : ""}`;
  if (hash !== location.hash) history[push ? "pushState" : "replaceState"](null, "", hash);
}

/** "2026-11-27T10:15" (a datetime-local value, read as UTC) -> Date, or null. */
export function parseUtc(value) {
  if (!value) return null;
  const date = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(value) ? value : `${value}Z`);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function toLocalInput(date) {
  return date.toISOString().slice(0, 16);
}

/** The window the state asks for: a preset ends now; a custom range is fixed. */
export function timeWindow(state, now = new Date()) {
  if (state.range === "custom") return { from: parseUtc(state.from), to: parseUtc(state.to) };
  return { from: new Date(now.getTime() - RANGES[state.range] * 1000), to: now };
}
