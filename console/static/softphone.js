// The softphone: calls from and to this browser through Twilio's Voice JavaScript SDK
// (@twilio/voice-sdk from npm, copied to vendor/ by scripts/build_console.py; never a CDN).
//
// Nothing happens until the view is first opened: then the SDK's script is added (a classic
// <script src>, the app's own file), a Voice access token is fetched from /api/voice_token with
// the Functions key, and a Twilio.Device is made and registered, so calls to this console's
// identity ring here from then on, whichever view is shown. The token lasts an hour at most; it
// is renewed before it ends (the Device's tokenWillExpire event, and a timer from ttl_seconds
// in case that event never comes). Calls go through the app's TwiML App, whose voice URL
// (client_voice) dials a number only within make_call's policy: the page passes what was typed
// as `To` and lets the app decide.

import * as api from "./api.js";
import { byId, fill, h } from "./dom.js";
import { advice, errorCode } from "./errors.js";
import { phone, typedNumber } from "./format.js";
import { errorNote } from "./timeline.js";
import { soundUrls } from "./tones.js";

const SDK_URL = new URL("vendor/twilio-voice-sdk.js", import.meta.url);
const CLIENT = /^client:(.*)$/i;
const IDENTITY = /^[A-Za-z0-9_]{1,121}$/; // what Twilio takes as a client's name
const RENEW_BEFORE_S = 300; // renew the token five minutes before it ends
const MIN_RENEW_S = 30;
const RETRY_RENEW_MS = 30_000;
// Twilio's codes for "Twilio cannot be reached": 31005 (connection error) and 31000 (unknown,
// which the SDK reports beside it when its WebSocket fails), 31009 (no transport), and 53000-
// 53999 (the signalling connection). The device is offline; the SDK keeps trying.
const OFFLINE_CODES = new Set([31000, 31005, 31009]);
const isOffline = (code) => OFFLINE_CODES.has(code) || (code >= 53000 && code < 54000);
// The token itself was refused (201xx: 20101 invalid, 20104 expired, …).
const isTokenError = (code) => code >= 20100 && code < 20200;
const DEVICE_TEXT = {
  off: "The phone starts when this view is opened.",
  loading: "Starting the phone…",
  registering: "Connecting to Twilio…",
};

let section;
let visible = false;
let generation = 0; // bumped by forget(): a late answer for a forgotten phone is dropped
let sdk = null; // the promise of the loaded SDK (its window.Twilio)
let starting = null;
let device = null;
let identity = "";
let deviceState = "off";
let renewTimer = null;
let renewing = null;
let tokenAt = 0;
let token = ""; // the Device's current token (a rebuilt Device starts with it)
let call = null; // the Call on the line, ringing in, or being placed
let placing = null; // {to, cancelled} while device.connect() has not answered yet
let callStarted = 0;
let clock = null;

// ---- the SDK's script ------------------------------------------------------------------------

class SdkMissing extends Error {}

function loadSdk() {
  if (window.Twilio && window.Twilio.Device) return Promise.resolve(window.Twilio);
  if (!sdk) {
    sdk = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = SDK_URL.href;
      script.async = true;
      script.dataset.sdk = "twilio-voice";
      script.addEventListener("load", () => {
        if (window.Twilio && window.Twilio.Device) resolve(window.Twilio);
        else reject(new SdkMissing("The phone's SDK loaded but defines no Twilio.Device."));
      });
      script.addEventListener("error", () => {
        script.remove();
        sdk = null; // a later try loads it again
        reject(new SdkMissing("The phone's SDK is missing from the app (vendor/" +
          "twilio-voice-sdk.js): it is copied from npm by scripts/build_console.py."));
      });
      document.head.append(script);
    });
  }
  return sdk;
}

// ---- what the page shows ----------------------------------------------------------------------

/** The device's line: `state` (off, loading, not-set-up, registering, ready, offline, error,
 * unsupported) as data-device, and its sentence; `detail` nodes below it (an error's note). */
