// Service facts (the {placeholders} of answers) and the machine-readable opening hours.

import { languageName, t, topicName, LANGUAGES } from "./i18n.js";
import { api, el, save } from "./ui.js";
import { loadContent } from "./content.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

function usedIn(data, name) {
  const token = `{${name}}`;
  return Object.entries(data.responses)
    .filter(([, entry]) => Object.values(entry.text || {}).some((text) => String(text).includes(token)))
    .map(([rid]) => topicName(rid));
}

/** What a fact needs: "unfilled", "example", "stale" or null (from the server's fact report). */
function attentionOf(row) {
  if (!row) return null;
  if (row.status !== "filled") return row.status;
  return row.stale ? "stale" : null;
}

/** The facts to fill, confirm or re-check, first on the page, each a link to its form. */
function attentionList(data) {
  const section = el("section", { class: "card attention", "aria-labelledby": "attention-heading" },
    el("h2", { id: "attention-heading" }, t("attentionHeading")), el("p", { class: "hint" }, t("attentionIntro")));
  const rows = (data.fact_report || []).filter((row) => attentionOf(row));
  if (!rows.length) {
    section.append(el("p", {}, t("allFactsFilled")));
    return section;
  }
  const list = el("ul", { class: "attention__list" });
  for (const row of rows) {
    const extra = row.crisis_path ? ` · ${t("crisisPath")}` : "";
    list.append(el("li", { "data-fact": row.name, "data-status": attentionOf(row) },
      el("a", { href: `#facts/${encodeURIComponent(row.name)}` }, el("code", {}, `{${row.name}}`)),
      ` ${t(`status_${attentionOf(row)}`)}${extra}`));
  }
  section.append(list);
  return section;
}

/** The coming days when a channel is closed or keeps other hours. */
function closuresList(data) {
  const section = el("section", { class: "card closures", "aria-labelledby": "closures-heading" },
    el("h3", { id: "closures-heading" }, t("closuresHeading")));
  if (data.example_hours) section.append(el("p", { class: "hint" }, t("exampleHours")));
  const closures = data.closures || [];
  if (!closures.length) {
    section.append(el("p", {}, t("noClosures")));
    return section;
  }
  const list = el("ul", { class: "closures__list" });
  for (const closure of closures) {
    const spans = Object.entries(closure.channels).map(([channel, span]) => {
      const name = t(`channel_${channel}`) === `channel_${channel}` ? channel : t(`channel_${channel}`);
      return `${name} ${span || t("closedWord")}`;
    }).join(", ");
    list.append(el("li", { "data-date": closure.date },
      el("time", { datetime: closure.date }, closure.date), ` ${closure.reason}: ${spans}`));
  }
  section.append(list);
  return section;
}

export async function render(view, [selected]) {
  const data = await loadContent();
  view.append(el("h1", {}, t("nav_facts")), el("p", { class: "intro" }, t("factsIntro")));
  view.append(attentionList(data));
  const report = Object.fromEntries((data.fact_report || []).map((row) => [row.name, row]));
  const rank = { unfilled: 0, example: 1, stale: 2 };
  const names = Object.keys(data.facts).sort((a, b) =>
    (rank[attentionOf(report[a])] ?? 3) - (rank[attentionOf(report[b])] ?? 3));  // stable: file order within
  const list = el("div", { class: "facts" });
  for (const name of names) list.append(factForm(view, data, name, data.facts[name], attentionOf(report[name])));
  view.append(list);
  view.append(el("h2", { id: "hours-heading" }, t("hours")), el("p", { class: "hint" }, t("hoursHint")));
  view.append(closuresList(data));
  for (const [channel, days] of Object.entries(data.hours)) view.append(hoursForm(view, channel, days, data.versions.hours[channel]));
  if (selected) view.dataset.focus = `fact-${selected}-heading`;
}

async function rerender(view, focusId) {
  const fresh = el("div", { class: "section" });
  await render(fresh, []);
  view.replaceWith(fresh);
  document.getElementById(focusId)?.focus();
}

