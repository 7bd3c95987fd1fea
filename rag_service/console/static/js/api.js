// The REST API as the console uses it: the key from browser storage as a Bearer token, problem+json errors as
// ApiError, and Server-Sent Events read from a POST (EventSource can only GET and cannot send a header).

const KEY = "rag.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "http_error";
    this.problem = problem;
  }
}

export const storedKey = () => localStorage.getItem(KEY) || "";
export const saveKey = (key) => (key ? localStorage.setItem(KEY, key) : localStorage.removeItem(KEY));

function headers(extra = {}) {
  const key = storedKey();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

async function fail(resp) {
  let problem;
  try {
    problem = await resp.json();
  } catch {
    problem = { detail: resp.statusText };
  }
  throw new ApiError(resp.status, problem);
}

export async function api(path, { method = "GET", json, form, text = false } = {}) {
  const init = { method, headers: headers() };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  let resp = await fetch(path, init);
  // A read refused by the key's request rate (429) waits as long as the server asks and tries again (a few times):
  // polling many uploads at once must slow down, not fail. Writes are not repeated.
  for (let tries = 0; resp.status === 429 && method === "GET" && tries < 5; tries++) {
    const wait = Math.min(60, Number(resp.headers.get("Retry-After")) || 1);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    resp = await fetch(path, init);
  }
  if (!resp.ok) await fail(resp);
  if (resp.status === 204) return null;
  return text ? resp.text() : resp.json();
}

export const enc = encodeURIComponent;

// Yields {event, data} for each event of a text/event-stream answer to a POST.
export async function* postEvents(path, json) {
  const resp = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify(json),
  });
  if (!resp.ok) await fail(resp);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}
