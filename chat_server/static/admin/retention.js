// Retention: automatic deletion of old conversations, and one conversation's
// export or deletion at a resident's request.

import { formatTime, t } from "./i18n.js";
import { ApiError, announce, api, attempt, el } from "./ui.js";

function statusText(status) {
  if (status.days <= 0) return t("retentionOff");
  const last = status.last_run;
  return last ? t("lastRun", { time: formatTime(last.at), n: last.deleted }) : t("neverRun");
}

export async function render(view) {
  const status = await api("GET", "/admin/api/retention");
  view.append(el("h1", {}, t("nav_retention")));
  const state = el("p", { id: "retention-status" }, statusText(status));
  const run = el("button", { type: "button", class: "button", disabled: status.days <= 0 }, t("runNow"));
  run.addEventListener("click", async () => {
    run.disabled = true;
    const result = await attempt(() => api("POST", "/admin/api/retention/run"));
    run.disabled = false;
    if (result instanceof ApiError) return;
    state.textContent = statusText(result);
    announce(t("runDone", { n: result.deleted }));
  });
  view.append(el("section", { class: "card", "aria-labelledby": "retention-heading" },
    el("h2", { id: "retention-heading" }, t("nav_retention")),
    el("p", {}, status.days > 0 ? t("retentionIntro", { days: status.days }) : t("retentionOff")), state, run));

  const input = el("input", { type: "text", id: "conversation-id", inputmode: "numeric", autocomplete: "off",
    "aria-describedby": "conversation-id-problem" });
  const problem = el("p", { class: "field-problem", id: "conversation-id-problem", hidden: true });
  const id = () => {
    const value = input.value.trim();
    if (!/^\d{1,18}$/.test(value)) {
      problem.textContent = t("badId");
      problem.hidden = false;
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return null;
    }
    problem.hidden = true;
    input.removeAttribute("aria-invalid");
    return value;
  };
  const exportButton = el("button", { type: "button", class: "button" }, t("exportConversation"));
  exportButton.addEventListener("click", async () => {
    const cid = id();
    if (!cid) return;
    let response;
    const get = () => fetch(`/admin/api/conversations/${cid}/export`, { credentials: "same-origin" });
    try {
      response = await get();
      if (response.status === 401 && window.polkuSession
          && (await response.clone().json().catch(() => ({}))).error === "reauth_required") {
        // Exporting needs the authenticator's code again (session.js asks for it).
        if (!(await window.polkuSession.reauthenticate())) return;
        response = await get();
      }
    } catch (error) {
      announce(t("networkError"), "error");
      return;
    }
    if (!response.ok) {
      announce(response.status === 404 ? t("notFound") : `${t("failed")} (${response.status})`, "error");
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `polku-conversation-${cid}.json`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 10000);
    announce(t("exportedToast", { id: cid }));
  });
  const deleteButton = el("button", { type: "button", class: "button button--danger" }, t("deleteConversation"));
  deleteButton.addEventListener("click", async () => {
    const cid = id();
    if (!cid || !window.confirm(t("deleteConfirm", { id: cid }))) return;
    const result = await attempt(() => api("DELETE", `/admin/api/conversations/${cid}`));
    if (result instanceof ApiError) return;
    announce(t("deletedToast", { id: cid }));
    input.value = "";
  });
  view.append(el("section", { class: "card", "aria-labelledby": "request-heading" },
    el("h2", { id: "request-heading" }, t("requestHeading")),
    el("p", {}, t("requestIntro")),
    el("div", { class: "field field--short" }, el("label", { for: "conversation-id" }, t("conversationId")), input, problem),
    el("div", { class: "row" }, exportButton, deleteButton)));
}
