// Statistics: a chart per measure (inline SVG), its data as a table, and CSV downloads.

import { LANG, duration, languageName, percent, t, topicName } from "./i18n.js";
import { api, clear, el } from "./ui.js";

const CHART_WIDTH = 600; // viewBox units; the chart scales to its card
const ORDER = ["conversations", "conversations_by_hour", "conversations_by_topic", "conversations_by_language",
  "answered_by_bot", "handoffs_by_reason", "queue_wait_secs", "queue_outcomes", "callback_requests", "counsellor_tags"];

function isoDay(date) {
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 10);
}

function keyLabel(measure, key) {
  switch (measure) {
    case "conversations_by_topic": return key === "none" ? t("topic_none") : topicName(key);
    case "counsellor_tags": return key === "other" ? t("tag_other") : topicName(key);
    case "conversations_by_language": return languageName(key);
    case "answered_by_bot": return t(`answered_${key}`);
    case "handoffs_by_reason": return t(`reason_${key}`) === `reason_${key}` ? key : t(`reason_${key}`);
    case "queue_outcomes": return t(`outcome_${key}`) === `outcome_${key}` ? key : t(`outcome_${key}`);
    case "queue_wait_secs": return t("waitBucket", { k: key.replace("-", "–") });
    case "conversations":
    case "callback_requests": {
      const locale = { fi: "fi-FI", sv: "sv-FI", en: "en-GB" }[LANG];
      return new Date(`${key}T12:00:00`).toLocaleDateString(locale, { day: "numeric", month: "numeric" });
    }
    default: return key;
  }
}

/** A bar chart as inline SVG: an image with a text alternative; the table below has the data. */
function barChart(id, title, rows, { vertical = true } = {}) {
  const max = Math.max(1, ...rows.map((r) => r[1]));
  const svg = el("svg", { role: "img", "aria-labelledby": `${id}-title ${id}-desc`, class: "chart",
    focusable: "false" });
  const top = rows.reduce((best, r) => (r[1] > best[1] ? r : best), rows[0] || ["", 0]);
  svg.append(el("title", { id: `${id}-title` }, title),
    el("desc", { id: `${id}-desc` }, rows.length ? `${t("total", { n: rows.reduce((n, r) => n + r[1], 0) })}. ${top[0]}: ${top[1]}` : t("noData")));
  if (vertical) {
    const width = CHART_WIDTH;
    const height = 220;
    const bar = (width - 48) / Math.max(rows.length, 1);
    const every = Math.ceil(rows.length / 12); // at most a dozen labels under the bars
    svg.setAttribute("viewBox", `0 0 ${width} ${height + 30}`);
    svg.append(el("line", { x1: 44, y1: height, x2: width, y2: height, class: "chart__axis" }),
      el("text", { x: 38, y: 16, class: "chart__tick", "text-anchor": "end" }, String(max)),
      el("text", { x: 38, y: height, class: "chart__tick", "text-anchor": "end" }, "0"));
    rows.forEach(([label, value], i) => {
      const h = Math.round((value / max) * (height - 20));
      const x = 48 + i * bar;
      svg.append(el("rect", { x: x + 2, y: height - h, width: Math.max(bar - 4, 2), height: h, class: "chart__bar" }));
      if (i % every === 0) {
        svg.append(el("text", { x: x + bar / 2, y: height + 22, class: "chart__label", "text-anchor": "middle" }, label));
      }
    });
  } else {
    const rowHeight = 30;
    const height = rows.length * rowHeight + 8;
    const width = CHART_WIDTH;
    const labelWidth = 240;
    svg.setAttribute("viewBox", `0 0 ${width} ${Math.max(height, 30)}`);
    rows.forEach(([label, value], i) => {
      const w = Math.round((value / max) * (width - labelWidth - 60));
      const y = 4 + i * rowHeight;
      svg.append(
        el("text", { x: labelWidth - 8, y: y + 20, class: "chart__label", "text-anchor": "end" }, label.length > 26 ? `${label.slice(0, 25)}…` : label),
        el("rect", { x: labelWidth, y: y + 4, width: Math.max(w, 1), height: rowHeight - 8, class: "chart__bar" }),
        el("text", { x: labelWidth + w + 6, y: y + 20, class: "chart__value" }, String(value)));
    });
  }
  return svg;
}

function measureFigure(measure, entry, period) {
  const id = `m-${measure}`;
  const title = t(`m_${measure}`);
  const rows = entry.rows.map(([key, value]) => [keyLabel(measure, key), value, key]);
  const vertical = ["conversations", "callback_requests", "conversations_by_hour", "queue_wait_secs"].includes(measure);
  const figure = el("section", { class: "card stat", "aria-labelledby": `${id}-heading` },
    el("h2", { id: `${id}-heading` }, title));
  if (measure === "answered_by_bot" && entry.share_bot !== null) {
    figure.append(el("p", { class: "stat__summary" }, t("shareBot", { p: percent(entry.share_bot) })));
  }
  if (entry.kind === "waits" && entry.answered) {
    figure.append(el("p", { class: "stat__summary" },
      t("waitSummary", { median: duration(entry.median_secs), p90: duration(entry.p90_secs), n: entry.answered })));
  }
  if (!entry.total) {
    figure.append(el("p", { class: "empty" }, t("noData")));
  } else {
    figure.append(el("figure", {}, barChart(id, title, rows, { vertical })));
  }
  const head = entry.kind === "daily" ? t("day") : measure === "conversations_by_hour" ? t("hour") : t("key");
  figure.append(el("details", { class: "stat__table" }, el("summary", {}, t("showTable")),
    el("table", { class: "table" }, el("caption", { class: "visually-hidden" }, title),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, head), el("th", { scope: "col", class: "num" }, t("count")))),
      el("tbody", {}, rows.map(([label, value]) => el("tr", {}, el("th", { scope: "row" }, label), el("td", { class: "num" }, value)))))));
  figure.append(el("p", {}, el("a", {
    href: `/admin/api/stats/${measure}.csv?from=${period.from}&to=${period.to}`, download: "", class: "csv-link",
  }, `${t("downloadCsv")}: ${title}`)));
  return figure;
}

export async function render(view) {
  view.append(el("h1", {}, t("nav_stats")), el("p", { class: "intro" }, t("statsIntro")));
  const today = new Date();
  const before = (days) => isoDay(new Date(today.getTime() - days * 86400000));
  const from = el("input", { type: "date", id: "stats-from", value: before(29) });
  const to = el("input", { type: "date", id: "stats-to", value: isoDay(today) });
  const results = el("div", { class: "stats", "aria-live": "off" });
  const form = el("form", { class: "card period", novalidate: true },
    el("div", { class: "row row--wrap" },
      el("div", { class: "field" }, el("label", { for: "stats-from" }, t("from")), from),
      el("div", { class: "field" }, el("label", { for: "stats-to" }, t("to")), to),
      el("button", { type: "submit", class: "button button--primary" }, t("show"))),
    el("div", { class: "row row--wrap" }, [[6, "last7"], [29, "last30"], [364, "last365"]].map(([days, key]) =>
      el("button", { type: "button", class: "button button--small", onclick: () => {
        from.value = before(days);
        to.value = isoDay(today);
        load();
      } }, t(key)))));
  const load = async () => {
    const report = await api("GET", `/admin/api/stats?from=${from.value}&to=${to.value}`);
    clear(results);
    const period = { from: report.from, to: report.to };
    ORDER.forEach((measure) => results.append(measureFigure(measure, report.measures[measure], period)));
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  view.append(form, results);
  await load();
}
