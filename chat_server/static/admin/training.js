// Retraining with progress, the evaluation of the new model beside the current one,
// activation, and the list of models (rollback by activating an older one).

import { formatTime, percent, t, topicName, LANGUAGES } from "./i18n.js";
import { ApiError, announce, api, attempt, clear, el, tableWrap } from "./ui.js";

const POLL_MS = 1000;

export async function render(view) {
  view.append(el("h1", {}, t("nav_training")), el("p", { class: "intro" }, t("trainingIntro")));
  const runBox = el("section", { class: "card", "aria-labelledby": "run-heading" });
  const modelsBox = el("section", { class: "card", "aria-labelledby": "models-heading" });
  view.append(runBox, modelsBox);
  let timer = null;
  let lastPhase = null;
  let stopped = false;

  const drawModels = async () => {
    const listing = await api("GET", "/admin/api/models");
    clear(modelsBox);
    modelsBox.append(el("h2", { id: "models-heading" }, t("models")), el("p", { class: "hint" }, t("modelsIntro")));
    if (!listing.rasa_answers) modelsBox.append(el("p", { class: "note" }, t("rasaDown")));
    else if (listing.servers_differ) modelsBox.append(el("p", { class: "note" }, t("serversDiffer")));
    if (!listing.models.length) {
      modelsBox.append(el("p", { class: "empty" }, t("noModels")));
      return listing;
    }
    const headings = [t("modelName"), t("trainedAt"), t("examplesN"), t("accuracy"), t("activatedBy"), t("status"), t("actions")];
    const row = (model) => el("tr", { class: model.active ? "is-active" : null },
      el("th", { scope: "row" }, el("span", { class: "model-name" }, model.name.replace(/\.tar\.gz$/, ""))),
      el("td", {}, formatTime(model.trained_at), model.trained_by ? el("span", { class: "hint" }, ` (${model.trained_by})`) : null),
      el("td", {}, model.examples ?? "–"),
      el("td", {}, model.accuracy === null ? "–" : percent(model.accuracy)),
      el("td", {}, model.activated_at ? `${formatTime(model.activated_at)} (${model.activated_by})` : "–"),
      el("td", {}, model.active ? el("strong", { class: "badge badge--ok" }, t("inUse")) : model.candidate ? t("candidate") : ""),
      el("td", {}, model.active && !listing.servers_differ ? "" : activateButton(model.name, "button button--small",
        t("activate"), t("activateLabel", { name: model.name }))));
    const table = el("table", { class: "table models" },
      el("caption", { class: "visually-hidden" }, t("models")),
      el("thead", {}, el("tr", {}, headings.map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, listing.models.map(row)));
    modelsBox.append(tableWrap(table, t("models")));
    return listing;
  };

  const activateButton = (name, cls, text, label) => {
    const button = el("button", { type: "button", class: cls, "aria-label": label, "data-model": name }, text);
    button.addEventListener("click", async () => {
      if (!window.confirm(t("activateConfirm", { name }))) return;
      button.disabled = true;
      const old = button.textContent;
      button.textContent = t("activating");
      announce(t("activating"));
      const result = await attempt(() => api("POST", `/admin/api/models/${encodeURIComponent(name)}/activate`));
      button.disabled = false;
      button.textContent = old;
      if (result instanceof ApiError) return;
      announce(t("activated", { name, s: result.swap_secs.toFixed(1) }));
      await drawModels();
      await drawRun(false);
      document.getElementById("models-heading").focus();
    });
    return button;
  };

  const drawRun = async (announcePhases) => {
    const { run } = await api("GET", "/admin/api/training");
    clear(runBox);
    const running = run && run.status === "running";
    const start = el("button", { type: "button", class: "button button--primary", id: "train", disabled: running }, t("train"));
    start.addEventListener("click", async () => {
      start.disabled = true;
      const result = await attempt(() => api("POST", "/admin/api/training"));
      if (result instanceof ApiError) { start.disabled = false; return; }
      announce(t("trainingRunning"));
      await drawRun(true);
      poll();
    });
    runBox.append(el("h2", { id: "run-heading" }, running ? t("trainingRunning") : t("train")), start);
    if (!run) return run;
    runBox.append(el("p", { class: "hint" }, t("startedBy", { name: run.started_by, time: formatTime(run.started_at) })));
    if (running) {
      const value = Math.round(run.progress * 100);
      const phase = t(`phase_${run.phase}`);
      runBox.append(
        el("label", { for: "train-progress", class: "progress-label" }, `${phase} – ${value} %`),
        el("progress", { id: "train-progress", max: 100, value, "aria-describedby": "train-elapsed" }, `${value} %`),
        el("p", { id: "train-elapsed", class: "hint" }, t("elapsed", { s: Math.round(run.elapsed_secs) })));
      if (announcePhases && run.phase !== lastPhase) announce(phase);
      lastPhase = run.phase;
    } else if (run.status === "failed") {
      runBox.append(el("p", { class: "alert alert--error", role: "alert" }, t("trainingFailed", { error: (run.error || "").split("\n")[0] })));
    } else if (run.status === "ready") {
      runBox.append(el("p", { class: "alert", id: "train-ready" }, t("trainingReady", { s: Math.round(run.timings?.total_secs ?? run.elapsed_secs) })));
      if (lastPhase && lastPhase !== "done" && announcePhases) announce(t("trainingReady", { s: Math.round(run.timings?.total_secs ?? run.elapsed_secs) }));
      lastPhase = "done";
      runBox.append(evaluationTable(run));
      const listing = await api("GET", "/admin/api/models");
      if (listing.active !== run.model && listing.models.some((m) => m.name === run.model)) {
        runBox.append(el("div", { class: "actions" }, activateButton(run.model, "button button--primary", t("activateNew"), t("activateNew"))));
      }
    }
    return run;
  };

  const poll = () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(async () => {
      if (stopped) return;
      const run = await drawRun(true).catch(() => null);
      if (run && run.status === "running") poll();
      else if (!stopped) await drawModels();
    }, POLL_MS);
  };

  const run = await drawRun(false);
  await drawModels();
  if (run && run.status === "running") poll();
  return () => { stopped = true; window.clearTimeout(timer); };
}

