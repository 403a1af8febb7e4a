// Calls to the inferq API from the browser. The key lives in sessionStorage (this tab only)
// and travels only in the Authorization header, never in a URL.

const KEY = "inferq.key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function key() {
  return sessionStorage.getItem(KEY) || "";
}

export function setKey(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

// Whether the key signed in is an admin's (GET /v1 says): only then is Workers asked for.
let admin = true;
export const isAdmin = () => admin;
export function setAdmin(value) {
  admin = Boolean(value);
}

export function authHeaders() {
  const k = key();
  return k ? { Authorization: `Bearer ${k}` } : {};
}

// API paths are relative to the page (/console), so the console works behind a path prefix.
export function url(path) {
  return new URL(path.replace(/^\//, ""), document.baseURI).href;
}

export async function call(path, options = {}) {
  const headers = { Accept: "application/json", ...authHeaders(), ...(options.headers || {}) };
  let response;
  try {
    response = await fetch(url(path), { ...options, headers, cache: "no-store" });
  } catch (err) {
    throw new ApiError(0, "network", "the server cannot be reached; is it running?");
  }
  if (options.raw && response.ok) return response;
  let body = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) body = await response.json().catch(() => null);
  if (!response.ok) {
    const e = (body && body.error) || {};
    throw new ApiError(response.status, e.code || "http_" + response.status,
      e.message || `${response.status} ${response.statusText}`);
  }
  return { status: response.status, body, headers: response.headers };
}

export const get = (path) => call(path).then((r) => r.body);
export const post = (path, body, headers = {}) => call(path, { method: "POST", body, headers });
