// Acting: place a call, send a text, start a broadcast. Each submission gets one
// Idempotency-Key, kept while the same submission is retried (the button is disabled while it
// is in flight; a request that got no answer is retried with the same key), so a double click
// or a retry never calls or texts twice. Refusals show the app's own words.

import * as api from "./api.js";
import { byId, fill, h } from "./dom.js";
import { errorNote } from "./timeline.js";
import { phone, typedNumber } from "./format.js";

// Answers after which the same submission may be retried with the same key: nothing was done,
// or the outcome is unknown (the app looks the first attempt up instead of sending again).
const KEEP_KEY = new Set([409, 429, 500, 502, 503, 504]);
const ATTEMPTS = 3;
const MAX_FILE_BYTES = 2_000_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function result(container, kind, ...nodes) {
  container.dataset.kind = kind;
  container.setAttribute("role", kind === "error" ? "alert" : "status");
  container.hidden = false;
  fill(container, ...nodes);
}

/** POST with the key; retried (same key) when no answer came back, or while the first attempt
 * is still in flight (409). */
async function postOnce(path, body, idempotencyKey, progress) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await api.post(path, body, { headers: { "Idempotency-Key": idempotencyKey } });
    } catch (error) {
      const again = attempt < ATTEMPTS && (error instanceof api.NetworkError
        || (error instanceof api.ApiError && error.status === 409));
      if (!again) throw error;
      const after = error instanceof api.ApiError ? 2000 : 1000 * attempt;
      progress(`No answer yet; trying again with the same Idempotency-Key (attempt ${attempt + 1} of ${ATTEMPTS})…`);
      await sleep(after);
    }
  }
}

/** Wire `form`: `build()` returns the JSON body (or throws Error with a message to show);
 * `done(answer)` returns the nodes that say what happened. */
