// The inbox of messages the bot did not understand, grouped by similarity.

import { formatTime, percent, t, topicName } from "./i18n.js";
import { ApiError, announce, api, attempt, clear, el, languageTag, showProblems } from "./ui.js";
import { loadContent } from "./content.js";

export async function render(view) {
  const [inbox, content] = await Promise.all([api("GET", "/admin/api/inbox"), loadContent()]);
  const intents = content.intents.map((intent) => intent.id);
  view.append(el("h1", {}, t("nav_inbox")), el("p", { class: "intro" }, t("inboxIntro")));
  const list = el("div", { class: "inbox" });
  view.append(list);
  draw(list, inbox, intents);
}

async function reload(list, intents, focusSelector) {
  const inbox = await api("GET", "/admin/api/inbox");
  clear(list);
  draw(list, inbox, intents);
  const target = (focusSelector && list.querySelector(focusSelector)) || document.querySelector("h1");
  if (target) {
    if (!target.matches("button, input, select, a")) target.setAttribute("tabindex", "-1");
    target.focus();
  }
}

function draw(list, inbox, intents) {
  if (!inbox.groups.length) {
    list.append(el("p", { class: "empty" }, t("inboxEmpty")));
    return;
  }
  list.append(el("p", { class: "hint" }, t("inboxTotal", { n: inbox.total, g: inbox.groups.length })));
  inbox.groups.forEach((group, index) => list.append(groupCard(list, group, index, intents)));
}

function groupCard(list, group, index, intents) {
  const base = `group-${group.id}`;
  const card = el("section", { class: "card inbox-group", id: base, "aria-labelledby": `${base}-heading` },
    el("h2", { id: `${base}-heading` }, t("groupHeading", { n: group.size }), ": ",
      el("q", {}, group.label)));
  const guesses = group.guesses.length
    ? group.guesses.map((g) => `${topicName(g.intent)} ${percent(g.confidence)}`).join(", ") : t("noGuesses");
  card.append(el("p", { class: "hint" }, `${t("guesses")}: ${guesses}`));
  const items = el("ul", { class: "inbox-items" });
  group.items.forEach((item) => {
    const id = `${base}-m${item.message_id}`;
    items.append(el("li", { class: "inbox-item" },
      el("input", { type: "checkbox", id: `${id}-pick`, checked: true, "data-message": item.message_id,
        "aria-label": `${t("select")}: ${item.text}` }),
      el("label", { for: `${id}-text`, class: "visually-hidden" }, t("messageText")),
      el("input", { type: "text", id: `${id}-text`, value: item.text, lang: item.language || null,
        "data-message": item.message_id, class: "inbox-item__text", autocomplete: "off" }),
      el("span", { class: "inbox-item__meta" }, languageTag(item.language), " ",
        formatTime(item.at), " · ",
        item.guesses.length ? `${topicName(item.guesses[0].intent)} ${percent(item.guesses[0].confidence)}` : t("noGuesses"))));
  });
  card.append(items);
  const selectId = `${base}-intent`;
  const best = group.guesses[0]?.intent;
  const select = el("select", { id: selectId },
    intents.map((intent) => el("option", { value: intent, selected: intent === best }, topicName(intent))));
  const assign = el("button", { type: "button", class: "button button--primary" }, t("assign"));
  const dismiss = el("button", { type: "button", class: "button" }, t("dismiss"));
  card.append(el("div", { class: "inbox-actions" },
    el("div", { class: "field" }, el("label", { for: selectId }, t("assignTo")), select),
    el("div", { class: "row" }, assign, dismiss)));

  const picked = () => [...items.querySelectorAll('input[type="checkbox"]:checked')].map((box) => Number(box.dataset.message));
  const nextFocus = () => {
    const next = list.querySelectorAll(".inbox-group")[index + 1] ? index : index - 1;
    return next >= 0 ? `.inbox-group:nth-of-type(${next + 1}) h2` : null;
  };
  assign.addEventListener("click", async () => {
    const ids = picked();
    if (!ids.length) { announce(t("noneSelected"), "error"); return; }
    const texts = Object.fromEntries(ids.map((mid) => [mid, items.querySelector(`input[type="text"][data-message="${mid}"]`).value]));
    const result = await attempt(() => api("POST", "/admin/api/inbox/assign", { message_ids: ids, intent: select.value, texts }));
    if (result instanceof ApiError) {
      if (result.status === 422) showProblems(card, result.data.problems || []);
      return;
    }
    announce(t("assignedToast", { n: ids.length, topic: topicName(select.value) }));
    await reload(list, intents, nextFocus());
  });
  dismiss.addEventListener("click", async () => {
    const ids = picked();
    if (!ids.length) { announce(t("noneSelected"), "error"); return; }
    const result = await attempt(() => api("POST", "/admin/api/inbox/dismiss", { message_ids: ids }));
    if (result instanceof ApiError) return;
    announce(t("dismissedToast", { n: ids.length }));
    await reload(list, intents, nextFocus());
  });
  return card;
}
