// Times in the browser's own time zone, durations, and phone numbers as people read them.

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });

/** A Date for an ISO-8601 string from the app, or null. */
export function parseTime(value) {
  if (typeof value !== "string" || !value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "12 Mar 2025, 14:03:07" in the browser's time zone and locale; "" when there is no time. */
export function when(value) {
  const date = parseTime(value);
  return date ? dateTime.format(date) : "";
}

/** Only the time of day when `value` is today, else the date too. */
export function whenShort(value) {
  const date = parseTime(value);
  if (!date) return "";
  const now = new Date();
  const today = date.getFullYear() === now.getFullYear() && date.getMonth() === now.getMonth()
    && date.getDate() === now.getDate();
  return today ? timeOnly.format(date) : dateTime.format(date);
}

/** A <time> element: machine-readable `datetime`, the readable text, the full time as title. */
export function timeElement(value, short = false) {
  const element = document.createElement("time");
  const date = parseTime(value);
  if (!date) {
    element.textContent = "time unknown";
    return element;
  }
  element.dateTime = date.toISOString();
  element.textContent = short ? whenShort(value) : when(value);
  element.title = when(value);
  return element;
}

/** 7 -> "7 s", 65 -> "1 min 5 s", null -> "". */
export function duration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds) || seconds < 0) return "";
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  const rest = whole % 60;
  return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
}

// Country calling codes of one and two digits (ITU E.164 assignments); every other is three.
const ONE_DIGIT = new Set(["1", "7"]);
const TWO_DIGITS = new Set([
  "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
  "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
  "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
]);
// How a national number of each length is grouped: short groups, the longest last.
const GROUPS = {
  5: [2, 3], 6: [3, 3], 7: [3, 4], 8: [4, 4], 9: [3, 3, 3], 10: [3, 3, 4], 11: [3, 4, 4],
  12: [4, 4, 4], 13: [3, 3, 3, 4], 14: [3, 3, 4, 4],
};

// Characters that reorder the text around them (right-to-left overrides and isolates, marks):
// no address holds one, and in a forged From they make "+1 415..." read backwards.
const BIDI_CONTROLS = /[\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
// What only a phone number written by hand is made of: digits, spaces, + - . ( ).
const NUMBER_LIKE = /^[0-9+\-.() ]+$/;

/**
 * A phone number for reading: +14155550100 -> "+1 415-555-0100" (North America), other
 * countries "+44 207 946 0958" (the country code, then the digits in groups). Anything that is
 * not an E.164 number (a Messaging Service SID, "client:alice", a SIP address) is kept as is,
 * without bidirectional controls; one that only looks like a number ("+1 415-555-0100" as a
 * forged callback may send it) is shown in quotes, so it never reads as one the page formatted.
 */
export function phone(value) {
  if (value === null || value === undefined) return "";
  const text = String(value);
  const match = /^\+([1-9][0-9]{5,14})$/.exec(text);
  if (!match) {
    const shown = text.replace(BIDI_CONTROLS, "");
    return NUMBER_LIKE.test(shown) ? `"${shown}"` : shown;
  }
  const digits = match[1];
  if (digits.length === 11 && digits[0] === "1") {
    return `+1 ${digits.slice(1, 4)}-${digits.slice(4, 7)}-${digits.slice(7)}`;
  }
  let code = digits.slice(0, 3);
  if (ONE_DIGIT.has(digits[0])) code = digits[0];
  else if (TWO_DIGITS.has(digits.slice(0, 2))) code = digits.slice(0, 2);
  return `+${code} ${group(digits.slice(code.length))}`;
}

function group(national) {
  const sizes = GROUPS[national.length];
  if (!sizes) return national;
  const parts = [];
  let at = 0;
  for (const size of sizes) {
    parts.push(national.slice(at, at + size));
    at += size;
  }
  return parts.join(" ");
}

/**
 * What a person typed as a number, as the app wants it: "+1 (415) 555-0100" -> "+14155550100".
 * Spaces, dashes, dots and brackets go; anything else is left for the app to refuse with its
 * own message.
 */
export function typedNumber(value) {
  const trimmed = String(value || "").trim();
  const compact = trimmed.replace(/[\s().\-\u00a0]/g, "");
  return /^\+?[0-9]+$/.test(compact) ? compact : trimmed;
}

/** A short SID for display: "CA1234…cdef" (the full SID is the element's title). */
export function shortSid(sid) {
  const text = String(sid || "");
  return text.length > 14 ? `${text.slice(0, 8)}…${text.slice(-4)}` : text;
}
