// Building the page from data, safely: every value goes in as a text node or an attribute set
// through the DOM, never as HTML. (The page's Content-Security-Policy forbids inline script and
// style as well; nothing here needs either.)

/**
 * An element: `h("li", {class: "row", "data-sid": sid}, "text", child)`.
 * Props: `class`, `text` (textContent), `dataset` (an object), `on<event>` (a listener), a
 * boolean (present or not), anything else is an attribute. Children: nodes or strings (text).
 */
export function h(tag, props, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") {
      element.className = value;
    } else if (name === "text") {
      element.textContent = String(value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "style") {
      throw new Error("no style attributes: the CSP forbids them; use a class");
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

/** Append nodes or strings (as text) to `parent`; null, undefined and false are skipped. */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace everything inside `parent` with `children`. */
export function fill(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** `document.getElementById`, failing loudly when the page lacks the element. */
export function byId(id) {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
}

/** A status line: `kind` "info", "ok" or "error"; errors are announced (role=alert). */
export function say(element, text, kind = "info") {
  element.textContent = text || "";
  element.dataset.kind = kind;
  element.setAttribute("role", kind === "error" ? "alert" : "status");
  element.hidden = !text;
}

/**
 * Run `render` (which rebuilds `list`) without losing the keyboard focus: when it was on a
 * control of an item marked `data-<attribute>`, the same control of the rebuilt item gets it
 * back (a refresh every few seconds must not throw a keyboard user back to the top).
 */
export function keepingFocus(list, attribute, render) {
  const active = document.activeElement;
  const item = active && list.contains(active) ? active.closest(`[data-${attribute}]`) : null;
  const key = item ? item.dataset[attribute] : null;
  const controls = (element) => [...element.querySelectorAll("button, a[href], audio")];
  const index = item ? controls(item).indexOf(active) : -1;
  render();
  if (key === null || index < 0) return;
  const again = [...list.querySelectorAll(`[data-${attribute}]`)]
    .find((element) => element.dataset[attribute] === key);
  const target = again ? controls(again)[index] : null;
  if (target) target.focus({ preventScroll: true });
}
