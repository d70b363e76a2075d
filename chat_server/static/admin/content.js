// Topics (intents) with their examples and answers, and the system messages.

import { LANG, languageName, t, topicName, LANGUAGES } from "./i18n.js";
import { api, clear, el, save } from "./ui.js";


export async function loadContent() {
  return api("GET", "/admin/api/content");
}

function problemNote(data) {
  if (!data.problems.length) return null;
  return el("p", { class: "note" }, t("existingProblems", { n: data.problems.length }));
}

// --- topics --------------------------------------------------------------------------

export async function renderTopics(view, [selected]) {
  const data = await loadContent();
  const intents = data.intents;
  const current = intents.find((i) => i.id === selected) || null;
  view.append(...[el("h1", {}, t("nav_content")), el("p", { class: "intro" }, t("contentIntro")), problemNote(data)].filter(Boolean));
  const layout = el("div", { class: "split" });
  const list = el("nav", { class: "topic-list", "aria-label": t("topics") },
    el("ul", {}, intents.map((intent) => {
      const total = LANGUAGES.reduce((n, lang) => n + intent.examples[lang].length, 0);
      const problems = data.problems.filter((p) => p.item.intent === intent.id || p.item.response === intent.id).length;
      return el("li", {}, el("a", {
        href: `#content/${intent.id}`, "aria-current": current && current.id === intent.id ? "page" : null,
      }, el("span", { class: "topic-list__name" }, topicName(intent.id)),
      el("span", { class: "topic-list__meta" }, t("examplesCount", { n: total }),
        problems ? el("span", { class: "badge badge--warn" }, `! ${problems}`) : null)));
    })));
  layout.append(list);
  const editor = el("div", { class: "editor" });
  layout.append(editor);
  view.append(layout);
  if (current) {
    renderIntent(editor, data, current);
    view.dataset.focus = "intent-heading";
  } else {
    editor.append(el("p", { class: "hint" }, t("contentIntro")));
  }
}

async function refresh(editor, intentId, focusId) {
  const data = await loadContent();
  const intent = data.intents.find((i) => i.id === intentId);
  clear(editor);
  renderIntent(editor, data, intent);
  const target = focusId && document.getElementById(focusId);
  if (target) target.focus();
}

function renderIntent(editor, data, intent) {
  editor.append(
    el("h2", { id: "intent-heading", class: "editor__title" }, topicName(intent.id),
      el("span", { class: "editor__id" }, ` (${intent.id})`)),
    descriptionForm(editor, intent, data.versions.description[intent.id]),
    el("section", { class: "card", "aria-labelledby": "examples-heading" },
      el("h3", { id: "examples-heading" }, t("examples")),
      el("p", { class: "hint" }, t("examplesHint")),
      el("div", { class: "languages" }, LANGUAGES.map((lang) => examplesBlock(editor, intent, lang)))),
  );
  const answer = data.responses[intent.id];
  if (answer) editor.append(answerForm(data, intent.id, answer, () => refresh(editor, intent.id, `ans-save-${intent.id}`)));
}

function descriptionForm(editor, intent, version) {
  const id = `desc-${intent.id}`;
  const form = el("form", { class: "inline-form", novalidate: true },
    el("label", { for: id }, t("description")),
    el("div", { class: "row" },
      el("input", { id, type: "text", value: intent.description, autocomplete: "off" }),
      el("button", { type: "submit", class: "button" }, t("saveDescription"))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ok = await save(form, () => api("POST", "/admin/api/changes",
      { kind: "description", intent: intent.id, after: form.querySelector("input").value, version }));
    if (ok) refresh(editor, intent.id, id);
  });
  return form;
}

function examplesBlock(editor, intent, lang) {
  const examples = intent.examples[lang];
  const headingId = `examples-${lang}`;
  const block = el("section", { class: "examples", "aria-labelledby": headingId, lang },
    el("h4", { id: headingId, lang: LANG }, `${t(`inLanguage_${lang}`)} (${examples.length})`));
  const addId = `add-${intent.id}-${lang}`;
  const addForm = el("form", { class: "inline-form", novalidate: true, lang: LANG },
    el("label", { for: addId }, `${t("newExample")} (${languageName(lang)})`),
    el("div", { class: "row" },
      el("input", { id: addId, type: "text", autocomplete: "off", lang }),
      el("button", { type: "submit", class: "button button--primary" }, t("addExample"))));
  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = addForm.querySelector("input").value;
    const ok = await save(addForm, () => api("POST", "/admin/api/changes",
      { kind: "example", intent: intent.id, language: lang, after: text }));
    if (ok) refresh(editor, intent.id, addId);
  });
  block.append(addForm);
  if (!examples.length) block.append(el("p", { class: "empty", lang: LANG }, t("noExamples")));
  const list = el("ul", { class: "example-list" });
  examples.forEach((text, index) => list.append(exampleRow(editor, intent, lang, text, index)));
  block.append(list);
  return block;
}

