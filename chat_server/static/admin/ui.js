// Small shared pieces of the admin pages: building elements, the JSON API,
// announcements, and showing problems beside the fields they are about.

import { LANG, t, topicName } from "./i18n.js";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;

/** el("button", {class: "button", onclick: fn}, "text", child...) */
export function el(tag, attrs = {}, ...children) {
  const svg = ["svg", "g", "rect", "line", "text", "title", "desc", "path"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (["value", "checked", "disabled", "selected"].includes(name) && !svg) node[name] = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

// --- announcements -------------------------------------------------------------------

let statusTimer = null;

/** A polite message for screen readers, also shown in the status bar. */
export function announce(text, kind = "ok") {
  const live = document.getElementById("live");
  const bar = document.getElementById("statusbar");
  live.textContent = "";
  window.setTimeout(() => { live.textContent = text; }, 50);
  bar.textContent = text;
  bar.dataset.kind = kind;
  bar.hidden = false;
  window.clearTimeout(statusTimer);
  statusTimer = window.setTimeout(() => { bar.hidden = true; }, 8000);
}

// --- the API -------------------------------------------------------------------------

export class ApiError extends Error {
  constructor(status, data) {
    super(data?.detail || data?.error || `HTTP ${status}`);
    this.status = status;
    this.data = data || {};
  }

  /** What to tell the admin, in their language. */
  get text() {
    if (this.status === 0) return t("networkError");
    if (this.status === 401 && this.data && this.data.error === "reauth_required") return t("failed");
    if (this.status === 401) return t("signedOut");
    if (this.status === 403) return t("forbidden");
    if (this.data.error === "conflict") {
      // An edit of something changed meanwhile: the server says so in plain words (reload and redo).
      if (this.data.message) return this.data.message[LANG] || this.data.message.fi;
      return `${t("conflict")} (${this.data.detail})`;
    }
    if (this.data.error === "busy") return t("busy");
    if (this.data.error === "not_found") return t("notFound");
    if (this.data.error === "conversation_active") return t("conversationActive");
    return `${t("failed")}: ${this.data.detail || this.data.error || this.status}`;
  }
}

export async function api(method, path, body, retried = false) {
  const headers = { Accept: "application/json" };
  const options = { method, headers, credentials: "same-origin" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = CSRF;
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body ?? {});
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ApiError(0, { detail: String(error) });
  }
  let data = null;
  if ((response.headers.get("Content-Type") || "").includes("application/json")) data = await response.json();
  if (response.status === 401 && data && data.error === "reauth_required" && !retried && window.polkuSession) {
    // The most sensitive actions need the authenticator's code again (session.js asks for it).
    if (await window.polkuSession.reauthenticate()) return api(method, path, body, true);
    throw new ApiError(401, data);
  }
  if (response.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent("/admin" + window.location.hash)}`);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** Run `action`; a failure is announced (and returned as the ApiError), never thrown. */
export async function attempt(action) {
  try {
    return await action();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    if (error.status !== 422) announce(error.text, "error");
    return error;
  }
}

// --- problems beside their fields -------------------------------------------------------

/** The id of the field a problem's item is about (see checks.py for the items). */
export function fieldIdOf(item) {
  switch (item.kind) {
    case "example": {
      const id = `ex-${item.intent}-${item.language}-${item.index}`;
      return document.getElementById(id) ? id : `add-${item.intent}-${item.language}`;
    }
    case "intent": return item.language ? `add-${item.intent}-${item.language}` : `desc-${item.intent}`;
    case "answer": return `ans-${item.response}-${item.language || "fi"}`;
    case "quick_reply":
      return item.language ? `qr-${item.response}-${item.index}-title-${item.language}` : `qr-${item.response}-${item.index}-payload`;
    case "fact":
      if (item.field === "checked") return `fact-${item.fact}-checked`;
      return document.getElementById(`fact-${item.fact}-value-${item.language}`)
        ? `fact-${item.fact}-value-${item.language}` : `fact-${item.fact}-value`;
    case "hours": return `hours-${item.channel}-${item.day}`;
    case "message": {  // an inbox message's (editable) text
      const field = document.querySelector(`input.inbox-item__text[data-message="${item.message_id}"]`);
      return field ? field.id : null;
    }
    default: return null;
  }
}

export function problemText(problem) {
  const text = problem.message[LANG] || problem.message.fi;
  const other = problem.params?.other_intent;
  return other ? text.replace(other, topicName(other)) : text;  // the topic's name, not its id
}

/** Remove the marks of earlier problems inside `scope`. */
export function clearProblems(scope) {
  scope.querySelectorAll(".problem-summary").forEach((node) => node.remove());
  scope.querySelectorAll(".field-problem").forEach((node) => node.remove());
  scope.querySelectorAll('[aria-invalid="true"]').forEach((field) => {
    field.removeAttribute("aria-invalid");
    const ids = (field.getAttribute("aria-describedby") || "").split(" ").filter((id) => !id.startsWith("problem-"));
    if (ids.length) field.setAttribute("aria-describedby", ids.join(" "));
    else field.removeAttribute("aria-describedby");
  });
}

let problemCounter = 0;

/** Show problems: a summary (focused) at the top of `scope`, and each beside its field. */
export function showProblems(scope, problems) {
  clearProblems(scope);
  const items = problems.map((problem) => {
    const text = problemText(problem);
    const id = fieldIdOf(problem.item);
    const field = id && document.getElementById(id);
    if (field) {
      const messageId = `problem-${++problemCounter}`;
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", [field.getAttribute("aria-describedby"), messageId].filter(Boolean).join(" "));
      field.insertAdjacentElement("afterend", el("p", { class: "field-problem", id: messageId }, text));
      return el("li", {}, el("a", { href: `#${id}`, onclick: (event) => { event.preventDefault(); field.focus(); } }, text));
    }
    return el("li", {}, text);
  });
  const summary = el("div", { class: "problem-summary", role: "alert", tabindex: "-1" },
    el("h2", {}, t("problemsHeading")), el("p", {}, t("problemsIntro")), el("ul", {}, items));
  scope.prepend(summary);
  summary.focus();
}

/** Submit-time handling shared by every form: problems shown, other errors announced. */
export async function save(scope, action, okText = t("saved")) {
  const result = await attempt(action);
  if (result instanceof ApiError) {
    if (result.status === 422) showProblems(scope, result.data.problems || []);
    return null;
  }
  clearProblems(scope);
  announce(okText);
  return result;
}

export function languageTag(code) {
  return el("span", { class: "lang-tag", lang: "en" }, code ? code.toUpperCase() : "?");
}

/** A wide table's box: scrolls sideways on narrow screens, and can be scrolled with the keyboard. */
export function tableWrap(table, label) {
  return el("div", { class: "table-wrap", role: "region", tabindex: "0", "aria-label": label }, table);
}
