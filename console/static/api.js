// Every request to the app: same origin, the Functions key in the x-functions-key header (never
// in a URL), JSON in and out, errors as the app words them.

const KEY_STORAGE = "console.functionsKey";
// The API's root, from where this module is served (/api/console/api.js -> /api/).
const API_ROOT = new URL("../", import.meta.url);

/** The key was refused (401) or there is none: the page asks for it again. */
export class KeyRefused extends Error {}

/** The app answered with an error status; `message` is its own `error` text when it gave one. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body || {};
  }
}

/** The request never got an answer (network down, connection reset, the app not running). */
export class NetworkError extends Error {}

let keyRefused = () => {};

/** `handler(refused: boolean)` runs when a request finds no key (false) or a refused one. */
export function onKeyRefused(handler) {
  keyRefused = handler;
}

export function key() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(value) {
  sessionStorage.setItem(KEY_STORAGE, value);
}

export function forgetKey() {
  try {
    sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage unavailable: nothing was kept
  }
}

/** The URL of an API path ("calls", "broadcasts/BC…"), with `query` (skipping empty values). */
export function url(path, query) {
  const target = new URL(path, API_ROOT);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") {
      target.searchParams.set(name, String(value));
    }
  }
  return target;
}

/**
 * One request. Resolves to {status, data, headers} for a 2xx answer (or the Response itself
 * with `raw`); rejects with KeyRefused, ApiError or NetworkError.
 */
export async function request(method, path, options = {}) {
  const { query, body, headers = {}, raw = false, signal } = options;
  const functionsKey = key();
  if (!functionsKey) {
    keyRefused(false);
    throw new KeyRefused("No Functions key yet.");
  }
  const init = {
    method,
    headers: { "x-functions-key": functionsKey, ...headers },
    cache: "no-store",
    credentials: "same-origin",
    redirect: "error",
    signal,
  };
  if (!raw) init.headers.Accept = "application/json";
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url(path, query), init);
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new NetworkError("The app could not be reached (no answer came back).");
  }
  if (raw && response.ok) return response;
  const data = await readJson(response);
  // The host refuses a wrong key with an empty 401; the app's own 401 (a sign-in it requires
  // on top of the key) says so in JSON, and the key is kept.
  if (response.status === 401 && !(data && typeof data.error === "string")) {
    forgetKey();
    keyRefused(true);
    throw new KeyRefused("The app refused the Functions key.");
  }
  if (!response.ok) {
    const said = data && typeof data.error === "string" && data.error ? data.error : "";
    throw new ApiError(response.status, said || `The app answered HTTP ${response.status}.`, data);
  }
  return { status: response.status, data, headers: response.headers };
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export const get = (path, query, options) => request("GET", path, { ...options, query });
export const post = (path, body, options) => request("POST", path, { ...options, body });
export const del = (path, options) => request("DELETE", path, options);

/** A fresh Idempotency-Key: a random UUID (crypto.getRandomValues where randomUUID is absent). */
export function newIdempotencyKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** What to tell the person about a failed request (the app's own words when it gave some). */
export function describe(error) {
  if (error instanceof ApiError || error instanceof NetworkError || error instanceof KeyRefused) {
    return error.message;
  }
  return `Something went wrong in the page: ${error && error.message ? error.message : error}`;
}