function exampleRow(editor, intent, lang, text, index) {
  const id = `ex-${intent.id}-${lang}-${index}`;
  const row = el("li", { class: "example" });
  const show = () => {
    clear(row);
    row.append(el("span", { class: "example__text", id }, text),
      el("span", { class: "example__actions", lang: LANG },
        el("button", { type: "button", class: "button button--small", id: `${id}-edit`,
          "aria-label": `${t("edit")}: ${text}`, onclick: edit }, t("edit")),
        el("button", { type: "button", class: "button button--small", "aria-label": `${t("remove")}: ${text}`,
          onclick: remove }, t("remove"))));
  };
  const edit = () => {
    clear(row);
    const input = el("input", { id, type: "text", value: text, "aria-label": t("exampleText"), lang });
    const form = el("form", { class: "row", novalidate: true, lang: LANG }, input,
      el("button", { type: "submit", class: "button button--primary button--small" }, t("save")),
      el("button", { type: "button", class: "button button--small", onclick: () => { show(); document.getElementById(`${id}-edit`).focus(); } }, t("cancel")));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const ok = await save(row, () => api("POST", "/admin/api/changes",
        { kind: "example", intent: intent.id, language: lang, before: text, after: input.value }));
      if (ok) refresh(editor, intent.id, `${id}-edit`);
    });
    row.append(form);
    input.focus();
  };
  const remove = async () => {
    if (!window.confirm(t("removeExampleConfirm", { text }))) return;
    const ok = await save(row, () => api("POST", "/admin/api/changes",
      { kind: "example", intent: intent.id, language: lang, before: text, after: null }));
    if (ok) refresh(editor, intent.id, `add-${intent.id}-${lang}`);
  };
  show();
  return row;
}

// --- answers ----------------------------------------------------------------------------

function render(template, facts, lang) {
  return template.replace(/\{([a-z_][a-z0-9_]*)\}/g, (m, name) => {
    const fact = facts[name];
    if (!fact) return m;
    const value = fact.value;
    return typeof value === "object" && value !== null ? value[lang] ?? value.fi : value;
  });
}

