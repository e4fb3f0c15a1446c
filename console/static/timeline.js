// One call's or text's record: what was created, every status event with its time, errors
// with Twilio's code, a sentence of advice and a link to Twilio's page about the code.

import { h } from "./dom.js";
import { advice, docsUrl, errorCode } from "./errors.js";
import { duration, phone, timeElement } from "./format.js";

const OK = new Set(["completed", "delivered", "received", "read"]);
const BAD = new Set(["failed", "undelivered", "busy", "no-answer", "canceled"]);

/** "ok", "bad" or "pending": the colour of a status badge. */
export function tone(status) {
  if (OK.has(status)) return "ok";
  if (BAD.has(status)) return "bad";
  return "pending";
}

/** A status badge; `as` overrides its colour ("ok", "bad" or "pending"). */
export function badge(status, as) {
  const text = status || "unknown";
  return h("span", { class: `badge tone-${as || tone(status)}`, text });
}

const DIRECTIONS = {
  inbound: "inbound (to the app's number)",
  "outbound-api": "outbound (placed by the app)",
  "outbound-dial": "outbound (dialled by a call flow)",
  "outbound-reply": "outbound (a reply)",
};

export function inbound(record) {
  return record.direction === "inbound";
}

/** "Call to +1 415-555-0100", "Text from …". */
export function title(record) {
  const noun = record.kind === "call" ? "Call" : "Text";
  return inbound(record)
    ? `${noun} from ${phone(record.from) || "an unknown number"}`
    : `${noun} to ${phone(record.to) || "an unknown number"}`;
}

/** Error code, advice and Twilio's page, as DOM nodes. */
export function errorNote(code, message) {
  const number = errorCode(code);
  if (number === null) return null;
  const link = h("a", {
    href: docsUrl(number), target: "_blank", rel: "noopener noreferrer external",
    text: `Twilio's page on error ${number}`,
  });
  const said = advice(number);
  return h("div", { class: "error-note", dataset: { code: String(number) } },
    h("strong", { text: `Error ${number}` }),
    message ? h("span", { class: "error-message", text: ` (${message})` }) : null,
    said ? h("span", { class: "advice", text: ` ${said}` }) : null,
    " ", link);
}

const EVENT_LABELS = {
  SequenceNumber: "sequence",
  Timestamp: "Twilio's time",
  CallDuration: "duration",
  AnsweredBy: "answered by",
  SipResponseCode: "SIP response",
  RawDlrDoneDate: "carrier's delivery time",
};

function eventItem(event) {
  const details = [];
  for (const [name, label] of Object.entries(EVENT_LABELS)) {
    const value = event[name];
    if (value === undefined || value === null || value === "") continue;
    const shown = name === "CallDuration" && /^[0-9]+$/.test(String(value))
      ? duration(Number(value)) : String(value);
    details.push(`${label}: ${shown}`);
  }
  return h("li", { class: "event", dataset: { status: event.status || "" } },
    h("span", { class: "event-head" }, badge(event.status), " ", timeElement(event.received_at)),
    details.length ? h("span", { class: "event-details", text: details.join(" · ") }) : null,
    errorNote(event.ErrorCode, event.ErrorMessage));
}

function row(label, ...value) {
  return [h("dt", { text: label }), h("dd", null, ...value)];
}

/** The whole timeline of `record` (GET /api/calls/{sid} or /api/messages/{sid}). */
export function render(record) {
  const isCall = record.kind === "call";
  const events = Array.isArray(record.events) ? record.events : [];
  const facts = h("dl", { class: "facts" },
    row("Status", badge(record.status)),
    row("From", phone(record.from) || "unknown"),
    row("To", phone(record.to) || "unknown"),
    row("Created", timeElement(record.created_at)),
    row("Direction", DIRECTIONS[record.direction] || record.direction || "unknown"),
    row("SID", h("code", { text: record.sid || "" })),
    record.text ? row(isCall ? "Message spoken" : "Text", h("span", { class: "body-text", text: record.text })) : null,
    record.num_media ? row("Media", `${record.num_media} attachment(s), not shown here`) : null,
    record.keyword ? row("Keyword", record.keyword) : null,
    // The record's error, when no event below shows it already.
    record.error_code && !events.some((e) => String(e.ErrorCode) === String(record.error_code))
      ? row("Error", errorNote(record.error_code)) : null,
  );
  const list = events.length
    ? h("ol", { class: "timeline" }, events.map(eventItem))
    : h("p", { class: "hint", text: "No status callback has arrived yet." });
  const parts = [facts, h("h3", { text: "Status events" }), list];
  const recordings = Array.isArray(record.recordings) ? record.recordings : [];
  if (recordings.length) {
    parts.push(h("h3", { text: "Recordings" }), h("ul", { class: "plain" }, recordings.map((r) =>
      h("li", null,
        h("code", { text: r.sid || "" }), " ",
        r.status ? badge(r.status) : null, " ",
        duration(r.duration_seconds),
        r.transcription ? h("p", { class: "body-text", text: r.transcription }) : null))));
  }
  return parts;
}