function showDevice(state, text, ...detail) {
  deviceState = state;
  const line = byId("softphone-device");
  line.dataset.device = state;
  line.dataset.kind = state === "ready" ? "ok"
    : ["error", "offline", "not-set-up", "unsupported"].includes(state) ? "error" : "info";
  line.textContent = text || DEVICE_TEXT[state] || "";
  const more = byId("softphone-device-detail");
  fill(more, ...detail);
  more.hidden = !detail.some(Boolean);
  byId("softphone-retry").hidden = !["error", "offline", "not-set-up"].includes(state);
  byId("softphone-retry").disabled = false;
}

function twilioCode(error) {
  return error ? errorCode(error.code) : null;
}

/** "Twilio error 31005: ConnectionError", or the message of an error without a code. */
function describeTwilio(error) {
  const code = twilioCode(error);
  if (code === null) return error && error.message ? error.message : String(error);
  return `Twilio error ${code}${error.name && error.name !== "Error" ? `: ${error.name}` : ""}`;
}

/** Twilio's code with the console's advice, if it has some, and a link to Twilio's page. */
function note(error) {
  const code = twilioCode(error);
  return code === null || !advice(code) ? null : errorNote(code);
}

/** The call's line: `state` (idle, connecting, ringing, incoming, open, reconnecting, ended,
 * failed) as data-call, and what to say. */
function showCall(state, text) {
  const line = byId("softphone-call-state");
  line.dataset.call = state;
  line.textContent = text;
  const live = ["connecting", "ringing", "open", "reconnecting"].includes(state);
  const incoming = state === "incoming";
  byId("softphone-call").disabled = live || incoming;
  byId("softphone-hangup").disabled = !live;
  byId("softphone-mute").disabled = state !== "open" && state !== "reconnecting";
  byId("softphone-incoming").hidden = !incoming;
  if (!live) {
    byId("softphone-mute").setAttribute("aria-pressed", "false");
    byId("softphone-mute").textContent = "Mute";
  }
  section.dataset.call = state;
  updateAlert();
}

function showCallError(...nodes) {
  const box = byId("softphone-call-error");
  fill(box, ...nodes);
  box.hidden = !nodes.some(Boolean);
}

/** The header's link to this view while a call rings in or is on, and another view shows. */
function updateAlert() {
  const alert = byId("softphone-alert");
  const state = byId("softphone-call-state").dataset.call;
  let text = "";
  if (state === "incoming") text = `Incoming call from ${who(call)}: answer in Phone`;
  else if (["connecting", "ringing", "open", "reconnecting"].includes(state)) text = "On a call: Phone";
  alert.textContent = text;
  alert.hidden = visible || !text;
  alert.dataset.call = state;
}

/** Whom a call is with, for reading: a number grouped, or client:NAME. */
function who(target) {
  if (!target) return "";
  if (typeof target === "string") return phone(target);
  const params = target.parameters || {};
  const custom = target.customParameters;
  const to = custom && typeof custom.get === "function" ? custom.get("To") : null;
  return phone(target.direction === "INCOMING" ? params.From : to || params.To) || "unknown";
}

// ---- the token ------------------------------------------------------------------------------

async function fetchToken() {
  const { data } = await api.get("voice_token");
  if (!data || typeof data.token !== "string" || !data.token) {
    throw new Error("The app answered without a token.");
  }
  return data;
}

/** The token the Device has now, and when it was fetched (renewal counts from then). */
function keep(grant) {
  token = grant.token;
  tokenAt = Date.now();
}

function scheduleRenewal(ttlSeconds) {
  clearTimeout(renewTimer);
  const ttl = Number(ttlSeconds) > 0 ? Number(ttlSeconds) : 3600;
  const after = Math.max(MIN_RENEW_S, ttl - RENEW_BEFORE_S);
  renewTimer = setTimeout(renew, after * 1000);
}

/** A new token for the Device (once at a time; a renewal within the last minute suffices). */
function renew() {
  if (!device) return Promise.resolve();
  if (renewing) return renewing;
  if (Date.now() - tokenAt < 60_000 && tokenAt) return Promise.resolve();
  const mine = generation;
  renewing = (async () => {
    try {
      const grant = await fetchToken();
      if (mine !== generation || !device) return;
      keep(grant);
      device.updateToken(grant.token);
      scheduleRenewal(grant.ttl_seconds);
      if (deviceState === "error") restoreState();
    } catch (error) {
      if (mine !== generation || error instanceof api.KeyRefused) return;
      showDevice("error", `The phone's token could not be renewed: ${api.describe(error)} ` +
        "Trying again in 30 seconds.");
      clearTimeout(renewTimer);
      renewTimer = setTimeout(renew, RETRY_RENEW_MS);
    } finally {
      renewing = null;
    }
  })();
  return renewing;
}

