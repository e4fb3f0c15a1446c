// Voicemails: caller, time, duration, transcription; play (the recording fetched with the key
// through the app's own /api/recordings/ proxy, played from a blob: URL, so neither the key nor
// Twilio's URL is ever in a URL the page loads); delete (at Twilio too, after asking).

import * as api from "./api.js";
import { append, byId, fill, h, say } from "./dom.js";
import { duration, phone, timeElement } from "./format.js";
import { ask } from "./ui.js";

const PAGE = 20;
const SID = /^RE[0-9a-fA-F]{32}$/;

let section;
let items = [];
let next = null;
const audio = new Map(); // recording SID -> blob: URL of its media, fetched once

function transcription(item) {
  if (item.transcription) return h("p", { class: "body-text transcription", text: item.transcription });
  const status = item.transcription_status;
  const text = status === "failed" ? "The transcription failed."
    : status === "in-progress" || status === "queued" ? "Transcription on its way…"
      : "No transcription.";
  return h("p", { class: "hint", text });
}

function card(item) {
  const player = h("div", { class: "player" });
  const deleted = Boolean(item.deleted);
  const playButton = h("button", { type: "button", class: "play", text: "Play" });
  const deleteButton = h("button", { type: "button", class: "danger-outline", text: "Delete…" });
  const note = h("p", { class: "status", hidden: true });
  playButton.addEventListener("click", () => play(item, player, playButton, note));
  deleteButton.addEventListener("click", () => remove(item, deleteButton, note));
  const seconds = duration(item.duration_seconds);
  return h("li", { class: "card", dataset: { sid: item.sid, deleted: String(deleted) } },
    h("div", { class: "row-line" },
      h("strong", { class: "number", text: phone(item.from) || "unknown caller" }),
      timeElement(item.created_at),
      seconds ? h("span", { class: "duration", text: seconds }) : null,
      deleted ? h("span", { class: "badge tone-pending", text: "deleted" }) : null),
    transcription(item),
    deleted ? h("p", { class: "hint", text: "The recording was deleted at Twilio." })
      : h("div", { class: "actions" }, playButton, deleteButton),
    player, note);
}

async function play(item, player, button, note) {
  if (!SID.test(item.sid || "")) return;
  button.disabled = true;
  say(note, "");
  try {
    let source = audio.get(item.sid);
    if (!source) {
      button.textContent = "Loading…";
      const response = await api.request("GET", `recordings/${item.sid}.mp3`, { raw: true });
      const blob = await response.blob();
      source = URL.createObjectURL(blob);
      audio.set(item.sid, source);
    }
    let element = player.querySelector("audio");
    if (!element) {
      element = h("audio", { controls: true, preload: "auto" });
      element.setAttribute("aria-label", `Voicemail from ${phone(item.from) || "unknown caller"}`);
      fill(player, element);
    }
    element.src = source;
    element.play().catch(() => {
      // no autoplay here: the controls are there to press
    });
    button.textContent = "Play";
  } catch (error) {
    button.textContent = "Play";
    if (!(error instanceof api.KeyRefused)) say(note, api.describe(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function remove(item, button, note) {
  const who = phone(item.from) || "an unknown caller";
  const confirmed = await ask({
    title: "Delete this voicemail?",
    text: `The voicemail from ${who} is deleted at Twilio, and marked deleted here: it cannot ` +
      "be played again. Twilio keeps a recording, and charges for storing it, until it is deleted.",
    confirm: "Delete at Twilio",
    danger: true,
  });
  if (confirmed === null) return;
  button.disabled = true;
  try {
    await api.del(`voicemails/${encodeURIComponent(item.sid)}`);
    const source = audio.get(item.sid);
    if (source) URL.revokeObjectURL(source);
    audio.delete(item.sid);
    say(byId("voicemails-status"), `The voicemail from ${who} was deleted at Twilio.`, "ok");
    await load();
    byId("voicemails-status").focus(); // the button pressed is gone with the old list
  } catch (error) {
    if (!(error instanceof api.KeyRefused)) say(note, api.describe(error), "error");
  } finally {
    button.disabled = false;
  }
}

function render() {
  fill(byId("voicemails-list"), items.map(card));
  byId("voicemails-empty").hidden = items.length > 0;
  byId("voicemails-older").hidden = !next;
}

async function load() {
  section.setAttribute("aria-busy", "true");
  try {
    const { data } = await api.get("voicemails", { limit: PAGE });
    items = (data && data.voicemails) || [];
    next = data ? data.next : null;
    render();
    section.dataset.state = "ready";
  } catch (error) {
    if (error instanceof api.KeyRefused) return;
    section.dataset.state = "error";
    say(byId("voicemails-status"), api.describe(error), "error");
  } finally {
    section.removeAttribute("aria-busy");
  }
}

async function older() {
  const button = byId("voicemails-older");
  button.disabled = true;
  try {
    const { data } = await api.get("voicemails", { limit: PAGE, continuation: next });
    const more = (data && data.voicemails) || [];
    next = data ? data.next : null;
    items = items.concat(more);
    append(byId("voicemails-list"), more.map(card));
    byId("voicemails-older").hidden = !next;
  } catch (error) {
    if (!(error instanceof api.KeyRefused)) say(byId("voicemails-status"), api.describe(error), "error");
  } finally {
    button.disabled = false;
  }
}

export default {
  id: "voicemails",
  init() {
    section = byId("view-voicemails");
    byId("voicemails-refresh").addEventListener("click", () => {
      say(byId("voicemails-status"), "");
      load();
    });
    byId("voicemails-older").addEventListener("click", older);
  },
  show() {
    say(byId("voicemails-status"), "");
    if (section.dataset.state !== "ready") section.dataset.state = "loading";
    load();
  },
  hide() {},
  forget() {
    items = [];
    next = null;
    for (const source of audio.values()) URL.revokeObjectURL(source);
    audio.clear();
    fill(byId("voicemails-list"));
    delete section.dataset.state;
  },
};
