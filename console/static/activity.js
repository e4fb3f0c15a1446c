// Activity: recent calls and texts, both directions, newest first; each opens its timeline.
// Two paged lists (calls, messages) merged by time: a record is shown only once every list
// that has older pages has been read past it, so "Older" never slips one in between.

import * as api from "./api.js";
import { byId, fill, h, keepingFocus, say } from "./dom.js";
import { errorCode } from "./errors.js";
import { duration, phone, shortSid, timeElement } from "./format.js";
import { poller } from "./poll.js";
import * as timeline from "./timeline.js";
import { detailShows, setDetailTitle, showDetail } from "./ui.js";

const PAGE = 20;
const REFRESH_MS = 10_000;
const KINDS = {
  call: { path: "calls", field: "calls" },
  message: { path: "messages", field: "messages" },
};

const records = new Map(); // sid -> record (without events)
const streams = {};
let openSid = null;
let openKind = null;
let section;

function reset() {
  records.clear();
  for (const kind of Object.keys(KINDS)) {
    streams[kind] = { next: null, pages: 0, oldest: null };
  }
}

function time(record) {
  const value = Date.parse(record.created_at || "");
  return Number.isNaN(value) ? 0 : value;
}

function take(kind, items, stream) {
  for (const item of items) {
    if (!item || typeof item.sid !== "string") continue;
    records.set(item.sid, { ...item, kind: item.kind || kind });
    const at = time(item);
    if (stream.oldest === null || at < stream.oldest) stream.oldest = at;
  }
}

async function firstPages() {
  const answers = await Promise.all(Object.entries(KINDS).map(([kind, spec]) =>
    api.get(spec.path, { limit: PAGE }).then(({ data }) => [kind, data])));
  for (const [kind, data] of answers) {
    const stream = streams[kind];
    take(kind, (data && data[KINDS[kind].field]) || [], stream);
    if (stream.pages <= 1) {
      stream.next = data ? data.next : null;
      stream.pages = 1;
    }
  }
}

/** The time before which a record may not be shown yet: the newest "oldest loaded" among the
 * lists that have older pages. */
function horizon() {
  let limit = null;
  for (const stream of Object.values(streams)) {
    if (stream.next && stream.oldest !== null && (limit === null || stream.oldest > limit)) {
      limit = stream.oldest;
    }
  }
  return limit;
}

function visible() {
  const limit = horizon();
  return [...records.values()]
    .filter((record) => limit === null || time(record) >= limit)
    .sort((a, b) => time(b) - time(a) || String(a.sid).localeCompare(String(b.sid)));
}

/** "Voicemail (23 s): Hi, it's Sam…" for a call that left one. */
function voicemailLine(record) {
  const recordings = Array.isArray(record.recordings) ? record.recordings : [];
  const voicemail = recordings[0];
  if (!voicemail) return "";
  const length = duration(voicemail.duration_seconds);
  return `Voicemail${length ? ` (${length})` : ""}` +
    (voicemail.transcription ? `: ${voicemail.transcription}` : "");
}

function rowFor(record) {
  const isIn = timeline.inbound(record);
  const other = isIn ? record.from : record.to;
  const text = record.text || voicemailLine(record);
  return h("li", { class: "row", dataset: { sid: record.sid, kind: record.kind } },
    h("button", { type: "button", class: "row-open", onclick: () => open(record.kind, record.sid) },
      h("span", { class: "row-line" },
        h("span", { class: `kind kind-${record.kind}`, text: record.kind === "call" ? "Call" : "Text" }),
        h("span", { class: "direction", text: isIn ? "from" : "to" }),
        h("span", { class: "number", text: phone(other) || "unknown" }),
        timeline.badge(record.status)),
      h("span", { class: "row-line meta" },
        timeElement(record.created_at, true),
        record.error_code ? h("span", { class: "error-code", text: `error ${errorCode(record.error_code) ?? "(not a code)"}` }) : null,
        text ? h("span", { class: "snippet", text }) : h("span", { class: "sid", title: record.sid, text: shortSid(record.sid) }))));
}

function render() {
  const shown = visible();
  const list = byId("activity-list");
  keepingFocus(list, "sid", () => fill(list, shown.map(rowFor)));
  byId("activity-empty").hidden = shown.length > 0;
  byId("activity-older").hidden = !Object.values(streams).some((s) => s.next);
}

async function refresh() {
  section.setAttribute("aria-busy", "true");
  try {
    await firstPages();
    render();
    say(byId("activity-status"), "");
    section.dataset.state = "ready";
    if (openSid && detailShows(openSid)) await showRecord(openKind, openSid);
  } catch (error) {
    if (error instanceof api.KeyRefused) return;
    section.dataset.state = "error";
    say(byId("activity-status"), api.describe(error), "error");
    throw error;
  } finally {
    section.removeAttribute("aria-busy");
  }
}

async function older() {
  const button = byId("activity-older");
  button.disabled = true;
  try {
    const before = visible().length;
    for (let round = 0; round < 3; round += 1) {
      const limit = horizon();
      const due = Object.entries(streams).filter(([, s]) => s.next && s.oldest === limit);
      if (!due.length) break;
      for (const [kind, stream] of due) {
        const { data } = await api.get(KINDS[kind].path, { limit: PAGE, continuation: stream.next });
        take(kind, (data && data[KINDS[kind].field]) || [], stream);
        stream.next = data ? data.next : null;
        stream.pages += 1;
      }
      if (visible().length > before) break;
    }
    render();
  } catch (error) {
    if (!(error instanceof api.KeyRefused)) say(byId("activity-status"), api.describe(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function showRecord(kind, sid) {
  const { data } = await api.get(`${KINDS[kind].path}/${encodeURIComponent(sid)}`);
  if (!detailShows(sid)) return;
  records.set(sid, { ...records.get(sid), ...data, events: undefined, kind });
  setDetailTitle(sid, timeline.title({ ...data, kind }));
  fill(document.getElementById("detail-body"), timeline.render({ ...data, kind }));
}

async function open(kind, sid) {
  openSid = sid;
  openKind = kind;
  const record = records.get(sid) || { kind, sid };
  const body = showDetail(sid, timeline.title(record));
  body.append(h("p", { class: "hint", text: "Loading the timeline…" }));
  try {
    await showRecord(kind, sid);
  } catch (error) {
    if (!(error instanceof api.KeyRefused) && detailShows(sid)) {
      fill(body, h("p", { class: "status", dataset: { kind: "error" }, role: "alert", text: api.describe(error) }));
    }
  }
}

const timer = poller(refresh, REFRESH_MS);

export default {
  id: "activity",
  init() {
    section = byId("view-activity");
    reset();
    byId("activity-refresh").addEventListener("click", () => {
      refresh().catch(() => {});
      timer.reschedule();
    });
    byId("activity-older").addEventListener("click", older);
  },
  show() {
    section.dataset.state = section.dataset.state === "ready" ? "ready" : "loading";
    refresh().catch(() => {});
    timer.start();
  },
  hide() {
    timer.stop();
  },
  forget() {
    reset();
    openSid = null;
    fill(byId("activity-list"));
    delete section.dataset.state;
  },
};