function restoreState() {
  if (!device) return;
  if (device.state === "registered") ready();
  else showDevice("registering");
}

// ---- the Device -----------------------------------------------------------------------------

function ready() {
  showDevice("ready", `Ready: calls to client:${identity || device.identity || "?"} ring here, ` +
    "and calls can be placed.");
}

function deviceError(error, errorCall) {
  const code = twilioCode(error);
  if (errorCall) return; // the call's own error listener says it
  if (code !== null && isOffline(code)) {
    if (code === 31000 && deviceState === "offline") return; // keep the more precise code
    showDevice("offline", `Offline: Twilio cannot be reached from this browser ` +
      `(${describeTwilio(error)}). The phone keeps trying; calls cannot ring here meanwhile.`,
    note(error));
    return;
  }
  if (code !== null && isTokenError(code)) {
    showDevice("error", `Twilio refused the phone's token (${describeTwilio(error)}).`, note(error));
    if (code === 20104) {
      tokenAt = 0;
      renew();
    }
    return;
  }
  showDevice("error", `The phone reported an error: ${describeTwilio(error)}.`, note(error));
}

function wire(made) {
  const mine = (handler) => (...args) => {
    if (device === made) handler(...args);
  };
  made.on("registering", mine(() => showDevice("registering")));
  made.on("registered", mine(ready));
  made.on("unregistered", mine(() => {
    if (deviceState === "ready") showDevice("registering");
  }));
  made.on("error", mine(deviceError));
  made.on("incoming", mine(incoming));
  made.on("tokenWillExpire", mine(() => renew()));
}

/** A Device made with the kept token, wired and registering: the current one from now on. */
function makeDevice(Twilio) {
  const made = new Twilio.Device(token, deviceOptions());
  device = made;
  wire(made);
  showDevice("registering");
  made.register().catch((error) => {
    // An error event says what went wrong; a register that fails without one still shows.
    if (device === made && deviceState === "registering") deviceError(error);
  });
  return made;
}

/**
 * A new Device in place of the current one, with the same token. Used when a call being placed
 * is cancelled before the SDK gave it to the page: while Twilio cannot be reached, the SDK's
 * connect() waits for its signalling connection and would refuse any other call meanwhile.
 */
function remakeDevice() {
  const old = device;
  if (!old || !window.Twilio || !token) return;
  makeDevice(window.Twilio);
  try {
    old.destroy();
  } catch {
    // already destroyed
  }
}

function deviceOptions() {
  return {
    // The signalling host the page's Content-Security-Policy allows (wss://voice-js.roaming…).
    edge: "roaming",
    // Sounds made in the page (blob: URLs) and played through <audio>: nothing is fetched
    // from sdk.twilio.com (media-src allows 'self' and blob: only).
    sounds: soundUrls(),
    disableAudioContextSounds: true,
    // Leaving the page during a call asks first.
    closeProtection: true,
    codecPreferences: ["opus", "pcmu"],
    appName: "phone-line-console",
  };
}

function problem(error) {
  if (error instanceof api.ApiError && Array.isArray(error.body.settings)
      && error.body.settings.length) {
    const names = error.body.settings.map(String);
    showDevice("not-set-up", "Calls from the browser are not set up for this app: " +
      `${names.length === 1 ? "the setting" : "the settings"} ${names.join(", ")} ` +
      `${names.length === 1 ? "is" : "are"} missing or not valid.`,
    h("ul", { class: "missing-settings" }, names.map((name) => h("li", null, h("code", { text: name })))),
    h("p", { class: "app-error", text: error.message }),
    h("p", { class: "hint", text: "Everything else in the console works without them. An API " +
      "key is made in the Twilio Console; scripts/set_twilio_webhooks.py creates the TwiML App " +
      "and prints its SID. Then press Connect again." }));
    return;
  }
  if (error instanceof SdkMissing) {
    showDevice("error", error.message);
    return;
  }
  showDevice("error", `The phone could not start: ${api.describe(error)}`);
}

