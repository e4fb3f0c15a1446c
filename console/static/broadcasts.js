// Broadcasts: each with a progress bar (queued, sent, delivered, failed, refused), polled while
// any is still going; one opens its recipients, a page at a time.

import * as api from "./api.js";
import { append, byId, fill, h, keepingFocus, say } from "./dom.js";
import { phone, shortSid, timeElement } from "./format.js";
import { poller } from "./poll.js";
import { badge } from "./timeline.js";
import { detailShows, showDetail } from "./ui.js";

const PAGE = 20;
const RECIPIENTS_PAGE = 50;
const POLL_MS = 2_500;

let section;
let items = [];
let next = null;
let openId = null;

// The bar's parts, in order. `sent` counts every recipient handed to Twilio; `delivery` says
// how many of those Twilio's final status callback reported delivered or not (a call: answered
// or not), so a sent one is delivered, not delivered, or still waiting for its report.
const SEGMENTS = [
  ["delivered", "delivered"],
  ["sent", "sent, no report yet"],
  ["undelivered", "not delivered"],
  ["failed", "failed"],
  ["refused", "refused"],
  ["queued", "queued"],
];

function number(value) {
  return typeof value === "number" && Number.isFinite(value) && value > 0 ? value : 0;
}

export function parts(counts, delivery) {
  const c = counts || {};
  const d = delivery || {};
  const sent = number(c.sent);
  const delivered = Math.min(number(d.delivered), sent);
  const undelivered = Math.min(number(d.undelivered), sent - delivered);
  const shown = {
    delivered, sent: sent - delivered - undelivered, undelivered,
    failed: number(c.failed), refused: number(c.refused), queued: number(c.queued),
  };
  const total = Object.values(shown).reduce((a, b) => a + b, 0);
  return { shown, total };
}

export function isDone(counts) {
  return Boolean(counts) && number(counts.queued) === 0;
}

function bar(counts, delivery) {
  const { shown, total } = parts(counts, delivery);
  const summary = SEGMENTS.map(([name, label]) => `${shown[name]} ${label}`).join(", ");
  const element = h("div", { class: "bar", role: "img", "aria-label": `${summary} (of ${total})` });
  for (const [name] of SEGMENTS) {
    if (!shown[name]) continue;
    const segment = h("span", { class: `segment segment-${name}`, dataset: { part: name } });
    // CSSOM, which the Content-Security-Policy allows (a style="" attribute it would not).
    segment.style.width = `${(100 * shown[name]) / total}%`;
    element.append(segment);
  }
  const legend = h("p", { class: "legend" }, SEGMENTS.map(([name, label]) =>
    h("span", { class: `key key-${name}`, dataset: { part: name } },
      h("span", { class: "swatch", "aria-hidden": "true" }), `${shown[name]} ${label}`)));
  return [element, legend];
}

function kindName(kind) {
  return kind === "call" ? "Call broadcast" : "Text broadcast";
}

function card(item) {
  const done = isDone(item.counts);
  return h("li", { class: "card", dataset: { id: item.id, state: done ? "done" : "running" } },
    h("div", { class: "row-line" },
      h("strong", { text: kindName(item.kind) }),
      timeElement(item.created_at),
      h("span", { class: `badge ${done ? "tone-ok" : "tone-pending"}`, text: done ? "done" : "sending" })),
    bar(item.counts, item.delivery),
    h("div", { class: "actions" },
      h("button", { type: "button", onclick: () => open(item), text: "Recipients" }),
      h("code", { class: "hint", title: item.id, text: item.id })));
}

function render() {
  const list = byId("broadcasts-list");
  keepingFocus(list, "id", () => fill(list, items.map(card)));
  byId("broadcasts-empty").hidden = items.length > 0;
  byId("broadcasts-older").hidden = !next;
}

async function load() {
  section.setAttribute("aria-busy", "true");
  try {
    const { data } = await api.get("broadcasts", { limit: PAGE });
    const fresh = (data && data.broadcasts) || [];
    // Pages read with "Older" stay; the first page is read afresh.
    const seen = new Set(fresh.map((b) => b.id));
    items = fresh.concat(items.filter((b) => !seen.has(b.id) && pagedIn.has(b.id)));
    if (!pagedIn.size) next = data ? data.next : null;
    render();
    section.dataset.state = "ready";
    say(byId("broadcasts-status"), "");
    if (openId && detailShows(openId)) await recipients(openId, false);
  } catch (error) {
    if (error instanceof api.KeyRefused) return;
    section.dataset.state = "error";
    say(byId("broadcasts-status"), api.describe(error), "error");
  } finally {
    section.removeAttribute("aria-busy");
  }
}

