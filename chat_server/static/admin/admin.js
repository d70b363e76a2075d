// The admin page: navigation between its sections (#content, #facts, #inbox...).
// Each section module renders into <main> and handles its own forms.

import { setLanguage, t } from "./i18n.js";
import { clear, el } from "./ui.js";
import * as content from "./content.js";
import * as facts from "./facts.js";
import * as history from "./history.js";
import * as inbox from "./inbox.js";
import * as retention from "./retention.js";
import * as stats from "./stats.js";
import * as training from "./training.js";

setLanguage(document.documentElement.lang);

const SECTIONS = [
  ["content", content.renderTopics],
  ["system", content.renderSystem],
  ["facts", facts.render],
  ["inbox", inbox.render],
  ["training", training.render],
  ["history", history.render],
  ["stats", stats.render],
  ["retention", retention.render],
];
const LINKS = [["audit", "/admin/audit"], ["console", "/console"]];

const main = document.getElementById("main");
let leaving = null; // the current section's cleanup (stops polling)

function buildNavigation() {
  const nav = document.getElementById("sections");
  clear(nav);
  nav.setAttribute("aria-label", t("navLabel"));
  const list = el("ul", {},
    SECTIONS.map(([id]) => el("li", {}, el("a", { href: `#${id}`, "data-section": id }, t(`nav_${id}`)))),
    LINKS.map(([id, href]) => el("li", {}, el("a", { href }, t(`nav_${id}`)))));
  nav.append(list);
  document.getElementById("skip").textContent = t("skip");
  document.getElementById("app-title").textContent = t("appTitle");
  document.getElementById("sign-out").textContent = t("signOut");
  const languages = document.getElementById("languages");
  languages.setAttribute("aria-label", t("language"));
  languages.querySelectorAll("a").forEach((a) => {
    if (a.lang === document.documentElement.lang) a.setAttribute("aria-current", "true");
  });
}

async function route() {
  const [section, ...rest] = (window.location.hash.slice(1) || "content").split("/");
  const entry = SECTIONS.find(([id]) => id === section) || SECTIONS[0];
  if (leaving) leaving();
  leaving = null;
  document.querySelectorAll("#sections a[data-section]").forEach((a) => {
    if (a.dataset.section === entry[0]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  document.title = `${t(`nav_${entry[0]}`)} – ${t("appTitle")}`;
  clear(main);
  main.append(el("p", { class: "hint" }, t("loading")));
  const view = el("div", { class: "section" });
  try {
    leaving = (await entry[1](view, rest.map(decodeURIComponent))) || null;
  } finally {
    clear(main);
    main.append(view);
  }
  // A section may name what gets the focus (view.dataset.focus); else its heading.
  const target = (view.dataset.focus && document.getElementById(view.dataset.focus)) || main.querySelector("h1");
  if (target) {
    if (!target.matches("a, button, input, select, textarea")) target.setAttribute("tabindex", "-1");
    target.focus();
  }
}

buildNavigation();
window.addEventListener("hashchange", route);
route();
