// Twilio's error codes the console explains in a sentence, for the ones people meet most.
// Every code also gets a link to Twilio's own page about it (opened only if clicked).

const ADVICE = new Map([
  [21610, "The person opted out (they replied STOP): nothing can be texted to them from this " +
    "sender until they text START."],
  [21211, "Not a valid phone number: check the number, in E.164 form (+, country code, number)."],
  [21614, "Not a mobile number: it cannot receive texts."],
  [21408, "Texting this region is not enabled in the account's Messaging geographic permissions."],
  [21215, "The account's geographic permissions do not allow calling this number: enable the " +
    "country in the Twilio Console (Voice, Geo permissions)."],
  [32203, "The account's geographic permissions do not allow this destination: enable the " +
    "country in the Twilio Console (Voice, Geo permissions)."],
  [13224, "The dialled number was refused: it is not a valid phone number."],
  [13225, "The dialled number was refused: Twilio blocks it (a premium or high-risk number)."],
  [30003, "Unreachable: the phone is off, out of coverage or cannot take messages now. " +
    "Trying later may work."],
  [30004, "Blocked: the person or their carrier blocks messages from this number."],
  [30005, "Unknown number: it does not exist or is no longer in service."],
  [30006, "A landline or a carrier that cannot take texts: the number cannot receive them."],
  [30007, "Filtered by the carrier, often as spam: check the content and the sender's " +
    "registration (A2P 10DLC, toll-free verification)."],
  [30008, "An unknown error from the carrier. If it keeps happening, ask Twilio support, giving " +
    "the message's SID."],
  [30034, "The sending number is not registered for A2P 10DLC, so US carriers block it."],
  // The softphone's (Twilio's Voice JavaScript SDK).
  [20101, "Twilio refused the phone's access token: TWILIO_API_KEY and TWILIO_API_SECRET must " +
    "be an API key of the account TWILIO_ACCOUNT_SID names."],
  [20104, "The phone's access token expired: the page fetches a new one."],
  [31005, "Twilio's signalling server (voice-js.roaming.twilio.com) could not be reached: check " +
    "this computer's network, or a firewall or proxy that blocks secure WebSockets to it."],
  [31009, "Twilio's signalling server (voice-js.roaming.twilio.com) could not be reached: check " +
    "this computer's network, or a firewall or proxy that blocks secure WebSockets to it."],
  [31401, "The browser may not use the microphone: allow it for this page (the icon in the " +
    "address bar), then call again."],
  [31402, "The microphone could not be opened: check that one is connected and not held by " +
    "another program, then call again."],
]);

/** The code as a whole number, or null when `code` is not one (never trusted as text). */
export function errorCode(code) {
  const text = String(code ?? "").trim();
  return /^[0-9]{1,6}$/.test(text) ? Number(text) : null;
}

/** The console's sentence for a code, or "" when it has none. */
export function advice(code) {
  const number = errorCode(code);
  return number === null ? "" : ADVICE.get(number) || "";
}

/** Twilio's page about the code. */
export function docsUrl(code) {
  const number = errorCode(code);
  return number === null ? "" : `https://www.twilio.com/docs/api/errors/${number}`;
}
