// The staff session in the browser: the idle warning and re-authentication.
//
// - The server ends a sign-in after POLKU_STAFF_IDLE_MINUTES without activity. A minute
//   before, this shows a dialog (role="alertdialog", focus on its button) with the time
//   left; "Stay signed in" tells the server the user is here. Clicks and keys on the page
//   tell it too (at most once every 30 s). When the time is out, the page goes to the
//   sign-in page (after asking the server: another tab may have kept the session alive).
// - window.polkuSession.reauthenticate() asks for the authenticator's code before a
//   sensitive action (the server answered 401 reauth_required); true when accepted.
(function () {
  "use strict";
  var LANG = (document.documentElement.lang || "fi").slice(0, 2);
  var TEXTS = {
    fi: { heading: "Oletko vielä paikalla?", body: "Sinut kirjataan ulos {s} sekunnin kuluttua, koska et ole käyttänyt palvelua hetkeen.",
          stay: "Pysy kirjautuneena", out: "Kirjaudu ulos",
          reauthHeading: "Vahvista henkilöllisyytesi", reauthBody: "Tämä toiminto vaatii todennussovelluksen koodin.",
          code: "Vahvistuskoodi", confirm: "Vahvista", cancel: "Peruuta", wrong: "Koodi ei kelpaa. Yritä uudelleen.",
          wait: "Liian monta yritystä. Odota hetki." },
    sv: { heading: "Är du kvar?", body: "Du loggas ut om {s} sekunder eftersom du inte har använt tjänsten på en stund.",
          stay: "Förbli inloggad", out: "Logga ut",
          reauthHeading: "Bekräfta din identitet", reauthBody: "Den här åtgärden kräver koden i autentiseringsappen.",
          code: "Verifieringskod", confirm: "Bekräfta", cancel: "Avbryt", wrong: "Koden gäller inte. Försök igen.",
          wait: "För många försök. Vänta en stund." },
    en: { heading: "Are you still there?", body: "You will be signed out in {s} seconds because you have not used the service for a while.",
          stay: "Stay signed in", out: "Sign out",
          reauthHeading: "Confirm it is you", reauthBody: "This action needs the code of your authenticator app.",
          code: "Verification code", confirm: "Confirm", cancel: "Cancel", wrong: "That code is not valid. Please try again.",
          wait: "Too many attempts. Please wait a moment." }
  };
  var T = TEXTS[LANG] || TEXTS.fi;
  var WARN_SECS = 60;
  var TOUCH_EVERY_MS = 30000;
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var CSRF = csrfMeta ? csrfMeta.content : "";

  var idleEndsAt = null;   // Date.now() of the idle deadline, as the server last said
  var lastTouch = 0;
  var pendingActivity = false;
  var dialog = null;
  var countdown = null;
  var returnFocus = null;

  function request(method, path, body) {
    var options = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      options.headers["X-CSRF-Token"] = CSRF;
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body || {});
    }
    return fetch(path, options).then(function (response) {
      if (response.status === 401 && path.indexOf("/session/reauth") !== 0) { signedOut(); throw new Error("signed out"); }
      return response.json().then(function (data) { return { status: response.status, data: data }; });
    });
  }

  function signedOut() {
    window.location.assign("/login?expired=1&next=" + encodeURIComponent(window.location.pathname + window.location.hash));
  }

  function learn(data) {
    idleEndsAt = Date.now() + data.idle_secs_left * 1000;
    if (dialog && !dialog.hidden && data.idle_secs_left > WARN_SECS) hideWarning();
  }

  function status() { return request("GET", "/session").then(function (r) { learn(r.data); }); }

  function touch() {
    lastTouch = Date.now();
    pendingActivity = false;
    return request("POST", "/session/touch").then(function (r) { learn(r.data); });
  }

  function activity() {
    if (dialog && !dialog.hidden) return;  // only the dialog's own button keeps the session then
    if (Date.now() - lastTouch > TOUCH_EVERY_MS) touch().catch(function () {});
    else pendingActivity = true;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text) node.textContent = text;
    return node;
  }

  function buildWarning() {
    dialog = el("div", { class: "idle-dialog", id: "idle-dialog", hidden: "" });
    var box = el("div", { class: "idle-dialog__box", role: "alertdialog", "aria-modal": "true",
                          "aria-labelledby": "idle-heading", "aria-describedby": "idle-body" });
    box.appendChild(el("h2", { id: "idle-heading" }, T.heading));
    countdown = el("p", { id: "idle-body" });
    box.appendChild(countdown);
    var stay = el("button", { type: "button", class: "button button--primary", id: "idle-stay" }, T.stay);
    stay.addEventListener("click", function () { touch().then(hideWarning).catch(function () {}); });
    var out = el("button", { type: "button", class: "button", id: "idle-out" }, T.out);
    out.addEventListener("click", function () {
      var form = el("form", { method: "post", action: "/logout" });
      var input = el("input", { type: "hidden", name: "csrf_token", value: CSRF });
      form.appendChild(input);
      document.body.appendChild(form);
      form.submit();
    });
    box.appendChild(stay);
    box.appendChild(out);
    dialog.appendChild(box);
    dialog.addEventListener("keydown", function (event) {  // keep the focus inside the dialog
      if (event.key !== "Tab") return;
      var first = stay, last = out;
      if (event.shiftKey && document.activeElement === first) { event.preventDefault(); last.focus(); }
      else if (!event.shiftKey && document.activeElement === last) { event.preventDefault(); first.focus(); }
    });
    document.body.appendChild(dialog);
  }

  function showWarning(secsLeft) {
    if (!dialog) buildWarning();
    countdown.textContent = T.body.replace("{s}", String(Math.max(0, Math.ceil(secsLeft))));
    if (dialog.hidden) {
      returnFocus = document.activeElement;
      dialog.hidden = false;
      document.getElementById("idle-stay").focus();
    }
  }

  function hideWarning() {
    if (!dialog || dialog.hidden) return;
    dialog.hidden = true;
    if (returnFocus && returnFocus.focus) returnFocus.focus();
  }

  function tick() {
    if (idleEndsAt === null) return;
    var left = (idleEndsAt - Date.now()) / 1000;
    if (pendingActivity && Date.now() - lastTouch > TOUCH_EVERY_MS && left > WARN_SECS) {
      touch().catch(function () {});
      return;
    }
    if (left <= 0) {
      status().then(function () {
        if (idleEndsAt - Date.now() <= 0) signedOut();
      }).catch(function () {});
      idleEndsAt = null;  // until the server has answered
      return;
    }
    if (left <= WARN_SECS) {
      // Another tab may have kept the session alive: ask once when the warning would open.
      if (!dialog || dialog.hidden) {
        status().then(function () {
          var now = (idleEndsAt - Date.now()) / 1000;
          if (now <= WARN_SECS) showWarning(now);
        }).catch(function () {});
        return;
      }
      countdown.textContent = T.body.replace("{s}", String(Math.ceil(left)));
    }
  }

  // --- re-authentication ------------------------------------------------------------

  function reauthenticate() {
    // A single sign-on account has no code here: its provider asks again (prompt=login).
    return request("GET", "/session").then(function (r) {
      if (r.data.can_reauthenticate) return askForCode();
      window.location.assign("/login/sso?reauth=1&next=" +
        encodeURIComponent(window.location.pathname + window.location.hash));
      return false;
    });
  }

  function askForCode() {
    return new Promise(function (resolve) {
      var back = document.activeElement;
      var overlay = el("div", { class: "idle-dialog", id: "reauth-dialog" });
      var box = el("form", { class: "idle-dialog__box", role: "dialog", "aria-modal": "true",
                             "aria-labelledby": "reauth-heading", "aria-describedby": "reauth-body", novalidate: "" });
      box.appendChild(el("h2", { id: "reauth-heading" }, T.reauthHeading));
      box.appendChild(el("p", { id: "reauth-body" }, T.reauthBody));
      var field = el("div", { class: "field" });
      field.appendChild(el("label", { for: "reauth-code" }, T.code));
      var input = el("input", { id: "reauth-code", name: "code", type: "text", inputmode: "numeric",
                                autocomplete: "one-time-code", required: "" });
      field.appendChild(input);
      var error = el("p", { class: "field__error", id: "reauth-error", role: "alert" });
      field.appendChild(error);
      box.appendChild(field);
      var ok = el("button", { type: "submit", class: "button button--primary", id: "reauth-confirm" }, T.confirm);
      var cancel = el("button", { type: "button", class: "button", id: "reauth-cancel" }, T.cancel);
      box.appendChild(ok);
      box.appendChild(cancel);
      overlay.appendChild(box);
      document.body.appendChild(overlay);
      input.focus();
      function done(result) {
        overlay.remove();
        if (back && back.focus) back.focus();
        resolve(result);
      }
      cancel.addEventListener("click", function () { done(false); });
      overlay.addEventListener("keydown", function (event) { if (event.key === "Escape") done(false); });
      box.addEventListener("submit", function (event) {
        event.preventDefault();
        request("POST", "/session/reauth", { code: input.value }).then(function (r) {
          if (r.status === 200) { learn(r.data); done(true); return; }
          error.textContent = r.status === 429 ? T.wait : T.wrong;
          input.setAttribute("aria-invalid", "true");
          input.setAttribute("aria-describedby", "reauth-error");
          input.select();
        }).catch(function () { done(false); });
      });
    });
  }

  window.polkuSession = { reauthenticate: reauthenticate, touch: touch };

  ["click", "keydown", "touchstart"].forEach(function (name) {
    document.addEventListener(name, activity, { passive: true, capture: true });
  });
  status().catch(function () {});
  window.setInterval(tick, 1000);
}());