function guard({ form, button, output, path, build, done }) {
  let pending = null; // {key, fingerprint} of the submission in progress or to retry
  let busy = false;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    let body;
    try {
      body = build();
    } catch (error) {
      result(output, "error", error.message);
      return;
    }
    busy = true;
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    const fingerprint = JSON.stringify(body);
    if (!pending || pending.fingerprint !== fingerprint) {
      pending = { key: api.newIdempotencyKey(), fingerprint };
    }
    result(output, "info", "Sending…");
    try {
      const answer = await postOnce(path, body, pending.key, (text) => result(output, "info", text));
      pending = null;
      result(output, answer.data && answer.data.error ? "error" : "ok", ...done(answer));
    } catch (error) {
      if (error instanceof api.KeyRefused) {
        result(output, "error", error.message);
      } else if (error instanceof api.NetworkError) {
        result(output, "error", `${error.message} Whether it went through is unknown: press the button ` +
          "again to retry; the same Idempotency-Key is sent, so it is not sent twice.");
      } else if (error instanceof api.ApiError) {
        if (!KEEP_KEY.has(error.status)) pending = null;
        const nodes = [h("p", { class: "app-error", text: error.message })];
        if (error.body.twilio_code) nodes.push(errorNote(error.body.twilio_code));
        if (KEEP_KEY.has(error.status)) {
          nodes.push(h("p", { class: "hint", text: "Pressing the button again retries with the " +
            "same Idempotency-Key: the app looks the first attempt up rather than sending twice." }));
        }
        result(output, "error", ...nodes);
      } else {
        result(output, "error", api.describe(error));
      }
    } finally {
      busy = false;
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
}

function field(id) {
  return byId(id).value;
}

function activityLink() {
  return h("a", { href: "#activity", text: "See it in Activity" });
}

// ---- numbers for a broadcast ---------------------------------------------------------------

/** Numbers pasted one a line or separated by commas (or semicolons, tabs). */
export function pastedNumbers(text) {
  const numbers = [];
  for (const cell of String(text || "").split(/[\r\n,;\t]+/)) {
    const value = cell.trim().replace(/^["']+|["']+$/g, "").trim();
    if (value) numbers.push(typedNumber(value));
  }
  return numbers;
}

/** The phone numbers in a CSV file: every cell that looks like one (a header row, names and
 * other columns are left out). */
export function csvNumbers(text) {
  const numbers = [];
  for (const line of String(text || "").split(/\r\n|\n|\r/)) {
    for (const cell of line.split(/[,;\t]/)) {
      const value = cell.trim().replace(/^["']+|["']+$/g, "").trim();
      const digits = value.replace(/[^0-9]/g, "");
      if (/^\+?[0-9\s().\-]+$/.test(value) && digits.length >= 7) numbers.push(typedNumber(value));
    }
  }
  return numbers;
}

function unique(numbers) {
  return [...new Set(numbers)];
}

function broadcastKind() {
  const checked = document.querySelector('input[name="broadcast-kind"]:checked');
  return checked && checked.value === "call" ? "call" : "sms";
}

function updateBroadcastForm() {
  const kind = broadcastKind();
  const text = byId("broadcast-text");
  byId("broadcast-text-label").textContent = kind === "call"
    ? "Message spoken to each (optional: else the greeting)" : "Text to send";
  text.maxLength = kind === "call" ? 1000 : 1600;
  text.required = kind === "sms";
  const count = unique(pastedNumbers(field("broadcast-numbers"))).length;
  byId("broadcast-count").textContent = count === 1 ? "1 number" : `${count} numbers`;
}

function readFile(input) {
  const file = input.files && input.files[0];
  const note = byId("broadcast-file-note");
  if (!file) return;
  if (file.size > MAX_FILE_BYTES) {
    note.textContent = `${file.name} is over 2 MB: not read.`;
    return;
  }
  const reader = new FileReader();
  reader.addEventListener("load", () => {
    const numbers = unique(csvNumbers(reader.result));
    byId("broadcast-numbers").value = numbers.join("\n");
    note.textContent = numbers.length
      ? `Read ${numbers.length} number${numbers.length === 1 ? "" : "s"} from ${file.name}.`
      : `No phone numbers found in ${file.name}.`;
    updateBroadcastForm();
  });
  reader.addEventListener("error", () => {
    note.textContent = `${file.name} could not be read.`;
  });
  reader.readAsText(file);
}

// ---- the three forms -----------------------------------------------------------------------

function wireCall() {
  guard({
    form: byId("call-form"),
    button: byId("call-submit"),
    output: byId("call-result"),
    path: "make_call",
    build() {
      const to = typedNumber(field("call-to"));
      if (!to) throw new Error("Enter the number to call.");
      const message = field("call-message").trim();
      return message ? { to, message } : { to };
    },
    done({ data }) {
      byId("call-result").dataset.sid = data.sid || "";
      return [h("p", null, `Call placed to ${phone(data.to)}: `, h("code", { text: data.sid || "" }),
        ` (${data.status || "queued"}). `, activityLink())];
    },
  });
}

function wireText() {
  guard({
    form: byId("text-form"),
    button: byId("text-submit"),
    output: byId("text-result"),
    path: "send_sms",
    build() {
      const to = typedNumber(field("text-to"));
      if (!to) throw new Error("Enter the number to text.");
      const body = field("text-body");
      if (!body.trim()) throw new Error("Write the text to send.");
      return { to, body };
    },
    done({ data }) {
      byId("text-result").dataset.sid = data.sid || "";
      return [h("p", null, `Text sent to ${phone(data.to)}: `, h("code", { text: data.sid || "" }),
        ` (${data.status || "queued"}). `, activityLink())];
    },
  });
}

function wireBroadcast() {
  for (const radio of document.querySelectorAll('input[name="broadcast-kind"]')) {
    radio.addEventListener("change", updateBroadcastForm);
  }
  byId("broadcast-numbers").addEventListener("input", updateBroadcastForm);
  byId("broadcast-file").addEventListener("change", (event) => readFile(event.target));
  updateBroadcastForm();
  guard({
    form: byId("broadcast-form"),
    button: byId("broadcast-submit"),
    output: byId("broadcast-result"),
    path: "broadcasts",
    build() {
      const kind = broadcastKind();
      const to = unique(pastedNumbers(field("broadcast-numbers")));
      if (!to.length) throw new Error("Enter the numbers, or read them from a CSV file.");
      const text = field("broadcast-text");
      if (kind === "sms") {
        if (!text.trim()) throw new Error("Write the text to send.");
        return { kind, to, body: text };
      }
      return text.trim() ? { kind, to, message: text } : { kind, to };
    },
    done({ data }) {
      const output = byId("broadcast-result");
      output.dataset.id = data.id || "";
      const refused = Array.isArray(data.refused) ? data.refused : [];
      const nodes = [h("p", null, `Broadcast `, h("code", { text: data.id || "" }),
        ` started: ${data.accepted} accepted, ${refused.length} refused. `,
        h("a", { href: "#broadcasts", text: "Follow its progress" }))];
      if (data.error) nodes.push(h("p", { class: "app-error", text: data.error }));
      if (refused.length) {
        nodes.push(h("ul", { class: "refused" }, refused.map((r) =>
          h("li", null, h("strong", { text: phone(r.to) }), `: ${r.error}`))));
      }
      return nodes;
    },
  });
}

export default {
  id: "act",
  init() {
    wireCall();
    wireText();
    wireBroadcast();
  },
  show() {
    byId("view-act").dataset.state = "ready";
  },
  hide() {},
  forget() {},
};
