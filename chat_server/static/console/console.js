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

  // Live-region announcements. Several in quick succession are read out together
  // (setting the region again within the delay would drop the earlier ones).
  var pendingAnnouncements = { polite: null, urgent: null };

  function announce(text, urgent) {
    var kind = urgent ? "urgent" : "polite";
    if (pendingAnnouncements[kind]) {
      pendingAnnouncements[kind].push(text);
      return;
    }
    var region = $("announce-" + kind);
    pendingAnnouncements[kind] = [text];
    region.textContent = "";
    window.setTimeout(function () {
      region.textContent = pendingAnnouncements[kind].join(" ");
      pendingAnnouncements[kind] = null;
    }, 60);
  }

  // Text and attributes are written only when they change: rewriting the same
  // text re-announces live regions and moves a screen reader's reading place.
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function setAttr(node, name, value) {
    if (value === null || value === undefined) {
      if (node.hasAttribute(name)) node.removeAttribute(name);
    } else if (node.getAttribute(name) !== value) {
      node.setAttribute(name, value);
    }
  }

  // --- lists updated in place ------------------------------------------------------------
  // The sidebar lists, the transcript, the notes and the tag boxes are kept in
  // step with the state by key (conversation id, message id, ...): rows that
  // stay are the same DOM nodes, only changed text is written, new rows are
  // inserted and gone ones removed. Keyboard focus inside a list therefore
  // stays where it is; when its row itself goes away, focus goes to the same
  // control of the row now in its place (or the list's heading), never to <body>.

  function rowByKey(list, key) {
    for (var i = 0; i < list.children.length; i++) {
      if (list.children[i].dataset.key === key) return list.children[i];
    }
    return null;
  }

  function rowOf(list, node) {
    while (node && node.parentNode !== list) node = node.parentNode;
    return node;
  }

  function controlIn(row, role) {
    if (!row) return null;
    if (role) {
      var same = row.querySelector('[data-control="' + role + '"]');
      if (same) return same;
    }
    return row.querySelector("[data-control]");
  }

  function place(list, node, before) {
    if (node.parentNode === list && typeof list.moveBefore === "function") {
      try {
        list.moveBefore(node, before);  // keeps focus (and a screen reader's place) on the moved row
        return;
      } catch (e) { /* not movable atomically: insert it instead */ }
    }
    list.insertBefore(node, before);
  }

  // syncList(list, items, {key, create, update, keepLost, fallback})
  function syncList(list, items, how) {
    var focused = document.activeElement;
    var from = focused && focused !== list && list.contains(focused) ? focused : null;
    var fromRow = from ? rowOf(list, from) : null;
    var fromKey = fromRow ? fromRow.dataset.key : null;
    var fromRole = from && from.closest("[data-control]") ? from.closest("[data-control]").dataset.control : null;
    var fromIndex = fromRow ? Array.prototype.indexOf.call(list.children, fromRow) : -1;

    var old = {};
    Array.prototype.forEach.call(list.children, function (node) {
      if (node.dataset.key !== undefined) old[node.dataset.key] = node;
    });
    var rows = items.map(function (item) {
      var key = String(how.key(item));
      var node = Object.prototype.hasOwnProperty.call(old, key) ? old[key] : null;
      if (node) {
        delete old[key];
      } else {
        node = how.create(item);
        node.dataset.key = key;
      }
      if (how.update) how.update(node, item);
      return node;
    });
    Object.keys(old).forEach(function (key) { list.removeChild(old[key]); });
    rows.forEach(function (node, i) {
      var at = list.children[i] || null;
      if (at !== node) place(list, node, at);
    });
    while (list.children.length > rows.length) list.removeChild(list.lastElementChild);

    if (!from) return;
    var now = document.activeElement;
    if (now === from) return;
    if (now && now !== document.body) return;  // moved elsewhere on purpose: leave it
    if (from.isConnected && list.contains(from)) {
      from.focus({ preventScroll: true });
      return;
    }
    if (how.keepLost && how.keepLost(fromKey)) return;
    var target = controlIn(fromKey !== null ? rowByKey(list, fromKey) : null, fromRole);
    if (!target && list.children.length) {
      target = controlIn(list.children[Math.min(Math.max(fromIndex, 0), list.children.length - 1)], fromRole);
    }
    if (!target && how.fallback) target = how.fallback();
    if (target) target.focus();
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
      setQueue(r.queue.conversations, state.seenQueue === null, r.queue.total);
      state.mine.forEach(function (s) { chat(s.conversation_id).summary = s; });
      renderMine();
      renderCallbacks();
      renderClosures(r.closures || []);
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

  // The coming days when the chat, phone or walk-in is closed or keeps other hours.
  function renderClosures(closures) {
    var list = document.getElementById("closure-list");
    list.textContent = "";
    document.getElementById("closures-empty").hidden = closures.length > 0;
    closures.forEach(function (c) {
      var item = document.createElement("li");
      var when = document.createElement("time");
      when.setAttribute("datetime", c.date);
      when.textContent = c.date;
      var spans = Object.keys(c.channels).map(function (ch) {
        return (T["channel_" + ch] || ch) + " " + (c.channels[ch] || T.closed_word);
      }).join(", ");
      item.append(when, document.createTextNode(" " + (c.reason || "") + ": " + spans));
      list.appendChild(item);
    });
  }

  function chat(id) {
    if (!state.chats[id]) {
      state.chats[id] = { summary: null, messages: [], ids: {}, notes: [], loaded: false, complete: true, unread: 0, typing: false };
    }
    return state.chats[id];
  }

  // --- queue ----------------------------------------------------------------------

  // The server lists the front of the queue (crisis chats first); `total` counts every chat
  // waiting. A chat that moves up into the list is not new: only one that joined is announced.
  function setQueue(conversations, initial, total) {
    var seen = state.seenQueue || {};
    var next = {};
    var whole = total == null || total <= conversations.length;
    // A chat this counsellor holds (or is picking up) is not waiting any more, whatever a
    // queue snapshot taken a moment before says (the next one will agree).
    conversations = conversations.filter(function (s) {
      return !isMine(chat(s.conversation_id).summary) && !state.picking[s.conversation_id];
    });
    conversations.forEach(function (s) {
      next[s.conversation_id] = true;
      chat(s.conversation_id).summary = s;
      if (!initial && !seen[s.conversation_id] && (whole || s.crisis)) {
        var params = { topic: topicLabel(s.topic), language: languageName(s.language) };
        if (s.crisis) announce(fmt("new_crisis", params), true);
        else announce(fmt("new_in_queue", params), false);
      }
    });
    state.seenQueue = next;
    state.queue = conversations;
    state.queueTotal = total == null ? conversations.length : Math.max(total, conversations.length);
    renderQueue();
    if (state.active !== null) renderChatHeader();
  }

  socket.on("queue", function (payload) { setQueue(payload.conversations, false, payload.total); });

  function waitingText(summary) {
    var minutes = minutesSince(summary.queued_at);
    return minutes < 1 ? T.waiting_new : fmt("waiting", { minutes: minutes });
  }

  function waitingLabel(summary) { return " · " + waitingText(summary); }

  function createChatItem(summary, kind) {
    var id = summary.conversation_id;
    var li = el("li", "chat-item");
    li.dataset.conversationId = id;
    var open = el("button", "chat-item__open");
    open.type = "button";
    open.dataset.control = "open";
    var title = el("span", "chat-item__title");
    title.appendChild(el("span", "chat-item__name", fmt("chat", { id: id })));
    open.appendChild(title);
    var meta = el("span", "chat-item__meta");
    meta.appendChild(el("span", "chat-item__about"));
    if (kind === "queue") meta.appendChild(el("span", "chat-item__waiting"));
    open.appendChild(meta);
    open.addEventListener("click", function () { activate(id, true); });
    li.appendChild(open);
    if (kind === "queue") {
      var actions = el("div", "chat-item__actions");
      var take = el("button", "button button--primary button--small", T.pick_up);
      take.type = "button";
      take.dataset.control = "pick-up";
      take.addEventListener("click", function () { pickUp(id); });
      actions.appendChild(take);
      li.appendChild(actions);
    }
    return li;
  }

  function setBadge(title, kind, text) {
    var badge = title.querySelector(".badge--" + kind);
    if (text === null) {
      if (badge) badge.remove();
      return;
    }
    if (!badge) {
      badge = el("span", "badge badge--" + kind);
      // The crisis badge comes before the unread count.
      title.insertBefore(badge, kind === "crisis" ? title.querySelector(".badge--unread") : null);
    }
    setText(badge, text);
  }

  function updateChatItem(li, summary, kind) {
    var id = summary.conversation_id;
    li.classList.toggle("chat-item--crisis", !!summary.crisis);
    setAttr(li, "aria-current", state.active === id ? "true" : null);
    var title = li.querySelector(".chat-item__title");
    setBadge(title, "crisis", summary.crisis ? T.crisis : null);
    var c = state.chats[id];
    setBadge(title, "unread", kind === "mine" && c && c.unread ? String(c.unread) : null);
    setText(li.querySelector(".chat-item__about"), topicLabel(summary.topic) + " · " + languageName(summary.language));
    if (kind === "queue") {
      setText(li.querySelector(".chat-item__waiting"), waitingLabel(summary));
      setAttr(li.querySelector('[data-control="pick-up"]'), "aria-label",
              T.pick_up + ": " + fmt("chat", { id: id }) + (summary.crisis ? ", " + T.crisis : ""));
    }
  }

  function chatListHow(kind, heading) {
    return {
      key: function (s) { return s.conversation_id; },
      create: function (s) { return createChatItem(s, kind); },
      update: function (li, s) { updateChatItem(li, s, kind); },
      // The row of a chat this tab is picking up goes: the pick-up moves focus on.
      keepLost: function (key) { return !!state.picking[key]; },
      fallback: function () { return $(heading); },
    };
  }

  function renderQueue() {
    syncList($("queue-list"), state.queue, chatListHow("queue", "queue-heading"));
    var total = Math.max(state.queueTotal || 0, state.queue.length);
    $("queue-empty").hidden = total > 0;
    var more = total - state.queue.length;
    $("queue-more").hidden = more <= 0;
    setText($("queue-more"), more > 0 ? fmt("queue_more", { count: more }) : "");
    setText($("queue-count"), total ? "(" + total + ")" : "");
    var title = (total ? "(" + total + ") " : "") + document.title.replace(/^\(\d+\) /, "");
    if (document.title !== title) document.title = title;
  }

  function renderMine() {
    syncList($("mine-list"), state.mine, chatListHow("mine", "mine-heading"));
    $("mine-empty").hidden = state.mine.length > 0;
    setText($("mine-count"), state.mine.length ? "(" + state.mine.length + ")" : "");
  }

  // The waiting times tick on by rewriting their own text only (and only when the minute changes).
  function tickWaiting() {
    var list = $("queue-list");
    state.queue.forEach(function (s) {
      var row = rowByKey(list, String(s.conversation_id));
      if (row) setText(row.querySelector(".chat-item__waiting"), waitingLabel(s));
    });
  }

  window.setInterval(tickWaiting, WAIT_REFRESH_MS);

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
    if (summary.state !== "queued" && state.queue.some(function (s) { return s.conversation_id === id; })) {
      // Out of the queue now (the queue itself follows within a moment): the row goes at once.
      state.queue = state.queue.filter(function (s) { return s.conversation_id !== id; });
      delete (state.seenQueue || {})[id];
      state.queueTotal = Math.max(0, (state.queueTotal || 0) - 1);
      renderQueue();
    }
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
        showNotice(errorText(r.error), true);
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

  // The notice is a status region: the same text is not written again (that would
  // read it out again on every queue event or typing flag); `repeat` reads out an
  // error that happens to be the same as the one shown.
  function showNotice(text, repeat) {
    var notice = $("chat-notice");
    if (notice.textContent !== text) {
      notice.textContent = text;
    } else if (repeat && text) {
      notice.textContent = "";
      window.setTimeout(function () { notice.textContent = text; }, 60);
    }
  }

  function renderChatHeader() {
    if (state.active === null) return;
    var id = state.active;
    var c = chat(id);
    var s = c.summary || { conversation_id: id, state: "queued" };
    var focused = document.activeElement;
    var heading = $("chat-heading");
    var headingKey = id + (s.crisis ? ":crisis" : "");
    if (heading.dataset.key !== headingKey) {
      heading.dataset.key = headingKey;
      heading.replaceChildren(el("span", null, fmt("chat", { id: id })));
      if (s.crisis) heading.appendChild(el("span", "badge badge--crisis", T.crisis_long));
    }
    var stateText = s.state === "counsellor"
      ? (isMine(s) ? T.state_counsellor : T.state_counsellor_other)
      : T["state_" + s.state] || s.state;
    setText($("chat-meta"), [topicLabel(s.topic), languageName(s.language), stateText].join(" · "));
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
    setText($("typing"), mine && c.typing ? T.resident_typing : "");
    // A button or box that had focus and is now hidden (put back, taken by someone
    // else): focus goes to the chat's heading rather than being lost to <body>.
    if (focused && focused !== document.body && !state.picking[id] && $("chat").contains(focused) &&
        focused.closest("[hidden]")) {
      heading.focus();
    }
  }

  function senderLabel(m) {
    if (m.sender === "counsellor") {
      return m.counsellor_name ? T.sender_counsellor + " " + m.counsellor_name : T.sender_counsellor;
    }
    return T["sender_" + m.sender] || m.sender;
  }

  function messageNode(m) {
    var node = el("div", "msg msg--" + m.sender);
    node.dataset.key = String(m.message_id);
    if (m.language) node.lang = m.language;
    var sender = el("p", "msg__sender", senderLabel(m));
    var time = el("time", null, clock(m.time));
    time.dateTime = m.time;
    sender.appendChild(time);
    node.appendChild(sender);
    node.appendChild(el("p", "msg__text", m.text));
    return node;
  }

  var messagesHow = { key: function (m) { return m.message_id; }, create: messageNode };

  function renderTranscript() {
    var log = $("transcript");
    var c = chat(state.active);
    var key = String(state.active);
    if (log.dataset.conversation === key) {
      // The same chat again (its transcript reloaded): lines already shown stay as
      // they are, so the log region reads out only what is new.
      var nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
      syncList(log, c.messages, messagesHow);
      if (nearBottom) log.scrollTop = log.scrollHeight;
      return;
    }
    // Another chat: a fresh log region, filled before it is in the page, so that
    // a screen reader does not read the whole history out as new lines.
    var fresh = log.cloneNode(false);
    fresh.dataset.conversation = key;
    syncList(fresh, c.messages, messagesHow);
    var hadFocus = document.activeElement === log;
    log.replaceWith(fresh);
    if (hadFocus) fresh.focus({ preventScroll: true });
    fresh.scrollTop = fresh.scrollHeight;
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
      if (!r.ok) {
        delete state.picking[id];
        announce(errorText(r.error), false);
        if (state.active === id) showNotice(errorText(r.error), true);
        return;
      }
      var summary = r.conversation;
      state.mine = state.mine.filter(function (s) { return s.conversation_id !== id; }).concat([summary]);
      applyTranscript(id, r);
      announce(fmt("picked_up", { id: id }), false);
      activate(id, true);
      delete state.picking[id];  // only now: until focus is in the chat, its lost pick-up button is no loss
    });
  }

  $("pick-up").addEventListener("click", function () { if (state.active !== null) pickUp(state.active); });

  $("put-back").addEventListener("click", function () {
    var id = state.active;
    request("put_back", { conversation_id: id }).then(function (r) {
      if (!r.ok) { showNotice(errorText(r.error), true); return; }
      announce(fmt("put_back_done", { id: id }), false);
    });
  });

  var dialog = $("close-dialog");

  function renderTagOptions() {
    // In place: a reconnect while the dialog is open keeps the boxes ticked (and focused).
    syncList($("tag-options"), state.tags, {
      key: function (t) { return t.tag; },
      create: function (t) {
        var label = el("label", "tag-option");
        var input = document.createElement("input");
        input.type = "checkbox";
        input.name = "tag";
        input.value = t.tag;
        input.dataset.control = "tag";
        label.appendChild(input);
        label.appendChild(el("span", "tag-option__label"));
        return label;
      },
      update: function (label, t) { setText(label.querySelector(".tag-option__label"), tagLabel(t.tag)); },
    });
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
        showNotice(errorText(r.error), true);
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
    var key = language + "\n" + items.map(function (s) { return s.title; }).join("\n");
    if (select.dataset.key === key) return;  // unchanged: keep the options (and the choice)
    select.dataset.key = key;
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
    li.dataset.key = String(n.note_id);
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
    syncList(list, c.notes, { key: function (n) { return n.note_id; }, create: noteNode });
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
      if (!r.ok) { showNotice(errorText(r.error), true); return; }
      box.value = "";
      var c = chat(id);
      if (!c.notes.some(function (n) { return n.note_id === r.note.note_id; })) c.notes.push(r.note);
      if (state.active === id) renderNotes();
    });
  });

  // --- call-back requests ------------------------------------------------------------------

  function callbackDetails(cb) {
    var dl = el("dl");
    function row(label, value, href) {
      if (!value) return;
      dl.appendChild(el("dt", null, label));
      var dd = el("dd");
      if (href) {
        var a = el("a", null, value);
        a.href = href;
        a.dataset.control = "phone";
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
    return dl;
  }

  var callbacksHow = {
    key: function (cb) { return cb.callback_id; },
    create: function (cb) {
      var li = el("li", "callback-item");
      li.appendChild(el("dl"));
      var done = el("button", "button button--small", T.callback_done);
      done.type = "button";
      done.dataset.control = "done";
      done.addEventListener("click", function () {
        request("callback_done", { callback_id: cb.callback_id }).then(function (r) {
          announce(r.ok ? T.callback_done_ok : errorText(r.error), false);
        });
      });
      li.appendChild(done);
      return li;
    },
    update: function (li, cb) {
      var details = JSON.stringify([cb.phone, cb.name, cb.preferred_time, cb.topic, cb.language]);
      if (li.dataset.details !== details) {
        li.dataset.details = details;
        li.replaceChild(callbackDetails(cb), li.querySelector("dl"));
      }
      setAttr(li.querySelector('[data-control="done"]'), "aria-label", T.callback_done + ": " + (cb.name || cb.phone));
    },
    fallback: function () { return $("callbacks-heading"); },
  };

  function renderCallbacks() {
    syncList($("callback-list"), state.callbacks, callbacksHow);
    $("callbacks-empty").hidden = state.callbacks.length > 0;
    setText($("callbacks-count"), state.callbacks.length ? "(" + state.callbacks.length + ")" : "");
  }

  socket.on("callbacks", function (payload) {
    state.callbacks = payload.callbacks;
    renderCallbacks();
  });
}());