function cell(pair) {
  if (!pair || !pair[1]) return null;
  return pair[0] / pair[1];
}

function comparison(newPair, currentPair) {
  const now = cell(newPair);
  const before = cell(currentPair);
  const nodes = [el("td", { class: "num" }, now === null ? "–" : percent(now))];
  let mark = "";
  if (now !== null && before !== null && Math.abs(now - before) >= 0.005) {
    mark = now > before ? "better" : "worse";
  }
  nodes.push(el("td", { class: `num ${mark ? `is-${mark}` : ""}` }, before === null ? "–" : percent(before),
    mark ? el("span", { class: "change-mark" }, mark === "better" ? " ▲" : " ▼",
      el("span", { class: "visually-hidden" }, ` (${t(mark === "better" ? "better" : "worse")} ${t("newModel").toLowerCase()})`)) : null));
  return nodes;
}

/** Per topic and language: correct share of held-out messages, new model beside current. */
function evaluationTable(run) {
  const evaluation = run.evaluation || {};
  const fresh = evaluation.new;
  const current = evaluation.current;
  const box = el("section", { class: "evaluation", "aria-labelledby": "eval-heading" },
    el("h3", { id: "eval-heading" }, t("evaluation")),
    el("p", { class: "hint" }, t("evaluationIntro", { n: evaluation.heldout_cases ?? 0 })));
  if (!fresh) {
    box.append(el("p", {}, t("notAvailable")));
    return box;
  }
  const head1 = el("tr", {}, el("td"), [...LANGUAGES, "all"].map((lang) => el("th", { scope: "colgroup", colspan: 2 },
    lang === "all" ? t("overall") : lang.toUpperCase())));
  const head2 = el("tr", {}, el("th", { scope: "col" }, t("topic")),
    [...LANGUAGES, "all"].flatMap(() => [el("th", { scope: "col" }, t("newModel")), el("th", { scope: "col" }, t("currentModel"))]));
  const intents = Object.keys(fresh.by_intent);
  const rows = intents.map((intent) => el("tr", {}, el("th", { scope: "row" }, topicName(intent)),
    [...LANGUAGES, "all"].flatMap((lang) => comparison(fresh.by_intent[intent]?.[lang], current?.by_intent?.[intent]?.[lang]))));
  const totals = (report, lang) => {
    if (!report) return null;
    if (lang === "all") return [Math.round(report.accuracy * report.cases), report.cases];
    const entry = report.by_language[lang];
    return entry ? [Math.round(entry.accuracy * entry.cases), entry.cases] : null;
  };
  const totalRow = el("tr", { class: "total" }, el("th", { scope: "row" }, t("overall")),
    [...LANGUAGES, "all"].flatMap((lang) => comparison(totals(fresh, lang), totals(current, lang))));
  box.append(tableWrap(el("table", { class: "table evaluation__table" },
    el("caption", { class: "visually-hidden" }, t("evaluation")),
    el("thead", {}, head1, head2), el("tbody", {}, rows), el("tfoot", {}, totalRow)), t("evaluation")));
  box.append(confusionList(fresh.confusions || []));
  return box;
}

/** Which topics the new model mixed up on the held-out set: where examples are needed. */
function confusionList(confusions) {
  const section = el("section", { class: "confusions", "aria-labelledby": "confusions-heading" },
    el("h4", { id: "confusions-heading" }, t("confusions")));
  if (!confusions.length) {
    section.append(el("p", {}, t("noConfusions")));
    return section;
  }
  section.append(el("p", { class: "hint" }, t("confusionsIntro")),
    el("ul", { class: "confusions__list" }, confusions.slice(0, 10).map((c) => el("li", {},
      t("confusion", { expected: topicName(c.expected), predicted: topicName(c.predicted), n: c.count })))));
  return section;
}