/** The form of one answer: its text per language and its quick reply buttons. */
export function answerForm(data, rid, answer, after) {
  const headingId = `answer-heading-${rid}`;
  const form = el("form", { class: "card answer", novalidate: true, "aria-labelledby": headingId });
  form.append(el("h3", { id: headingId }, `${t("answer")}: ${topicName(rid)}`));
  if (answer.help) form.append(el("p", { class: "hint" }, el("strong", {}, `${t("fileNote")}: `), el("span", { lang: "en" }, answer.help)));
  form.append(el("p", { class: "hint" }, t("answerHint")));
  const previews = {};
  for (const lang of LANGUAGES) {
    const id = `ans-${rid}-${lang}`;
    const area = el("textarea", { id, rows: 4, lang, value: answer.text[lang] || "" });
    const preview = el("p", { class: "preview", lang, id: `${id}-preview` });
    previews[lang] = () => { preview.textContent = render(area.value, data.facts, lang); };
    area.addEventListener("input", previews[lang]);
    previews[lang]();
    form.append(el("div", { class: "field" }, el("label", { for: id }, t(`inLanguage_${lang}`)), area,
      el("details", { class: "preview-box" }, el("summary", {}, `${t("preview")} (${languageName(lang)})`), preview)));
  }
  form.append(el("details", { class: "placeholders" }, el("summary", {}, t("placeholders")),
    el("ul", {}, data.placeholders.map((name) => el("li", {}, el("code", {}, `{${name}}`))))));

  const replies = (answer.quick_replies || []).map((qr) => ({ payload: qr.payload, title: { ...qr.title } }));
  const fieldset = el("fieldset", { class: "quick-replies" });
  const drawReplies = (focusId) => {
    clear(fieldset);
    fieldset.append(el("legend", {}, t("quickReplies")), el("p", { class: "hint" }, t("quickRepliesHint")));
    replies.forEach((reply, index) => {
      const base = `qr-${rid}-${index}`;
      const select = el("select", { id: `${base}-payload` },
        data.payload_targets.map((target) => el("option", { value: `/${target}`, selected: reply.payload === `/${target}` }, topicName(target))));
      if (!data.payload_targets.includes(reply.payload.slice(1))) {
        select.append(el("option", { value: reply.payload, selected: true }, reply.payload));
      }
      select.addEventListener("change", () => { reply.payload = select.value; });
      const group = el("div", { class: "quick-reply", role: "group", "aria-labelledby": `${base}-label` },
        el("p", { class: "quick-reply__title", id: `${base}-label` }, t("button", { n: index + 1 })),
        el("div", { class: "field" }, el("label", { for: `${base}-payload` }, t("buttonTarget")), select));
      for (const lang of LANGUAGES) {
        const input = el("input", { id: `${base}-title-${lang}`, type: "text", lang, value: reply.title[lang] || "" });
        input.addEventListener("input", () => { reply.title[lang] = input.value; });
        group.append(el("div", { class: "field" },
          el("label", { for: `${base}-title-${lang}` }, `${t("buttonText")} (${languageName(lang)})`), input));
      }
      group.append(el("button", { type: "button", class: "button button--small", id: `${base}-remove`,
        onclick: () => { replies.splice(index, 1); drawReplies(`qr-${rid}-add`); } }, t("removeButton", { n: index + 1 })));
      fieldset.append(group);
    });
    fieldset.append(el("button", {
      type: "button", class: "button button--small", id: `qr-${rid}-add`, disabled: replies.length >= 3,
      onclick: () => {
        replies.push({ payload: "/request_counsellor", title: { fi: "", sv: "", en: "" } });
        drawReplies(`qr-${rid}-${replies.length - 1}-payload`);
      },
    }, t("addButton")));
    const target = focusId && fieldset.querySelector(`#${CSS.escape(focusId)}`);
    if (target) target.focus();
  };
  drawReplies();
  form.append(fieldset);
  form.append(el("div", { class: "actions" }, el("button", { type: "submit", class: "button button--primary", id: `ans-save-${rid}` }, t("saveAnswer"))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = Object.fromEntries(LANGUAGES.map((lang) => [lang, form.querySelector(`#ans-${rid}-${lang}`).value]));
    const ok = await save(form, () => api("POST", "/admin/api/changes",
      // The version loaded: the server refuses the save if someone changed the answer since.
      { kind: "answer", response: rid, after: { text, quick_replies: replies }, version: data.versions.answer[rid] }));
    if (ok && after) after();
  });
  return form;
}

// --- system messages --------------------------------------------------------------------

export async function renderSystem(view, [selected]) {
  const data = await loadContent();
  const ids = Object.keys(data.responses).filter((rid) => data.responses[rid].group === "system");
  view.append(...[el("h1", {}, t("nav_system")), el("p", { class: "intro" }, t("systemIntro")), problemNote(data)].filter(Boolean));
  const layout = el("div", { class: "split" });
  layout.append(el("nav", { class: "topic-list", "aria-label": t("nav_system") },
    el("ul", {}, ids.map((rid) => el("li", {}, el("a", { href: `#system/${rid}`, "aria-current": rid === selected ? "page" : null },
      el("span", { class: "topic-list__name" }, topicName(rid)),
      topicName(rid) !== rid ? el("span", { class: "topic-list__meta" }, rid) : null))))));
  const editor = el("div", { class: "editor" });
  layout.append(editor);
  view.append(layout);
  if (selected && data.responses[selected]) {
    const again = async () => {
      const fresh = await loadContent();
      clear(editor);
      editor.append(answerForm(fresh, selected, fresh.responses[selected], again));
      document.getElementById(`ans-save-${selected}`)?.focus();
    };
    editor.append(answerForm(data, selected, data.responses[selected], again));
    view.dataset.focus = `answer-heading-${selected}`;
  } else {
    editor.append(el("p", { class: "hint" }, t("systemIntro")));
  }
  return null;
}

