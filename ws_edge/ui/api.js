// The HTTP API as the page uses it: JSON requests and Server-Sent Events read over fetch()
// (EventSource cannot send an Authorization header, and an API key must never ride in a URL).

const KEY = "scrapeledger-api-key";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let askKey = async () => null;

/** The page installs its key prompt here; it runs only when the edge answers 401. */
export function onKeyRequired(prompt) {
  askKey = prompt;
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  const key = sessionStorage.getItem(KEY);
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function withKey(send) {
  let r = await send();
  if (r.status === 401) {
    const key = await askKey();
    if (key) {
      sessionStorage.setItem(KEY, key);
      r = await send();
    }
  }
  return r;
}

async function failure(r) {
  let code = `http_${r.status}`;
  let message = r.statusText;
  try {
    const body = await r.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch {
    // not JSON: keep the HTTP status
  }
  return new ApiError(r.status, code, message);
}

export async function request(method, path, body) {
  const init = { method, cache: "no-store", headers: headers() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await withKey(() => fetch(path, init));
  if (!r.ok) throw await failure(r);
  return r.json();
}

export const get = (path) => request("GET", path);

/**
 * Read an SSE stream: calls onEvent({id, event, data}) per event (data parsed as JSON) and
 * returns when the server ends the stream. Throws ApiError for an error answer.
 */
export async function stream(path, onEvent, { signal, lastEventId } = {}) {
  const extra = { Accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  const r = await withKey(() => fetch(path, { cache: "no-store", headers: headers(extra), signal }));
  if (!r.ok) throw await failure(r);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let ev = { data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      let line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (ev.data.length) onEvent({ id: ev.id, event: ev.event || "message", data: JSON.parse(ev.data.join("\n")) });
        ev = { data: [] };
        continue;
      }
      if (line.startsWith(":")) continue; // a keep-alive comment
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (name === "data") ev.data.push(val);
      else if (name === "id") ev.id = val;
      else if (name === "event") ev.event = val;
    }
  }
}
