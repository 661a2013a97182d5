// The page's HTTP side: the API key, JSON requests with readable errors, server-sent events over fetch, and the
// error box every failure ends in (nothing is swallowed).

const KEY_STORAGE = "hybrec.apiKey";

export const $ = (selector, root = document) => root.querySelector(selector);

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function saveApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

function headers(extra = {}) {
  const result = { Accept: "application/json", ...extra };
  const key = apiKey();
  if (key) result["X-API-Key"] = key;
  return result;
}

/** An Error carrying the HTTP status and the server's `detail` (a string, or FastAPI's list of field errors). */
async function httpError(response, what) {
  let detail = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (typeof body.detail === "string") detail = body.detail;
    else if (Array.isArray(body.detail)) {
      detail = body.detail.map((e) => `${(e.loc || []).slice(1).join(".") || "request"}: ${e.msg}`).join("; ");
    } else if (body.detail !== undefined) detail = JSON.stringify(body.detail);
  } catch (_notJson) {
    // The body was not JSON (a proxy's HTML page, an empty body): the status text says what there is to say.
  }
  const hint = response.status === 401 ? " Set the API key (top right)." : "";
  const error = new Error(`${what}: ${response.status} ${detail}.${hint}`);
  error.status = response.status;
  return error;
}

/** fetch, with a network failure and a non-2xx answer both turned into an Error that names `what` failed. */
async function request(path, options, what) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (cause) {
    throw new Error(`${what}: the server did not answer (${cause.message})`);
  }
  if (!response.ok) throw await httpError(response, what);
  return response;
}

export async function getJSON(path, what) {
  return (await request(path, { headers: headers() }, what)).json();
}

export async function postJSON(path, body, what) {
  const options = { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) };
  return (await request(path, options, what)).json();
}

/** POST `body` and yield the answer's server-sent events as {event, data} (data parsed from JSON) as they arrive. */
export async function* postEventStream(path, body, what) {
  const response = await request(
    path,
    {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(body),
    },
    what,
  );
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (block.trim()) yield parseEvent(block);
    }
  }
}

/** One SSE block ("event: x\ndata: {...}") as {event, data}. */
function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return { event, data: data.length ? JSON.parse(data.join("\n")) : null };
}

export function showError(error) {
  const message = error instanceof Error ? error.message : String(error);
  console.error(message);
  const box = $("#errors");
  const row = document.createElement("p");
  row.className = "error";
  const text = document.createElement("span");
  text.textContent = message;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "link";
  close.textContent = "Dismiss";
  close.setAttribute("aria-label", "Dismiss this error");
  close.addEventListener("click", () => row.remove());
  row.append(text, close);
  box.append(row);
  // Only the latest few: a flapping server should not push the page down without end.
  while (box.children.length > 4) box.firstElementChild.remove();
}

export function clearErrors() {
  $("#errors").replaceChildren();
}

export function money(value) {
  return value == null ? "price unknown" : `$${Number(value).toFixed(2)}`;
}
