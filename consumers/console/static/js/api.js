// The console's authenticated API: the token (sessionStorage, or localStorage when "remember" was ticked)
// goes in the Authorization header of every request; nothing else is stored.

const KEY = "gatewatch.console-token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY) || "";
}

export function setToken(token, remember) {
  clearToken();
  (remember ? localStorage : sessionStorage).setItem(KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

/** "/api/audit" + {tenant: "acme", model: ""} -> "/api/audit?tenant=acme" (empty values left out). */
export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function request(path, params, { signal, token } = {}) {
  let response;
  try {
    response = await fetch(url(path, params), {
      headers: { Authorization: `Bearer ${token ?? getToken()}` },
      signal,
      cache: "no-store",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "unreachable", "The console is not reachable (is `gatewatch worker` running?)");
  }
  if (!response.ok) {
    let code = "http_error";
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      code = body.error?.code ?? code;
      message = body.error?.message ?? message;
    } catch {
      // not a JSON error body (a proxy in between?): keep the status line
    }
    const error = new ApiError(response.status, code, message);
    if (response.status === 401) window.dispatchEvent(new CustomEvent("gatewatch:unauthorized", { detail: error }));
    throw error;
  }
  return response;
}

export async function getJson(path, params = {}, options = {}) {
  return (await request(path, params, options)).json();
}

/** The response body as a Blob plus the next-page cursor header (audit exports). */
export async function getBlob(path, params = {}, options = {}) {
  const response = await request(path, params, options);
  return { blob: await response.blob(), nextCursor: response.headers.get("X-Next-Cursor") };
}