function factForm(view, data, name, fact, attention) {
  const headingId = `fact-${name}-heading`;
  const multi = typeof fact.value === "object" && fact.value !== null;
  const heading = el("h2", { id: headingId, class: "fact__name", tabindex: "-1" }, el("code", {}, `{${name}}`));
  if (attention) heading.append(" ", el("span", { class: `badge badge--${attention}` }, t(`status_${attention}`)));
  const form = el("form", { class: "card fact", novalidate: true, "aria-labelledby": headingId }, heading);
  if (fact.help) form.append(el("p", { class: "hint" }, el("strong", {}, `${t("fileNote")}: `), el("span", { lang: "en" }, fact.help)));
  const used = usedIn(data, name);
  form.append(el("p", { class: "hint" }, used.length ? t("usedIn", { list: used.join(", ") }) : t("notUsed")));
  const valueBox = el("div", { class: "fact__values" });
  const sameId = `fact-${name}-same`;
  const same = el("input", { type: "checkbox", id: sameId, checked: !multi });
  const drawValues = (single) => {
    const old = {};
    valueBox.querySelectorAll("input").forEach((input) => { old[input.dataset.lang] = input.value; });
    valueBox.replaceChildren();
    if (single) {
      const id = `fact-${name}-value`;
      const value = old.all ?? old.fi ?? (multi ? fact.value.fi : fact.value) ?? "";
      valueBox.append(el("div", { class: "field" }, el("label", { for: id }, t("factValue")),
        el("input", { id, type: "text", value, "data-lang": "all", autocomplete: "off" })));
    } else {
      for (const lang of LANGUAGES) {
        const id = `fact-${name}-value-${lang}`;
        const value = old[lang] ?? old.all ?? (multi ? fact.value[lang] : fact.value) ?? "";
        valueBox.append(el("div", { class: "field" }, el("label", { for: id }, `${t("factValue")} (${languageName(lang)})`),
          el("input", { id, type: "text", value, lang, "data-lang": lang, autocomplete: "off" })));
      }
    }
  };
  same.addEventListener("change", () => drawValues(same.checked));
  drawValues(!multi);
  form.append(el("div", { class: "check" }, same, el("label", { for: sameId }, t("sameInAll"))), valueBox);
  const checkedId = `fact-${name}-checked`;
  const placeholderId = `fact-${name}-placeholder`;
  const exampleId = `fact-${name}-example`;
  form.append(
    el("div", { class: "field field--short" }, el("label", { for: checkedId }, t("checked")),
      el("input", { id: checkedId, type: "text", inputmode: "numeric", value: fact.checked || "", autocomplete: "off" })),
    el("div", { class: "check" }, el("input", { type: "checkbox", id: placeholderId, checked: !!fact.placeholder }),
      el("label", { for: placeholderId }, t("placeholderFlag"))),
    el("div", { class: "check" }, el("input", { type: "checkbox", id: exampleId, checked: !!fact.example }),
      el("label", { for: exampleId }, t("exampleFlag"))),
    el("div", { class: "actions" }, el("button", { type: "submit", class: "button button--primary", id: `fact-${name}-save` }, t("saveFact"))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const inputs = [...valueBox.querySelectorAll("input")];
    const value = same.checked ? inputs[0].value : Object.fromEntries(inputs.map((input) => [input.dataset.lang, input.value]));
    const ok = await save(form, () => api("POST", "/admin/api/changes", {
      kind: "fact", fact: name,
      after: { value, checked: form.querySelector(`#${checkedId}`).value,
        placeholder: form.querySelector(`#${placeholderId}`).checked,
        example: form.querySelector(`#${exampleId}`).checked },
      version: data.versions.fact[name],  // the server refuses the save if the fact changed since
    }));
    if (ok) rerender(view, `fact-${name}-save`);
  });
  return form;
}

function hoursForm(view, channel, days, version) {
  const headingId = `hours-${channel}-heading`;
  const form = el("form", { class: "card hours", novalidate: true, "aria-labelledby": headingId },
    el("h3", { id: headingId }, t(`channel_${channel}`) === `channel_${channel}` ? channel : t(`channel_${channel}`)));
  const grid = el("div", { class: "hours__grid" });
  for (const day of DAYS) {
    const id = `hours-${channel}-${day}`;
    grid.append(el("div", { class: "field" }, el("label", { for: id }, t(`day_${day}`)),
      el("input", { id, type: "text", value: days[day] || "", placeholder: "09:00-15:00", autocomplete: "off", "data-day": day })));
  }
  form.append(grid, el("div", { class: "actions" },
    el("button", { type: "submit", class: "button button--primary", id: `hours-${channel}-save` }, t("saveHours"))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const after = Object.fromEntries([...grid.querySelectorAll("input")].map((input) => [input.dataset.day, input.value]));
    const ok = await save(form, () => api("POST", "/admin/api/changes", { kind: "hours", channel, after, version }));
    if (ok) rerender(view, `hours-${channel}-save`);
  });
  return form;
}