const pagedIn = new Set();

async function older() {
  const button = byId("broadcasts-older");
  button.disabled = true;
  try {
    const { data } = await api.get("broadcasts", { limit: PAGE, continuation: next });
    const more = (data && data.broadcasts) || [];
    next = data ? data.next : null;
    for (const b of more) pagedIn.add(b.id);
    items = items.concat(more.filter((b) => !items.some((i) => i.id === b.id)));
    render();
  } catch (error) {
    if (!(error instanceof api.KeyRefused)) say(byId("broadcasts-status"), api.describe(error), "error");
  } finally {
    button.disabled = false;
  }
}

// A recipient's state: sent is settled (its delivery is the next column), failed and refused
// are not going anywhere, queued is waiting.
const STATE_TONES = { sent: "ok", failed: "bad", refused: "bad", queued: "pending" };

function recipientRow(r) {
  return h("tr", { dataset: { to: r.to || "" } },
    h("td", { class: "number-cell", text: phone(r.to) }),
    h("td", null, badge(r.state, STATE_TONES[r.state])),
    h("td", null, r.delivery ? badge(r.delivery) : "—"),
    h("td", { class: "body-text", text: r.error || "" }),
    h("td", null, r.sid ? h("code", { title: r.sid, text: shortSid(r.sid) }) : "—"));
}

let recipientsNext = null;

async function recipients(id, first) {
  const { data } = await api.get(`broadcasts/${encodeURIComponent(id)}`, { limit: RECIPIENTS_PAGE });
  if (!detailShows(id)) return;
  const body = byId("detail-body");
  const table = h("table", { class: "recipients" },
    h("caption", { class: "visually-hidden", text: "Recipients" }),
    h("thead", null, h("tr", null, ["To", "State", "Delivery", "Error", "SID"].map((t) =>
      h("th", { scope: "col", text: t })))),
    h("tbody", { id: "recipients-rows" }, (data.recipients || []).map(recipientRow)));
  // Once more pages were read, a refresh leaves the list (and where "More" goes on) alone.
  if (first || !recipientsPaged) {
    recipientsNext = data.next;
    const more = h("button", { type: "button", id: "recipients-more", hidden: !recipientsNext, text: "More recipients" });
    more.addEventListener("click", () => moreRecipients(id, more));
    fill(body,
      h("p", null, `${kindName(data.kind)}, started `, timeElement(data.created_at)),
      data.counts ? bar(data.counts, data.delivery) : null,
      h("div", { class: "table-wrap" }, table), more);
  }
}

let recipientsPaged = false;

async function moreRecipients(id, button) {
  button.disabled = true;
  try {
    const { data } = await api.get(`broadcasts/${encodeURIComponent(id)}`,
      { limit: RECIPIENTS_PAGE, continuation: recipientsNext });
    if (!detailShows(id)) return;
    recipientsPaged = true;
    append(byId("recipients-rows"), (data.recipients || []).map(recipientRow));
    recipientsNext = data.next;
    button.hidden = !recipientsNext;
  } catch (error) {
    if (!(error instanceof api.KeyRefused)) button.after(h("p", { class: "status", dataset: { kind: "error" }, role: "alert", text: api.describe(error) }));
  } finally {
    button.disabled = false;
  }
}

async function open(item) {
  openId = item.id;
  recipientsPaged = false;
  const body = showDetail(item.id, `${kindName(item.kind)} ${item.id}`);
  body.append(h("p", { class: "hint", text: "Loading the recipients…" }));
  try {
    await recipients(item.id, true);
  } catch (error) {
    if (!(error instanceof api.KeyRefused) && detailShows(item.id)) {
      fill(body, h("p", { class: "status", dataset: { kind: "error" }, role: "alert", text: api.describe(error) }));
    }
  }
}

// Poll only while a broadcast is still going.
const timer = poller(load, () => (items.some((b) => !isDone(b.counts)) ? POLL_MS : null));

export default {
  id: "broadcasts",
  init() {
    section = byId("view-broadcasts");
    byId("broadcasts-refresh").addEventListener("click", () => load().then(() => timer.reschedule()));
    byId("broadcasts-older").addEventListener("click", older);
  },
  show() {
    if (section.dataset.state !== "ready") section.dataset.state = "loading";
    timer.start();
    load().then(() => timer.reschedule());
  },
  hide() {
    timer.stop();
  },
  forget() {
    items = [];
    next = null;
    pagedIn.clear();
    fill(byId("broadcasts-list"));
    delete section.dataset.state;
  },
};
