// The change history: who changed what and when, with an undo button per change.

import { formatTime, languageName, t, topicName, LANGUAGES } from "./i18n.js";
import { ApiError, announce, api, attempt, el, tableWrap } from "./ui.js";


function what(change) {
  const item = change.item || {};
  const source = change.source !== "page" ? ` (${t(`source_${change.source}`)})` : "";
  if (change.kind === "example") {
    const key = change.before === null ? "change_example_add" : change.after === null ? "change_example_remove" : "change_example_edit";
    return `${t(key)}: ${topicName(item.intent)}, ${languageName(item.language)}${source}`;
  }
  const target = item.intent || item.response || item.fact || item.channel || change.target;
  const name = change.kind === "fact" ? `{${target}}` : topicName(target);
  return `${t(`change_${change.kind}`)}: ${name}${source}`;
}

function valueText(value) {
  if (value === null || value === undefined || value === "") return t("empty");
  if (typeof value === "string") return value;
  if (typeof value === "object" && LANGUAGES.some((lang) => lang in value)) {
    return LANGUAGES.filter((lang) => lang in value).map((lang) => `${lang.toUpperCase()}: ${value[lang]}`).join(" · ");
  }
  return Object.entries(value).map(([k, v]) => `${k}: ${typeof v === "object" ? valueText(v) : v}`).join(" · ");
}

/** Before and after, only the parts that differ (an answer's changed languages, say). */
function beforeAfter(change) {
  const { before, after } = change;
  const pairs = [];
  if (change.kind === "answer" && before && after) {
    for (const lang of LANGUAGES) {
      if ((before.text || {})[lang] !== (after.text || {})[lang]) {
        pairs.push([`${lang.toUpperCase()}: `, before.text?.[lang], after.text?.[lang]]);
      }
    }
    if (JSON.stringify(before.quick_replies || []) !== JSON.stringify(after.quick_replies || [])) {
      const titles = (value) => (value.quick_replies || []).map((qr) => qr.title?.fi || qr.payload).join(", ");
      pairs.push([`${t("quickReplies")}: `, titles(before), titles(after)]);
    }
  } else if (change.kind === "fact" && before && after) {
    pairs.push(["", valueText(before.value), valueText(after.value)]);
    if (before.checked !== after.checked) pairs.push([`${t("checked")}: `, before.checked, after.checked]);
  } else {
    pairs.push(["", valueText(before), valueText(after)]);
  }
  return el("div", { class: "diff" }, pairs.map(([label, old, now]) => el("p", {}, label,
    el("del", {}, el("span", { class: "visually-hidden" }, "− "), valueText(old)), " → ",
    el("ins", {}, el("span", { class: "visually-hidden" }, "+ "), valueText(now)))));
}

export async function render(view) {
  view.append(el("h1", {}, t("nav_history")), el("p", { class: "intro" }, t("historyIntro")));
  const table = el("table", { class: "table history" },
    el("caption", { class: "visually-hidden" }, t("nav_history")),
    el("thead", {}, el("tr", {}, [t("when"), t("who"), t("what"), t("beforeAfter"), t("actions")].map((h) => el("th", { scope: "col" }, h)))));
  const body = el("tbody");
  table.append(body);
  const more = el("button", { type: "button", class: "button", hidden: true }, t("moreChanges"));
  let oldest = null;

  const row = (change) => {
    const cell = el("td");
    if (change.undone_by) {
      cell.append(el("span", { class: "badge" }, `${t("undone")} (#${change.undone_by})`));
    } else {
      const button = el("button", { type: "button", class: "button button--small", id: `undo-${change.id}`,
        "aria-label": t("undoLabel", { summary: what(change) }) }, t("undo"));
      button.addEventListener("click", async () => {
        if (!window.confirm(t("undoConfirm"))) return;
        const result = await attempt(() => api("POST", `/admin/api/changes/${change.id}/undo`));
        if (result instanceof ApiError) return;
        announce(t("undoneToast"));
        body.replaceChildren();
        oldest = null;
        await load();
        document.getElementById(`undo-${result.change.id}`)?.focus();
      });
      cell.append(button);
    }
    return el("tr", { id: `change-${change.id}` },
      el("td", {}, el("span", { class: "nowrap" }, formatTime(change.at)), el("br"), el("span", { class: "hint" }, `#${change.id}`)),
      el("td", {}, change.staff_name),
      el("td", {}, what(change)),
      el("td", {}, beforeAfter(change)),
      cell);
  };

  const load = async () => {
    const path = oldest ? `/admin/api/changes?before=${oldest}` : "/admin/api/changes";
    const { changes } = await api("GET", path);
    changes.forEach((change) => body.append(row(change)));
    if (changes.length) oldest = changes[changes.length - 1].id;
    more.hidden = changes.length < 50;
    if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: 5 }, t("noChanges"))));
  };
  more.addEventListener("click", load);
  await load();
  view.append(tableWrap(table, t("nav_history")), more);
}
