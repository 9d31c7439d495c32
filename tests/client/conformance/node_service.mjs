// The conformance test service (protocol: harness.py) for npm's `eventsource` package (the
// copy in tests/clients/node_modules). Its request options go through the `fetch` override the
// package documents; it has no API for comments, an initial Last-Event-ID, a read timeout or a
// restart, so the service does not claim those capabilities.
// Usage: node node_service.mjs PORT
import http from "node:http";
import { EventSource } from "../../clients/node_modules/eventsource/dist/index.js";

const CAPABILITIES = ["headers", "post", "report", "bom", "redirect"];
const clients = new Map();
let created = 0;

function start(options) {
  let callbacks = 0;
  const post = (message) =>
    fetch(`${options.callbackUrl}/${++callbacks}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(message),
    }).catch(() => {});
  const source = new EventSource(options.streamUrl, {
    fetch: (url, init) =>
      fetch(url, {
        ...init,
        method: options.method || "GET",
        body: options.body,
        headers: { ...init.headers, ...(options.headers || {}) },
      }),
  });
  // Every event the client dispatches, whatever its type (no listener per type needed).
  const dispatch = source.dispatchEvent.bind(source);
  source.dispatchEvent = (event) => {
    if (event.type !== "error" && event.type !== "open") {
      post({ kind: "event", event: { type: event.type, data: event.data, id: event.lastEventId } });
    }
    return dispatch(event);
  };
  return source;
}

async function body(request) {
  let text = "";
  for await (const chunk of request) text += chunk;
  return text ? JSON.parse(text) : {};
}

const server = http.createServer(async (request, response) => {
  const answer = (status, headers = {}, text = "") => {
    response.writeHead(status, headers);
    response.end(text);
  };
  if (request.url === "/" && request.method === "GET") {
    return answer(200, { "content-type": "application/json" },
      JSON.stringify({ name: "npm eventsource", capabilities: CAPABILITIES }));
  }
  if (request.url === "/" && request.method === "POST") {
    const options = await body(request);
    if (options.lastEventId || options.readTimeoutMs) return answer(400);
    const key = String(++created);
    clients.set(key, start(options));
    return answer(201, { location: `/clients/${key}` });
  }
  const key = request.url.split("/")[2];
  const source = clients.get(key);
  if (!source) return answer(404);
  if (request.method === "DELETE") {
    source.close();
    clients.delete(key);
    return answer(204);
  }
  return answer(400); // no commands (restart) in this client's API
});
server.listen(Number(process.argv[2] || 8000), "127.0.0.1");
