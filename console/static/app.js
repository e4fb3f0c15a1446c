// The console: asks for the Functions key once (kept in this tab's sessionStorage only), then
// shows one view at a time, picked by the address's #fragment.

import activity from "./activity.js";
import act from "./act.js";
import * as api from "./api.js";
import broadcasts from "./broadcasts.js";
import { byId, say } from "./dom.js";
import optouts from "./optouts.js";
import softphone from "./softphone.js";
import { closeDetail, setUpDialogs } from "./ui.js";
import voicemails from "./voicemails.js";

const VIEWS = [activity, voicemails, broadcasts, optouts, act, softphone];
const DEFAULT_VIEW = "activity";

let current = null;

function viewFor(hash) {
  const id = String(hash || "").replace(/^#/, "");
  return VIEWS.find((view) => view.id === id) || null;
}

function showView(view) {
  if (current && current !== view) {
    current.hide();
    byId(`view-${current.id}`).hidden = true;
  }
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === `#${view.id}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  byId(`view-${view.id}`).hidden = false;
  current = view;
  view.show();
}

function route() {
  if (!api.key()) {
    askForKey(false);
    return;
  }
  const view = viewFor(location.hash) || (current ? null : viewFor(`#${DEFAULT_VIEW}`));
  if (view) showView(view);
}

function askForKey(refused) {
  if (current) {
    current.hide();
    byId(`view-${current.id}`).hidden = true;
    current = null;
  }
  closeDetail();
  for (const view of VIEWS) view.forget();
  byId("nav").hidden = true;
  byId("forget-key").hidden = true;
  byId("key-view").hidden = false;
  document.body.dataset.key = refused ? "refused" : "missing";
  say(byId("key-message"), refused
    ? "The app refused that key (HTTP 401): it is not a valid Functions key for this app. " +
      "Enter the key again."
    : "", "error");
  const input = byId("key-input");
  input.value = "";
  input.focus();
}

function keyEntered(event) {
  event.preventDefault();
  const value = byId("key-input").value.trim();
  if (!value) {
    say(byId("key-message"), "Enter the Functions key.", "error");
    return;
  }
  api.setKey(value);
  byId("key-input").value = "";
  byId("key-view").hidden = true;
  byId("nav").hidden = false;
  byId("forget-key").hidden = false;
  document.body.dataset.key = "given";
  say(byId("key-message"), "");
  route();
  byId("main").focus();
}

function start() {
  setUpDialogs();
  for (const view of VIEWS) view.init();
  api.onKeyRefused((refused) => askForKey(refused));
  byId("key-form").addEventListener("submit", keyEntered);
  byId("forget-key").addEventListener("click", () => {
    api.forgetKey();
    askForKey(false);
  });
  window.addEventListener("hashchange", () => {
    if (api.key()) route();
  });
  if (api.key()) {
    byId("key-view").hidden = true;
    byId("nav").hidden = false;
    byId("forget-key").hidden = false;
    document.body.dataset.key = "given";
    route();
  } else {
    askForKey(false);
  }
}

start();
