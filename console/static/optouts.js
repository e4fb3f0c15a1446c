// Opt-outs: who replied STOP (or was reported by Twilio with 21610), paged; clearing one asks
// for a reason, which the app keeps with who cleared it and when.

import * as api from "./api.js";
import { append, byId, fill, h, say } from "./dom.js";
import { phone, timeElement } from "./format.js";
import { ask } from "./ui.js";

const PAGE = 20;
const MAX_REASON = 200;

let section;
let next = null;

function row(item) {
  const clear = h("button", { type: "button", class: "danger-outline", text: "Clear…" });
  clear.addEventListener("click", () => clearOne(item, clear));
  return h("li", { class: "card", dataset: { number: item.number || "", sender: item.sender || "" } },
    h("div", { class: "row-line" },
      h("strong", { class: "number", text: phone(item.number) }),
      h("span", { class: "hint", text: `opted out of texts from ${phone(item.sender)}` })),
    h("div", { class: "row-line meta" },
      item.changed_at ? timeElement(item.changed_at) : null,
      item.how ? h("span", { class: "body-text", text: item.how }) : null),
    h("div", { class: "actions" }, clear));
}

async function clearOne(item, button) {
  const reason = await ask({
    title: `Clear the opt-out of ${phone(item.number)}?`,
    text: "Only when the person asked to receive texts again some other way, or the opt-out " +
      "was a mistake. The app keeps who cleared it, when and why. Twilio keeps its own " +
      "opt-out until the person texts START.",
    confirm: "Clear the opt-out",
    input: { label: "Reason (kept with the change)", maxLength: MAX_REASON, required: true },
  });
  if (reason === null) return;
  button.disabled = true;
  try {
    const { data } = await api.post("optouts/clear",
      { sender: item.sender, number: item.number, reason });
    say(byId("optouts-status"),
      `Cleared: ${phone(item.number)} may be texted again from ${phone(item.sender)}` +
      (data && data.how ? ` (${data.how}).` : "."), "ok");
    await load(false);
    byId("optouts-status").focus(); // the button pressed is gone with the old list
  } catch (error) {
    if (!(error instanceof api.KeyRefused)) say(byId("optouts-status"), api.describe(error), "error");
  } finally {
    button.disabled = false;
  }
}

async function load(clearStatus = true) {
  section.setAttribute("aria-busy", "true");
  if (clearStatus) say(byId("optouts-status"), "");
  try {
    const { data } = await api.get("optouts", { limit: PAGE });
    const items = (data && data.optouts) || [];
    next = data ? data.next : null;
    fill(byId("optouts-list"), items.map(row));
    byId("optouts-empty").hidden = items.length > 0;
    byId("optouts-older").hidden = !next;
    section.dataset.state = "ready";
  } catch (error) {
    if (error instanceof api.KeyRefused) return;
    section.dataset.state = "error";
    say(byId("optouts-status"), api.describe(error), "error");
  } finally {
    section.removeAttribute("aria-busy");
  }
}

async function older() {
  const button = byId("optouts-older");
  button.disabled = true;
  try {
    const { data } = await api.get("optouts", { limit: PAGE, continuation: next });
    append(byId("optouts-list"), ((data && data.optouts) || []).map(row));
    next = data ? data.next : null;
    button.hidden = !next;
  } catch (error) {
    if (!(error instanceof api.KeyRefused)) say(byId("optouts-status"), api.describe(error), "error");
  } finally {
    button.disabled = false;
  }
}

export default {
  id: "optouts",
  init() {
    section = byId("view-optouts");
    byId("optouts-refresh").addEventListener("click", () => load());
    byId("optouts-older").addEventListener("click", older);
  },
  show() {
    if (section.dataset.state !== "ready") section.dataset.state = "loading";
    load();
  },
  hide() {},
  forget() {
    next = null;
    fill(byId("optouts-list"));
    delete section.dataset.state;
  },
};