/** Load the SDK, fetch a token, make and register the Device (once; again after forget()). */
function start() {
  if (device || starting) return starting || Promise.resolve();
  const mine = generation;
  showDevice("loading");
  starting = (async () => {
    try {
      const Twilio = await loadSdk();
      if (mine !== generation) return;
      if (Twilio.Device.isSupported === false) {
        showDevice("unsupported", "This browser cannot place calls (it lacks WebRTC).");
        return;
      }
      const grant = await fetchToken();
      if (mine !== generation) return;
      identity = String(grant.identity || "");
      keep(grant);
      makeDevice(Twilio);
      scheduleRenewal(grant.ttl_seconds);
    } catch (error) {
      if (mine !== generation || error instanceof api.KeyRefused) return;
      problem(error);
    } finally {
      if (mine === generation) starting = null;
    }
  })();
  return starting;
}

function stop() {
  const onCall = Boolean(call || placing);
  generation += 1;
  starting = null;
  clearTimeout(renewTimer);
  renewTimer = null;
  renewing = null;
  tokenAt = 0;
  token = "";
  placing = null;
  endClock();
  const old = device;
  device = null;
  call = null;
  if (old) {
    try {
      old.destroy(); // hangs up any call and unregisters
    } catch {
      // already destroyed
    }
  }
  if (onCall) showCall("ended", "The call ended: the phone was restarted.");
}

// ---- calls ------------------------------------------------------------------------------------

/** What the person typed, as the `To` of a call: client:NAME, or a number (spaces, dashes and
 * brackets dropped; anything else is passed on for the app to refuse). */
export function callTarget(value) {
  const text = String(value || "").trim();
  const client = CLIENT.exec(text);
  if (client) {
    const name = client[1].trim();
    if (!IDENTITY.test(name)) {
      throw new Error("A client's name is letters, digits and underscore (at most 121), " +
        "after client:");
    }
    return `client:${name}`;
  }
  const number = typedNumber(text);
  if (!number) throw new Error("Enter a number to call, or client: and a name.");
  return number;
}

function startClock(label) {
  endClock();
  callStarted = Date.now();
  clock = setInterval(() => {
    const line = byId("softphone-call-state");
    if (!call || line.dataset.call !== "open") return;
    const seconds = Math.floor((Date.now() - callStarted) / 1000);
    const minutes = Math.floor(seconds / 60);
    line.textContent = `On a call with ${label} (${minutes}:${String(seconds % 60).padStart(2, "0")}).`;
  }, 1000);
}

function endClock() {
  clearInterval(clock);
  clock = null;
}

function ended(made, text, kind = "ended") {
  if (call !== made) return;
  call = null;
  endClock();
  byId("softphone-digits").hidden = true;
  showCall(kind, text);
}

function follow(made, label) {
  made.on("ringing", () => {
    if (call === made) showCall("ringing", `Ringing ${label}…`);
  });
  made.on("accept", () => {
    if (call !== made) return;
    showCall("open", `On a call with ${label}.`);
    fill(byId("softphone-digits"));
    startClock(label);
  });
  made.on("reconnecting", (error) => {
    if (call === made) showCall("reconnecting", `Reconnecting (${describeTwilio(error)})…`);
  });
  made.on("reconnected", () => {
    if (call === made) showCall("open", `On a call with ${label}.`);
  });
  made.on("mute", (muted) => {
    if (call !== made) return;
    const button = byId("softphone-mute");
    button.setAttribute("aria-pressed", muted ? "true" : "false");
    button.textContent = muted ? "Unmute" : "Mute";
  });
  made.on("disconnect", () => ended(made, `Call with ${label} ended.`));
  made.on("cancel", () => ended(made, made.direction === "INCOMING"
    ? `Missed call from ${label}: the caller hung up.` : `Call to ${label} cancelled.`));
  made.on("reject", () => ended(made, `Call from ${label} rejected.`));
  made.on("error", (error) => {
    showCallError(h("p", { class: "app-error", text: `The call failed: ${describeTwilio(error)}.` }),
      note(error));
    ended(made, `Call with ${label} failed.`, "failed");
  });
}

