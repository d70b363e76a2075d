// Polku chat: the counsellor console. Vanilla JS, no build step.
// Talks to the "/counsellor" Socket.IO namespace; every request is answered
// through the acknowledgement ({ok: true, ...} or {ok: false, error}).
// Texts come from the page (one list per language, rendered by the server).
(function () {
  "use strict";

  var T = JSON.parse(document.getElementById("console-texts").textContent);
  var REQUEST_TIMEOUT_MS = 10000;
  var TYPING_REPEAT_MS = 3000;
  var TYPING_IDLE_MS = 4000;
  var WAIT_REFRESH_MS = 30000;

  function $(id) { return document.getElementById(id); }

  var state = {
    me: null,
    queue: [],
    mine: [],
    callbacks: [],
    snippets: {},
    tags: [],
    chats: {},      // id -> {summary, messages: [], ids: {}, notes: [], loaded, complete, unread, typing}
    picking: {},    // ids this tab is picking up right now
    active: null,
    seenQueue: null,
  };

  // --- small helpers ---------------------------------------------------------------

  function fmt(key, params) {
    var text = T[key] || key;
    Object.keys(params || {}).forEach(function (name) {
      text = text.split("{" + name + "}").join(String(params[name]));
    });
    return text;
  }

  function tagLabel(tag) {
    for (var i = 0; i < state.tags.length; i++) {
      if (state.tags[i].tag === tag) return state.tags[i].labels[document.documentElement.lang] || tag;
    }
    return tag;
  }

  function topicLabel(topic) { return topic ? tagLabel(topic) : T.no_topic; }
  function languageName(code) { return T["lang_" + code] || code; }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function minutesSince(iso) {
    if (!iso) return 0;
    return Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 60000));
  }

  function clock(iso) {
    var d = new Date(iso);
    return d.toLocaleTimeString(document.documentElement.lang, { hour: "2-digit", minute: "2-digit" });
  }

  function announce(text, urgent) {
    var region = $(urgent ? "announce-urgent" : "announce-polite");
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 60);
  }

  function errorText(code) {
    return T["error_" + code] || fmt("error_generic", { code: code });
  }

  function uuid() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function isMine(summary) {
    return !!summary && summary.state === "counsellor" && state.me && summary.counsellor_id === state.me.id;
  }

  // --- the socket ------------------------------------------------------------------

  var socket = io("/counsellor", { transports: ["websocket", "polling"], withCredentials: true });

  function request(event, payload) {
    return new Promise(function (resolve) {
      socket.timeout(REQUEST_TIMEOUT_MS).emit(event, payload || {}, function (err, response) {
        resolve(err || !response ? { ok: false, error: "server_busy" } : response);
      });
    });
  }

  function setStatus(kind) {
    var status = $("connection-status");
    status.dataset.state = kind;
    status.textContent = kind === "connected" ? (T.connected) : T.disconnected;
  }

  socket.on("connect", function () {
    setStatus("connected");
    hello();
  });
  socket.on("disconnect", function () { setStatus("disconnected"); });
  socket.on("connect_error", function (err) {
    if (err && (err.message === "not_signed_in" || err.message === "forbidden_origin")) {
      window.location.assign("/login?next=" + encodeURIComponent("/console"));
      return;
    }
    setStatus("disconnected");
  });
  socket.on("signed_out", function () {
    window.location.assign("/login?signed_out=1");
  });

  function hello() {
    request("hello").then(function (r) {
      if (!r.ok) return;
      state.me = r.staff;
      state.snippets = r.snippets || {};
      state.tags = r.tags || [];
      state.mine = r.mine || [];
      state.callbacks = r.callbacks || [];
      setQueue(r.queue.conversations, state.seenQueue === null);
      state.mine.forEach(function (s) { chat(s.conversation_id).summary = s; });
      renderMine();
      renderCallbacks();
      renderTagOptions();
      // After a reconnect: open chats get their transcripts (and live lines) again.
      Object.keys(state.chats).forEach(function (id) {
        var c = state.chats[id];
        if (c.loaded && (Number(id) === state.active || isMine(c.summary))) {
          c.loaded = false;
          load(Number(id), false);
        }
      });
    });
  }

  function chat(id) {
    if (!state.chats[id]) {
      state.chats[id] = { summary: null, messages: [], ids: {}, notes: [], loaded: false, complete: true, unread: 0, typing: false };
    }
    return state.chats[id];
  }

  // --- queue ----------------------------------------------------------------------

  function setQueue(conversations, initial) {
    var seen = state.seenQueue || {};
    var next = {};
    conversations.forEach(function (s) {
      next[s.conversation_id] = true;
      chat(s.conversation_id).summary = s;
      if (!initial && !seen[s.conversation_id]) {
        var params = { topic: topicLabel(s.topic), language: languageName(s.language) };
        if (s.crisis) announce(fmt("new_crisis", params), true);
        else announce(fmt("new_in_queue", params), false);
      }
    });
    state.seenQueue = next;
    state.queue = conversations;
    renderQueue();
    if (state.active !== null) renderChatHeader();
  }

  socket.on("queue", function (payload) { setQueue(payload.conversations, false); });

  function waitingText(summary) {
    var minutes = minutesSince(summary.queued_at);
    return minutes < 1 ? T.waiting_new : fmt("waiting", { minutes: minutes });
  }

  function chatItem(summary, kind) {
    var id = summary.conversation_id;
    var li = el("li", "chat-item" + (summary.crisis ? " chat-item--crisis" : ""));
    li.dataset.conversationId = id;
    if (state.active === id) li.setAttribute("aria-current", "true");
    var open = el("button", "chat-item__open");
    open.type = "button";
    var title = el("span", "chat-item__title");
    title.appendChild(el("span", null, fmt("chat", { id: id })));
    if (summary.crisis) title.appendChild(el("span", "badge badge--crisis", T.crisis));
    var c = state.chats[id];
    if (kind === "mine" && c && c.unread) {
      title.appendChild(el("span", "badge badge--unread", String(c.unread)));
    }
    open.appendChild(title);
    var meta = [topicLabel(summary.topic), languageName(summary.language)];
    if (kind === "queue") meta.push(waitingText(summary));
    open.appendChild(el("span", "chat-item__meta", meta.join(" · ")));
    open.addEventListener("click", function () { activate(id, true); });
    li.appendChild(open);
    if (kind === "queue") {
      var actions = el("div", "chat-item__actions");
      var take = el("button", "button button--primary button--small", T.pick_up);
      take.type = "button";
      take.setAttribute("aria-label", T.pick_up + ": " + fmt("chat", { id: id }) + (summary.crisis ? ", " + T.crisis : ""));
      take.addEventListener("click", function () { pickUp(id); });
      actions.appendChild(take);
      li.appendChild(actions);
    }
    return li;
  }

  function renderQueue() {
    var list = $("queue-list");
    list.replaceChildren.apply(list, state.queue.map(function (s) { return chatItem(s, "queue"); }));
    $("queue-empty").hidden = state.queue.length > 0;
    $("queue-count").textContent = state.queue.length ? "(" + state.queue.length + ")" : "";
    document.title = (state.queue.length ? "(" + state.queue.length + ") " : "") + document.title.replace(/^\(\d+\) /, "");
  }

  function renderMine() {
    var list = $("mine-list");
    list.replaceChildren.apply(list, state.mine.map(function (s) { return chatItem(s, "mine"); }));
    $("mine-empty").hidden = state.mine.length > 0;
    $("mine-count").textContent = state.mine.length ? "(" + state.mine.length + ")" : "";
  }

  window.setInterval(renderQueue, WAIT_REFRESH_MS);

  // --- who has which chat --------------------------------------------------------------

  socket.on("conversation_state", function (summary) {
    var id = summary.conversation_id;
    var c = chat(id);
    var wasMine = isMine(c.summary);
    c.summary = summary;
    state.mine = state.mine.filter(function (s) { return s.conversation_id !== id; });
    if (isMine(summary)) {
      state.mine.push(summary);
      state.mine.sort(function (a, b) { return a.conversation_id - b.conversation_id; });
    } else if (wasMine && summary.state === "queued") {
      announce(fmt("requeued", { id: id }), false);
    }
    if (summary.state !== "queued" && !isMine(summary) && state.active === id && summary.state === "counsellor") {
      announce(fmt("taken_by_other", { id: id }), false);
    }
    if (!isMine(summary) && summary.state !== "queued") c.loaded = false;  // no more live lines for us
    // Picked up in another tab of ours: this tab's view of it starts over (and gets its lines again).
    if (isMine(summary) && !wasMine && c.loaded && !state.picking[id]) load(id, false);
    renderMine();
    if (state.active === id) renderChatHeader();
  });

  // --- the open chat ------------------------------------------------------------------

  function activate(id, focus) {
    var previous = state.active;
    state.active = id;
    if (previous !== null && previous !== id && !isMine(chat(previous).summary)) {
      request("close_view", { conversation_id: previous });
      chat(previous).loaded = false;
    }
    var c = chat(id);
    c.unread = 0;
    $("chat-empty").hidden = true;
    $("chat").hidden = false;
    renderQueue();
    renderMine();
    renderChatHeader();
    renderTranscript();
    renderNotes();
    renderSnippets();
    if (!c.loaded) load(id, focus);
    else if (focus) focusChat();
  }

  function focusChat() {
    var c = chat(state.active);
    if (isMine(c.summary)) $("message").focus();
    else $("chat-heading").focus();
  }

  function load(id, focus) {
    return request("open", { conversation_id: id }).then(function (r) {
      if (!r.ok) {
        showNotice(errorText(r.error));
        return;
      }
      applyTranscript(id, r);
      if (focus && state.active === id) focusChat();
    });
  }

  function applyTranscript(id, r) {
    var c = chat(id);
    c.summary = r.conversation;
    c.messages = [];
    c.ids = {};
    r.messages.forEach(function (m) { addMessage(c, m); });
    c.notes = r.notes || [];
    c.loaded = true;
    c.complete = r.complete;
    if (state.active === id) {
      renderChatHeader();
      renderTranscript();
      renderNotes();
      renderSnippets();
    }
  }

  function addMessage(c, m) {
    if (c.ids[m.message_id]) return false;
    c.ids[m.message_id] = true;
    c.messages.push(m);
    return true;
  }

  function showNotice(text) { $("chat-notice").textContent = text; }

  function renderChatHeader() {
    if (state.active === null) return;
    var id = state.active;
    var c = chat(id);
    var s = c.summary || { conversation_id: id, state: "queued" };
    var heading = $("chat-heading");
    heading.replaceChildren(el("span", null, fmt("chat", { id: id })));
    if (s.crisis) heading.appendChild(el("span", "badge badge--crisis", T.crisis_long));
    var stateText = s.state === "counsellor"
      ? (isMine(s) ? T.state_counsellor : T.state_counsellor_other)
      : T["state_" + s.state] || s.state;
    $("chat-meta").textContent = [topicLabel(s.topic), languageName(s.language), stateText].join(" · ");
    var mine = isMine(s);
    $("pick-up").hidden = s.state !== "queued";
    $("put-back").hidden = !mine;
    $("close-chat").hidden = !mine;
    $("composer").hidden = !mine;
    $("note-form").hidden = !(mine || s.state === "queued");
    var notice = "";
    if (!mine) {
      if (s.state === "queued") notice = T.read_only_queued;
      else if (s.state === "counsellor") notice = T.read_only_other;
      else notice = T.read_only_closed;
      if (!c.complete) notice += " " + T.partial;
    }
    showNotice(notice);
    $("typing").textContent = mine && c.typing ? T.resident_typing : "";
  }

  function senderLabel(m) {
    if (m.sender === "counsellor") {
      return m.counsellor_name ? T.sender_counsellor + " " + m.counsellor_name : T.sender_counsellor;
    }
    return T["sender_" + m.sender] || m.sender;
  }

  function messageNode(m) {
    var node = el("div", "msg msg--" + m.sender);
    if (m.language) node.lang = m.language;
    var sender = el("p", "msg__sender", senderLabel(m));
    var time = el("time", null, clock(m.time));
    time.dateTime = m.time;
    sender.appendChild(time);
    node.appendChild(sender);
    node.appendChild(el("p", "msg__text", m.text));
    return node;
  }

  function renderTranscript() {
    var log = $("transcript");
    var c = chat(state.active);
    log.replaceChildren.apply(log, c.messages.map(messageNode));
    log.scrollTop = log.scrollHeight;
  }

  function appendToTranscript(m) {
    var log = $("transcript");
    var nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    log.appendChild(messageNode(m));
    if (nearBottom || m.sender === "counsellor") log.scrollTop = log.scrollHeight;
  }

  socket.on("message", function (payload) {
    var id = payload.conversation_id;
    var c = chat(id);
    if (!c.loaded) return;
    if (!addMessage(c, payload.message)) return;
    if (payload.message.sender === "resident") c.typing = false;
    if (state.active === id) {
      appendToTranscript(payload.message);
      renderChatHeader();
    } else if (payload.message.sender === "resident") {
      c.unread += 1;
      renderMine();
      announce(fmt("new_message", { id: id }), false);
    }
  });

  socket.on("resident_typing", function (payload) {
    var c = chat(payload.conversation_id);
    c.typing = !!payload.typing;
    if (state.active === payload.conversation_id) renderChatHeader();
  });

  // --- taking, putting back, closing ------------------------------------------------------

  function pickUp(id) {
    state.picking[id] = true;
    request("pick_up", { conversation_id: id }).then(function (r) {
      delete state.picking[id];
      if (!r.ok) {
        announce(errorText(r.error), false);
        if (state.active === id) showNotice(errorText(r.error));
        return;
      }
      var summary = r.conversation;
      state.mine = state.mine.filter(function (s) { return s.conversation_id !== id; }).concat([summary]);
      applyTranscript(id, r);
      announce(fmt("picked_up", { id: id }), false);
      activate(id, true);
    });
  }

  $("pick-up").addEventListener("click", function () { if (state.active !== null) pickUp(state.active); });

  $("put-back").addEventListener("click", function () {
    var id = state.active;
    request("put_back", { conversation_id: id }).then(function (r) {
      if (!r.ok) { showNotice(errorText(r.error)); return; }
      announce(fmt("put_back_done", { id: id }), false);
    });
  });

  var dialog = $("close-dialog");

  function renderTagOptions() {
    var box = $("tag-options");
    box.replaceChildren.apply(box, state.tags.map(function (t) {
      var label = el("label", "tag-option");
      var input = document.createElement("input");
      input.type = "checkbox";
      input.name = "tag";
      input.value = t.tag;
      label.appendChild(input);
      label.appendChild(el("span", null, tagLabel(t.tag)));
      return label;
    }));
  }

  $("tag-options").addEventListener("change", function () {
    var other = dialog.querySelector('input[value="other"]');
    $("other-field").hidden = !(other && other.checked);
  });

  $("close-chat").addEventListener("click", function () {
    dialog.querySelectorAll('input[name="tag"]').forEach(function (box) {
      var c = chat(state.active);
      box.checked = !!(c.summary && c.summary.topic === box.value);
    });
    $("other-label").value = "";
    $("other-field").hidden = true;
    $("close-error").textContent = "";
    dialog.showModal();
    var first = dialog.querySelector('input[name="tag"]:checked') || dialog.querySelector('input[name="tag"]');
    if (first) first.focus();
  });

  $("close-cancel").addEventListener("click", function () {
    dialog.close();
    $("close-chat").focus();
  });
  dialog.addEventListener("cancel", function () {
    window.setTimeout(function () { $("close-chat").focus(); }, 0);
  });

  $("close-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var id = state.active;
    var tags = Array.prototype.map.call(dialog.querySelectorAll('input[name="tag"]:checked'), function (b) { return b.value; });
    if (!tags.length) {
      $("close-error").textContent = T.error_tags_required;
      var first = dialog.querySelector('input[name="tag"]');
      if (first) first.focus();
      return;
    }
    var payload = { conversation_id: id, tags: tags };
    if (tags.indexOf("other") >= 0 && $("other-label").value.trim()) payload.other_label = $("other-label").value.trim();
    request("close", payload).then(function (r) {
      if (!r.ok) { $("close-error").textContent = errorText(r.error); return; }
      dialog.close();
      announce(fmt("closed_done", { id: id }), false);
      showNotice(T.read_only_closed);
      $("chat-heading").focus();
    });
  });

  // --- writing ----------------------------------------------------------------------

  var typingSentAt = 0;
  var typingTimer = null;

  function sendTyping(typing) {
    if (state.active === null) return;
    request("typing", { conversation_id: state.active, typing: typing });
    typingSentAt = typing ? Date.now() : 0;
  }

  $("message").addEventListener("input", function () {
    if (!$("message").value.trim()) return;
    if (Date.now() - typingSentAt > TYPING_REPEAT_MS) sendTyping(true);
    window.clearTimeout(typingTimer);
    typingTimer = window.setTimeout(function () { sendTyping(false); }, TYPING_IDLE_MS);
  });

  $("message").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });

  $("composer").addEventListener("submit", function (event) {
    event.preventDefault();
    var box = $("message");
    var text = box.value.trim();
    var id = state.active;
    if (!text || id === null) return;
    window.clearTimeout(typingTimer);
    if (typingSentAt) sendTyping(false);
    box.value = "";
    request("send", { conversation_id: id, text: text, client_id: uuid() }).then(function (r) {
      if (!r.ok) {
        box.value = text + (box.value ? "\n" + box.value : "");
        showNotice(errorText(r.error));
        return;
      }
      var c = chat(id);
      if (addMessage(c, r.message) && state.active === id) appendToTranscript(r.message);
    });
  });

  function renderSnippets() {
    var select = $("snippet");
    var c = chat(state.active);
    var language = (c.summary && c.summary.language) || document.documentElement.lang;
    var items = state.snippets[language] || [];
    var first = select.options[0];
    select.replaceChildren(first);
    items.forEach(function (s, i) {
      var option = el("option", null, s.title);
      option.value = String(i);
      select.appendChild(option);
    });
  }

  $("snippet-insert").addEventListener("click", function () {
    var select = $("snippet");
    var c = chat(state.active);
    var language = (c.summary && c.summary.language) || document.documentElement.lang;
    var item = (state.snippets[language] || [])[Number(select.value)];
    if (!select.value || !item) { select.focus(); return; }
    var text = item.text.split("{counsellor_name}").join(state.me ? state.me.display_name : "");
    var box = $("message");
    var start = box.selectionStart || box.value.length;
    box.value = box.value.slice(0, start) + text + box.value.slice(box.selectionEnd || start);
    select.value = "";
    box.focus();
    box.selectionStart = box.selectionEnd = start + text.length;
  });

  // --- notes --------------------------------------------------------------------------

  function noteNode(n) {
    var li = el("li");
    var meta = el("p", "note__meta", (n.author || "") + " ");
    var time = el("time", null, clock(n.time));
    time.dateTime = n.time;
    meta.appendChild(time);
    li.appendChild(meta);
    li.appendChild(el("p", "note__text", n.text));
    return li;
  }

  function renderNotes() {
    var c = chat(state.active);
    var list = $("notes");
    list.replaceChildren.apply(list, c.notes.map(noteNode));
    $("notes-empty").hidden = c.notes.length > 0;
  }

  socket.on("note", function (payload) {
    var c = chat(payload.conversation_id);
    if (!c.loaded) return;
    if (c.notes.some(function (n) { return n.note_id === payload.note.note_id; })) return;
    c.notes.push(payload.note);
    if (state.active === payload.conversation_id) renderNotes();
  });

  $("note-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var box = $("note");
    var text = box.value.trim();
    var id = state.active;
    if (!text) return;
    request("note", { conversation_id: id, text: text }).then(function (r) {
      if (!r.ok) { showNotice(errorText(r.error)); return; }
      box.value = "";
      var c = chat(id);
      if (!c.notes.some(function (n) { return n.note_id === r.note.note_id; })) c.notes.push(r.note);
      if (state.active === id) renderNotes();
    });
  });

  // --- call-back requests ------------------------------------------------------------------

  function renderCallbacks() {
    var list = $("callback-list");
    list.replaceChildren.apply(list, state.callbacks.map(function (cb) {
      var li = el("li", "callback-item");
      var dl = el("dl");
      function row(label, value, href) {
        if (!value) return;
        dl.appendChild(el("dt", null, label));
        var dd = el("dd");
        if (href) {
          var a = el("a", null, value);
          a.href = href;
          dd.appendChild(a);
        } else {
          dd.textContent = value;
        }
        dl.appendChild(dd);
      }
      row(T.callback_phone, cb.phone, "tel:" + (cb.phone || "").replace(/[^0-9+]/g, ""));
      row(T.callback_name, cb.name);
      row(T.callback_time, cb.preferred_time);
      row(T.callback_topic, cb.topic ? topicLabel(cb.topic) : null);
      row(T.language, languageName(cb.language));
      li.appendChild(dl);
      var done = el("button", "button button--small", T.callback_done);
      done.type = "button";
      done.setAttribute("aria-label", T.callback_done + ": " + (cb.name || cb.phone));
      done.addEventListener("click", function () {
        request("callback_done", { callback_id: cb.callback_id }).then(function (r) {
          announce(r.ok ? T.callback_done_ok : errorText(r.error), false);
        });
      });
      li.appendChild(done);
      return li;
    }));
    $("callbacks-empty").hidden = state.callbacks.length > 0;
    $("callbacks-count").textContent = state.callbacks.length ? "(" + state.callbacks.length + ")" : "";
  }

  socket.on("callbacks", function (payload) {
    state.callbacks = payload.callbacks;
    renderCallbacks();
  });
}());
