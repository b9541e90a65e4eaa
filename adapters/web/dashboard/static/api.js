// The HTTP API from the browser: one fetch wrapper that sends the bearer token (asked for
// once, kept in sessionStorage) and turns the API's JSON errors into ApiError.
const TOKEN_KEY = "rustyflower.token";
let asking = null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A path for an instance id: its `/` stay (the API takes ids as paths), the rest encoded. */
export function idPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

function headers(json) {
  const found = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) found.Authorization = `Bearer ${token}`;
  if (json) found["Content-Type"] = "application/json";
  return found;
}

function askToken() {
  // every call that meets a 401 waits for the same answer
  asking ??= new Promise((resolve) => {
    const dialog = document.getElementById("login");
    dialog.addEventListener(
      "close",
      () => {
        sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
        asking = null;
        resolve();
      },
      { once: true },
    );
    dialog.showModal();
  });
  return asking;
}

async function send(path, options) {
  const response = await fetch(path, options());
  if (response.status === 401) {
    await askToken();
    return send(path, options);
  }
  return response;
}

export async function api(path, { method = "GET", body } = {}) {
  const response = await send(path, () => ({
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  }));
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    throw new ApiError(response.status, "not_json", `${response.status}: ${text.slice(0, 200)}`);
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(response.status, error.code ?? "error", error.message ?? response.statusText);
  }
  return data;
}

/** Save a response body as a file (the snapshot), sending the token as every call does. */
export async function download(path, name) {
  const response = await send(path, () => ({ headers: headers(false) }));
  if (!response.ok) throw new ApiError(response.status, "error", await response.text());
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}
