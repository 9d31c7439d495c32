// Reads an event stream with npm's `eventsource` (as a Node app would) until the server stops
// it (HTTP 204 closes the EventSource), then prints every event it got as JSON.
// Usage: node read_stream.mjs URL [event type...]
import { EventSource } from "eventsource";

const [url, ...types] = process.argv.slice(2);
const source = new EventSource(url);
const got = [];
const record = (event) => got.push({ type: event.type, data: event.data, id: event.lastEventId });
source.onmessage = record;
for (const type of types) source.addEventListener(type, record);
source.onerror = () => {
  if (source.readyState === EventSource.CLOSED) {
    console.log(JSON.stringify(got));
    process.exit(0);
  }
};
setTimeout(() => {
  console.log(JSON.stringify({ timedOut: true, got }));
  process.exit(1);
}, 60000);
