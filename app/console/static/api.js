// Reading the server: the same JSON the admin API serves, under /console/api.
export class NotLoggedIn extends Error {}

export async function getJson(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  if (response.status === 401) {
    location.assign(`/console/login?next=${encodeURIComponent(location.pathname)}`);
    throw new NotLoggedIn();
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || `${path}: HTTP ${response.status}`);
  }
  return response.json();
}

export async function postJson(path, document) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(document),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

// Server-sent events with named event types; returns the EventSource (close() to stop).
export function subscribe(path, handlers) {
  const source = new EventSource(path, { withCredentials: true });
  for (const [type, handler] of Object.entries(handlers)) {
    source.addEventListener(type, (message) => handler(JSON.parse(message.data)));
  }
  return source;
}

export function seconds(value) {
  if (value == null || Number.isNaN(value)) return "–";
  const total = Math.max(0, value);
  const minutes = Math.floor(total / 60);
  const rest = total - minutes * 60;
  return minutes ? `${minutes}:${rest.toFixed(0).padStart(2, "0")}` : `${rest.toFixed(1)} s`;
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}
