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

let navigation = 0;  // the latest route() wins: a slower, earlier section never overwrites it

async function route() {
  const [section, ...rest] = (window.location.hash.slice(1) || "content").split("/");
  const current = ++navigation;
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
  let cleanup = null;
  try {
    cleanup = (await entry[1](view, rest.map(decodeURIComponent))) || null;
  } finally {
    if (current === navigation) {
      leaving = cleanup;
      clear(main);
      main.append(view);
    } else if (cleanup) {
      cleanup();
    }
  }
  if (current !== navigation) return;
  // A section may name what gets the focus (view.dataset.focus); else its heading.
  const target = (view.dataset.focus && document.getElementById(view.dataset.focus)) || main.querySelector("h1");
  if (target) {
    if (!target.matches("a, button, input, select, textarea")) target.setAttribute("tabindex", "-1");
    target.focus();
  }
}

buildNavigation();
// The skip link moves the focus to the content; it must not change the section.
document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.setAttribute("tabindex", "-1");
  main.focus();
});
// The link of the section already open: no hashchange, so take the focus to its heading here.
document.getElementById("sections").addEventListener("click", (event) => {
  const link = event.target.closest("a[data-section]");
  if (!link || link.getAttribute("href") !== (window.location.hash || "#content")) return;
  event.preventDefault();
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }
});
window.addEventListener("hashchange", route);
route();
