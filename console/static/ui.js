// The two dialogs: the detail panel (a record's timeline, a broadcast's recipients) and a
// question (confirm an action, or ask for a reason). Native <dialog>: focus moves into it,
// Escape closes it, focus returns to what opened it.

import { byId, fill } from "./dom.js";

let owner = null;
let opener = null;

/** Show the detail dialog for `key` (e.g. a SID) with `title`; returns its body element. */
export function showDetail(key, title) {
  const dialog = byId("detail");
  owner = key;
  opener = document.activeElement;
  byId("detail-title").textContent = title;
  const body = byId("detail-body");
  fill(body);
  dialog.dataset.owner = key;
  if (!dialog.open) dialog.showModal();
  return body;
}

/** Whether the detail dialog still shows `key` (a late answer must not overwrite another). */
export function detailShows(key) {
  return byId("detail").open && owner === key;
}

export function setDetailTitle(key, title) {
  if (detailShows(key)) byId("detail-title").textContent = title;
}

export function closeDetail() {
  const dialog = byId("detail");
  if (dialog.open) dialog.close();
}

export function setUpDialogs() {
  const detail = byId("detail");
  byId("detail-close").addEventListener("click", () => detail.close());
  detail.addEventListener("close", () => {
    const key = owner;
    owner = null;
    delete detail.dataset.owner;
    fill(byId("detail-body"));
    // Back to what opened it; if a refresh rebuilt that row meanwhile, to the rebuilt one.
    let target = opener && opener.isConnected ? opener : null;
    if (!target && key) {
      const row = document.querySelector(`[data-sid="${CSS.escape(key)}"], [data-id="${CSS.escape(key)}"]`);
      target = row ? row.querySelector("button") : null;
    }
    if (target && typeof target.focus === "function") target.focus();
    opener = null;
  });
  // A click on the backdrop (outside the dialog's box) closes it too.
  detail.addEventListener("click", (event) => {
    if (event.target === detail) detail.close();
  });
}

/**
 * Ask before acting. Resolves to the text typed (or "" without an input) when confirmed, null
 * when cancelled. `input`: {label, maxLength, required} for a reason.
 */
export function ask({ title, text, confirm, input = null, danger = false }) {
  const dialog = byId("ask");
  const form = byId("ask-form");
  const field = byId("ask-input");
  const fieldRow = byId("ask-input-row");
  byId("ask-title").textContent = title;
  byId("ask-text").textContent = text;
  const confirmButton = byId("ask-confirm");
  confirmButton.textContent = confirm;
  confirmButton.classList.toggle("danger", danger);
  fieldRow.hidden = !input;
  field.value = "";
  field.required = Boolean(input && input.required);
  field.disabled = !input;
  if (input) {
    byId("ask-input-label").textContent = input.label;
    field.maxLength = input.maxLength || 200;
  }
  const previous = document.activeElement;
  return new Promise((resolve) => {
    let answer = null;
    const submitted = (event) => {
      event.preventDefault();
      if (input && !form.reportValidity()) return;
      answer = input ? field.value.trim() : "";
      dialog.close();
    };
    const cancelled = () => dialog.close();
    const closed = () => {
      form.removeEventListener("submit", submitted);
      byId("ask-cancel").removeEventListener("click", cancelled);
      dialog.removeEventListener("close", closed);
      if (previous && typeof previous.focus === "function" && previous.isConnected) {
        previous.focus();
      }
      resolve(answer);
    };
    form.addEventListener("submit", submitted);
    byId("ask-cancel").addEventListener("click", cancelled);
    dialog.addEventListener("close", closed);
    dialog.showModal();
    (input ? field : byId("ask-cancel")).focus();
  });
}