async function dial(event) {
  event.preventDefault();
  if (call || placing) return;
  let to;
  try {
    to = callTarget(byId("softphone-to").value);
  } catch (error) {
    showCallError(h("p", { class: "app-error", text: error.message }));
    return;
  }
  showCallError();
  if (!device) {
    showCallError(h("p", { class: "app-error", text: "The phone is not started: " +
      (deviceState === "not-set-up" ? "calls from the browser are not set up." : "wait for it, " +
        "or press Connect again.") }));
    return;
  }
  const label = who(to);
  const attempt = { to, cancelled: false };
  placing = attempt;
  showCall("connecting", deviceState === "ready" ? `Calling ${label}…`
    : `Calling ${label}: waiting for Twilio (the phone is ${deviceState})…`);
  try {
    const made = await device.connect({ params: { To: to } });
    if (placing !== attempt || attempt.cancelled) {
      try {
        made.disconnect(); // cancelled meanwhile
      } catch {
        // its Device is gone
      }
      return;
    }
    placing = null;
    call = made;
    follow(made, label);
    if (made.status && made.status() === "closed") ended(made, `Call to ${label} ended.`);
  } catch (error) {
    if (placing !== attempt) return;
    placing = null;
    showCallError(h("p", { class: "app-error", text: `The call could not be placed: ` +
      `${describeTwilio(error)}.` }), note(error));
    showCall("failed", `Call to ${label} not placed.`);
  }
}

function hangUp() {
  if (placing) {
    placing.cancelled = true;
    const label = who(placing.to);
    placing = null;
    showCall("ended", `Call to ${label} cancelled.`);
    if (deviceState !== "ready") remakeDevice(); // the SDK still waits to place it
    return;
  }
  if (call) call.disconnect();
}

function toggleMute() {
  if (call) call.mute(!call.isMuted());
}

function incoming(made) {
  if (call || placing) {
    made.reject(); // one call at a time
    return;
  }
  call = made;
  const label = who(made);
  follow(made, label);
  showCallError();
  byId("softphone-incoming-from").textContent = `Incoming call from ${label}.`;
  showCall("incoming", "Ringing here: answer or reject it.");
}

function answer() {
  if (call && call.direction === "INCOMING" && call.status() === "pending") {
    showCall("connecting", `Answering ${who(call)}…`);
    call.accept();
  }
}

function reject() {
  if (call && call.direction === "INCOMING" && call.status() === "pending") call.reject();
}

function key(event) {
  const button = event.target.closest("[data-digit]");
  if (!button) return;
  const digit = button.dataset.digit;
  const state = byId("softphone-call-state").dataset.call;
  if (call && state === "open") {
    call.sendDigits(digit);
    const sent = byId("softphone-digits");
    sent.hidden = false;
    sent.textContent = `${sent.textContent || "Sent:"} ${digit}`;
    return;
  }
  const input = byId("softphone-to");
  if (!input.value.toLowerCase().startsWith("client:")) {
    input.value += digit;
    input.focus();
  }
}

// ---- the view ---------------------------------------------------------------------------------

function reset() {
  showDevice("off");
  showCall("idle", "No call.");
  showCallError();
  byId("softphone-digits").hidden = true;
  fill(byId("softphone-digits"));
}

export default {
  id: "softphone",
  init() {
    section = byId("view-softphone");
    byId("softphone-form").addEventListener("submit", dial);
    byId("softphone-hangup").addEventListener("click", hangUp);
    byId("softphone-mute").addEventListener("click", toggleMute);
    byId("softphone-answer").addEventListener("click", answer);
    byId("softphone-reject").addEventListener("click", reject);
    byId("softphone-keypad").addEventListener("click", key);
    byId("softphone-to").addEventListener("input", () => showCallError());
    byId("softphone-retry").addEventListener("click", () => {
      byId("softphone-retry").disabled = true;
      stop();
      start();
    });
    reset();
  },
  show() {
    visible = true;
    section.dataset.state = "ready";
    updateAlert();
    start();
  },
  hide() {
    visible = false; // the Device stays: calls still ring, the header says so
    updateAlert();
  },
  forget() {
    // The key is gone: so is the phone (its token came with the key).
    visible = false;
    stop();
    reset();
    delete section.dataset.state;
  },
};
