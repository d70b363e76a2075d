// The resident side of the chat protocol (docs/protocol.md), without any DOM.
//
// Keeps the conversation (session id, transcript, outbox, handoff state) in
// browser storage and talks to the chat server over Socket.IO. The outbox is
// the promise that a resident never loses what they wrote: a message stays
// there, in storage, until the server acknowledges it with its client_id, and
// it is sent again (same client_id, stored once by the server) after every
// reconnect or page reload.

import { io } from 'socket.io-client';
import { uuid } from './uuid.js';

const MAX_TRANSCRIPT = 300;
const HISTORY_WAIT_MS = 4000;
const RESEND_AFTER_MS = 15000;
const RESEND_CHECK_MS = 5000;
const BUSY_RETRY_MS = 10000; // reconnecting after a refused connection
// A message the server answered server_busy is sent again after these waits; after the
// last one it is given back to the resident (the text to the input, with what to do next)
// instead of being resent for as long as the page is open.
const BUSY_RETRY_DELAYS_MS = [5000, 15000, 45000];
const TYPING_REPEAT_MS = 3000;
const TYPING_IDLE_MS = 4000;
const CALLBACK_WAIT_MS = 20000;

// Errors that answer a callback request (the error event has no client_id for it).
const CALLBACK_ERROR_CODES = ['callback_invalid', 'rate_limited', 'malformed_payload', 'server_busy'];

// The server refused these messages for good; the text goes back to the resident.
const REFUSED_CODES = ['message_too_long', 'rate_limited', 'malformed_payload', 'queue_limited'];

const BOT_STATE = { state: 'bot', position: null, estimated_wait_secs: null, counsellor_name: null };

function socketTarget(serverUrl) {
  // A path in data-server is a reverse-proxy prefix, not a Socket.IO namespace.
  const url = new URL(serverUrl, window.location.href);
  const prefix = url.pathname.replace(/\/+$/, '');
  return { origin: url.origin, path: `${prefix}/socket.io` };
}

function senderOf(value) {
  return ['resident', 'bot', 'counsellor', 'system'].includes(value) ? value : 'bot';
}

function normalizeQuickReplies(list) {
  if (!Array.isArray(list)) return [];
  return list
    .filter((q) => q && (q.title || q.payload))
    .map((q) => ({ title: String(q.title || q.payload), payload: String(q.payload || q.title) }));
}

export class ChatClient {
  constructor({ serverUrl, store, getLanguage }) {
    this.serverUrl = serverUrl;
    this.store = store;
    this.getLanguage = getLanguage;
    this.listeners = new Map();
    this.socket = null;
    this.connection = 'idle'; // idle | connecting | connected | reconnecting
    this.everConnected = false;
    this.lostConnection = false;
    this.awaitingHistory = false;
    this.historyTimer = null;
    this.busyTimer = null;
    this.typingSentAt = 0;
    this.typingIdleTimer = null;
    // A callback request on its way: in memory only, never in storage (a phone number).
    this.callback = null;
    this.callbackTimer = null;

    this.sessionId = store.get('session', null);
    this.transcript = store.get('transcript', []);
    this.outbox = store.get('outbox', []);
    this.handoff = store.get('handoff', BOT_STATE);
    // Anything in the outbox is, by definition, still waiting for the server.
    const waiting = new Set(this.outbox.map((item) => item.client_id));
    for (const entry of this.transcript) entry.pending = waiting.has(entry.client_id);
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, []);
    this.listeners.get(event).push(fn);
  }

  emit(event, ...args) {
    for (const fn of this.listeners.get(event) || []) fn(...args);
  }

  /** True when there is something to continue: a session or unsent messages. */
  hasConversation() {
    return Boolean(this.sessionId) || this.outbox.length > 0 || this.transcript.length > 0;
  }

  save() {
    if (this.transcript.length > MAX_TRANSCRIPT) {
      this.transcript = this.transcript.slice(-MAX_TRANSCRIPT);
    }
    this.store.set('session', this.sessionId);
    this.store.set('transcript', this.transcript);
    this.store.set('outbox', this.outbox);
    this.store.set('handoff', this.handoff);
  }

  changed() {
    this.save();
    this.emit('change');
  }

  setConnection(value) {
    if (this.connection === value) return;
    this.connection = value;
    this.emit('connection', value);
  }

  // --- connection ------------------------------------------------------------

  connect() {
    if (this.socket) return;
    const { origin, path } = socketTarget(this.serverUrl);
    this.setConnection('connecting');
    const socket = io(origin, {
      path,
      transports: ['websocket', 'polling'],
      tryAllTransports: true,
      reconnection: true,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 10000,
      timeout: 10000,
      // The widget's language, so that a refused connection is explained in it.
      auth: (cb) => cb({ language: this.getLanguage() }),
    });
    this.socket = socket;

    socket.on('connect', () => this.onConnect());
    socket.on('disconnect', (reason) => this.onDisconnect(reason));
    socket.on('connect_error', (err) => this.onConnectError(err));
    socket.on('session_confirm', (data) => this.onSessionConfirm(data));
    socket.on('history', (data) => this.onHistory(data));
    socket.on('bot_uttered', (data) => this.onBotUttered(data));
    socket.on('message_ack', (data) => this.onMessageAck(data));
    socket.on('handoff_state', (data) => this.setHandoff(data));
    socket.on('typing', (data) => this.onTyping(data));
    socket.on('error', (data) => this.onServerError(data));
    socket.on('callback_ack', (data) => this.onCallbackAck(data));

    this.resendTimer = window.setInterval(() => this.resendStale(), RESEND_CHECK_MS);
  }

  onConnect() {
    if (this.lostConnection) this.emit('status', 'reconnected');
    this.lostConnection = false;
    this.everConnected = true;
    this.setConnection('connected');
    // language: a new session's welcome comes in the resident's language.
    this.socket.emit('session_request', { session_id: this.sessionId || null, language: this.getLanguage() });
  }

  onDisconnect(reason) {
    this.awaitingHistory = false;
    if (this.callback) this.callback.unsent = true; // sent again after the next session_confirm
    if (reason === 'io client disconnect') return; // we asked for it (clearing)
    this.lostConnection = true;
    this.setConnection('reconnecting');
    this.emit('status', 'reconnecting');
    this.emit('change');
    // A server-side disconnect is not retried by socket.io-client itself.
    if (reason === 'io server disconnect') window.setTimeout(() => this.socket && this.socket.connect(), 2000);
  }

  onConnectError(err) {
    const data = err && err.data;
    if (data && data.code && data.message) {
      // Refused by the server (too_many_connections): say why, in the resident's language.
      this.emit('serverError', { code: data.code, message: data.message, client_id: null });
    }
    if (this.connection === 'reconnecting') return;
    this.setConnection('reconnecting');
    this.lostConnection = this.everConnected;
    this.emit('status', this.everConnected ? 'reconnecting' : 'unreachable');
    this.emit('change');
    if (!this.socket.active) window.setTimeout(() => this.socket && this.socket.connect(), BUSY_RETRY_MS);
  }

  isOnline() {
    return Boolean(this.socket && this.socket.connected);
  }

  canSend() {
    return this.isOnline() && Boolean(this.sessionId) && !this.awaitingHistory;
  }

  // --- protocol: sessions and history -------------------------------------------

  onSessionConfirm(data) {
    const confirmed = typeof data === 'string' ? data : data && data.session_id;
    if (!confirmed) return;
    const previous = this.sessionId;
    this.sessionId = confirmed;
    window.clearTimeout(this.historyTimer);

    if (previous && previous === confirmed) {
      this.awaitingHistory = true;
      this.socket.emit('history_request', { session_id: confirmed });
      // If the history never comes, the resident's messages must not wait forever.
      this.historyTimer = window.setTimeout(() => {
        this.awaitingHistory = false;
        this.flushOutbox();
      }, HISTORY_WAIT_MS);
      this.save();
      return;
    }

    this.awaitingHistory = false;
    if (previous && previous !== confirmed) {
      // The old conversation is gone on the server: start a fresh transcript,
      // but keep (and send) whatever the resident has not got delivered yet.
      const waiting = new Set(this.outbox.map((item) => item.client_id));
      this.transcript = this.transcript.filter((entry) => waiting.has(entry.client_id));
      this.handoff = BOT_STATE;
      this.emit('handoff', this.handoff, null);
      this.emit('status', 'sessionExpired');
    }
    this.changed();
    this.flushOutbox();
  }

  onHistory(data) {
    if (!data || (data.session_id && data.session_id !== this.sessionId)) return;
    window.clearTimeout(this.historyTimer);
    const serverEntries = (Array.isArray(data.messages) ? data.messages : []).map((m) => this.entryFromHistory(m));
    const local = new Map(this.transcript.filter((e) => e.client_id).map((e) => [e.client_id, e]));
    const notes = this.transcript.filter((e) => e.local);
    const names = new Map(this.transcript.filter((e) => e.counsellor_name).map((e) => [e.message_id, e.counsellor_name]));
    const stored = new Set();
    for (const entry of serverEntries) {
      // The history has no counsellor names; keep the ones seen live.
      if (!entry.counsellor_name && names.has(entry.message_id)) entry.counsellor_name = names.get(entry.message_id);
    }

    for (const entry of serverEntries) {
      if (!entry.client_id) continue;
      stored.add(entry.client_id);
      const mine = local.get(entry.client_id);
      // A button shows its title, the server stores its payload: keep what the resident saw.
      if (mine && mine.text && entry.text !== mine.text && entry.text.startsWith('/')) entry.text = mine.text;
    }
    this.labelButtonPayloads(serverEntries);

    // The server's transcript is the truth; add only what it cannot know yet.
    this.outbox = this.outbox.filter((item) => !stored.has(item.client_id));
    const waiting = new Set(this.outbox.map((item) => item.client_id));
    const known = new Set(serverEntries.map((e) => e.message_id).filter((id) => id != null));
    const newest = Math.max(0, ...known);
    // Messages that arrived live after the server took its snapshot stay too.
    const newer = this.transcript.filter((e) => e.message_id != null && e.message_id > newest && !known.has(e.message_id));
    const unsent = this.transcript.filter((e) => e.client_id && waiting.has(e.client_id));
    this.transcript = this.placeLocalNotes(serverEntries.concat(newer, unsent), notes);

    if (data.handoff_state) this.setHandoff(data.handoff_state, { silent: true });
    this.awaitingHistory = false;
    this.changed();
    this.flushOutbox();
  }

  entryFromHistory(m) {
    const sender = senderOf(m.sender);
    return {
      key: m.client_id ? `c:${m.client_id}` : `m:${m.message_id}`,
      message_id: m.message_id != null ? m.message_id : null,
      client_id: m.client_id || null,
      sender,
      text: String(m.text || ''),
      quick_replies: normalizeQuickReplies(m.quick_replies),
      time: m.time || null,
      language: m.language || null,
      counsellor_name: m.counsellor_name || null,
      pending: false,
    };
  }

  /** The widget's own notes (not on the server) back where they were, after the message before them. */
  placeLocalNotes(entries, notes) {
    const result = entries.slice();
    for (const note of notes) {
      let at = result.findIndex((e) => (e.message_id != null && e.message_id > (note.after_message_id || 0)) || e.pending);
      if (at < 0) at = result.length;
      result.splice(at, 0, note);
    }
    return result;
  }

  /** A resident message that is a bare payload ("/request_counsellor") shows the button's title. */
  labelButtonPayloads(entries) {
    let offered = [];
    for (const entry of entries) {
      if (entry.sender !== 'resident') {
        offered = entry.quick_replies || [];
      } else if (entry.text.startsWith('/')) {
        const match = offered.find((q) => q.payload === entry.text);
        if (match) entry.text = match.title;
      }
    }
  }

  // --- protocol: messages ----------------------------------------------------------

  /** Queue a resident message; `shown` is what the transcript shows (a button's title). */
  send(message, shown) {
    const text = String(message);
    if (!text.trim()) return null;
    const clientId = uuid();
    const language = this.getLanguage();
    const now = new Date().toISOString();
    this.outbox.push({ client_id: clientId, message: text, shown: shown || text, language, created: now, sent_at: 0 });
    this.transcript.push({
      key: `c:${clientId}`,
      message_id: null,
      client_id: clientId,
      sender: 'resident',
      text: shown || text,
      quick_replies: [],
      time: now,
      language,
      pending: true,
      created_ms: Date.now(),
    });
    this.stopTyping();
    this.changed();
    this.emit('sent', clientId);
    if (!this.socket) this.connect();
    this.flushOutbox();
    return clientId;
  }

  flushOutbox() {
    if (!this.canSend()) return;
    for (const item of this.outbox) this.transmit(item);
    this.save();
    if (this.callback && this.callback.unsent) this.transmitCallback();
  }

  transmit(item) {
    if (item.retry_at && Date.now() < item.retry_at) return; // waiting after server_busy
    item.sent_at = Date.now();
    this.socket.emit('user_uttered', {
      message: item.message,
      session_id: this.sessionId,
      customData: { language: item.language, client_id: item.client_id },
    });
  }

  resendStale() {
    if (!this.canSend()) return;
    const now = Date.now();
    let resent = false;
    for (const item of this.outbox) {
      if (now - (item.sent_at || 0) > RESEND_AFTER_MS) {
        this.transmit(item);
        resent = true;
      }
    }
    if (resent) this.save();
  }

  onMessageAck(data) {
    if (!data || !data.client_id) return;
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((item) => item.client_id !== data.client_id);
    const entry = this.transcript.find((e) => e.client_id === data.client_id);
    if (entry) {
      entry.pending = false;
      if (data.message_id != null) entry.message_id = data.message_id;
      if (data.time) entry.time = data.time;
    }
    if (entry || before !== this.outbox.length) {
      this.changed();
      this.emit('acked', data.client_id);
    }
  }

  onBotUttered(data) {
    if (!data) return;
    const meta = data.metadata || data.customData || {};
    const quickReplies = normalizeQuickReplies(data.quick_replies || data.buttons);
    const text = data.text != null ? String(data.text) : '';
    if (!text && !quickReplies.length) return;
    const messageId = meta.message_id != null ? meta.message_id : null;
    if (messageId != null && this.transcript.some((e) => e.message_id === messageId && e.sender !== 'resident')) return;
    const sender = senderOf(meta.sender);
    const entry = {
      key: messageId != null ? `m:${messageId}` : `l:${uuid()}`,
      message_id: messageId,
      client_id: null,
      sender: sender === 'resident' ? 'bot' : sender,
      text,
      quick_replies: quickReplies,
      time: meta.time || new Date().toISOString(),
      language: meta.language || null,
      counsellor_name: meta.counsellor_name || null,
      pending: false,
    };
    this.transcript.push(entry);
    this.emit('typing', { sender: entry.sender, typing: false });
    this.changed();
    this.emit('message', entry);
  }

  setHandoff(data, { silent = false } = {}) {
    if (!data || !data.state) return;
    const next = {
      state: data.state,
      position: data.position != null ? data.position : null,
      estimated_wait_secs: data.estimated_wait_secs != null ? data.estimated_wait_secs : null,
      counsellor_name: data.counsellor_name || null,
    };
    const previous = this.handoff;
    this.handoff = next;
    this.changed();
    this.emit('handoff', next, silent ? next : previous);
  }

  onTyping(data) {
    if (!data || !data.sender) return;
    this.emit('typing', { sender: data.sender, typing: Boolean(data.typing) });
  }

  onServerError(data) {
    const error = { code: (data && data.code) || 'error', message: (data && data.message) || '', client_id: data && data.client_id };
    const item = error.client_id ? this.outbox.find((o) => o.client_id === error.client_id) : null;

    if (item && REFUSED_CODES.includes(error.code)) {
      // Not stored and will not be: give the words back to the resident.
      this.outbox = this.outbox.filter((o) => o !== item);
      this.transcript = this.transcript.filter((e) => e.client_id !== item.client_id);
      this.changed();
      this.emit('refused', { error, text: item.shown === item.message ? item.message : '' });
      return;
    }
    if (this.callback && !error.client_id && CALLBACK_ERROR_CODES.includes(error.code)) {
      // The callback request was refused: nothing stored; the form keeps what was typed.
      this.endCallback();
      this.emit('callbackRefused', error);
      return;
    }
    if (error.code === 'unknown_session') {
      if (this.callback) this.callback.unsent = true;
      // Ask again; the server answers with a fresh session and the outbox follows it.
      if (this.isOnline()) {
        this.socket.emit('session_request', { session_id: this.sessionId || null, language: this.getLanguage() });
      }
      return;
    }
    if (error.code === 'server_busy' && item) {
      item.busy_tries = (item.busy_tries || 0) + 1;
      if (item.busy_tries > BUSY_RETRY_DELAYS_MS.length) {
        // Still failing after every retry: give the words back with the next step.
        this.outbox = this.outbox.filter((o) => o !== item);
        this.transcript = this.transcript.filter((e) => e.client_id !== item.client_id);
        this.changed();
        this.emit('refused', { error: { ...error, code: 'gave_up' }, text: item.shown === item.message ? item.message : '' });
        return;
      }
      const delay = BUSY_RETRY_DELAYS_MS[item.busy_tries - 1];
      item.retry_at = Date.now() + delay;
      this.save();
      window.clearTimeout(this.busyTimer);
      this.busyTimer = window.setTimeout(() => this.flushOutbox(), delay + 50);
    } else if (error.code === 'server_busy') {
      window.clearTimeout(this.busyTimer);
      this.busyTimer = window.setTimeout(() => this.flushOutbox(), BUSY_RETRY_DELAYS_MS[0]);
    }
    this.emit('serverError', error);
  }

  // --- callback requests -------------------------------------------------------------

  /**
   * Ask Polku to call back: { phone, name?, preferred_time?, topic? } with the
   * resident's consent. Answered by 'callbackAck' or 'callbackRefused'.
   */
  requestCallback(details) {
    const payload = { phone: details.phone, consent: true };
    for (const key of ['name', 'preferred_time', 'topic']) if (details[key]) payload[key] = details[key];
    this.callback = { payload, unsent: true };
    window.clearTimeout(this.callbackTimer);
    // No answer in time (no connection): the resident may try again; nothing is lost.
    this.callbackTimer = window.setTimeout(() => {
      if (!this.callback) return;
      this.endCallback();
      this.emit('callbackRefused', { code: 'timeout', message: '' });
    }, CALLBACK_WAIT_MS);
    if (!this.socket) this.connect();
    if (this.canSend()) this.transmitCallback();
  }

  transmitCallback() {
    this.callback.unsent = false;
    this.socket.emit('callback_request', { session_id: this.sessionId, ...this.callback.payload });
  }

  endCallback() {
    window.clearTimeout(this.callbackTimer);
    this.callback = null;
  }

  onCallbackAck(data) {
    if (!this.callback) return;
    this.endCallback();
    this.emit('callbackAck', { callback_id: data && data.callback_id });
  }

  /** A note of the widget's own in the transcript (kept through history merges, never sent). */
  addLocalNote(text) {
    const ids = this.transcript.map((e) => e.message_id).filter((id) => id != null);
    const entry = {
      key: `n:${uuid()}`,
      local: true,
      after_message_id: Math.max(0, ...ids),
      message_id: null,
      client_id: null,
      sender: 'system',
      text: String(text),
      quick_replies: [],
      time: new Date().toISOString(),
      language: this.getLanguage(),
      counsellor_name: null,
      pending: false,
    };
    this.transcript.push(entry);
    this.changed();
    return entry;
  }

  // --- other resident actions ---------------------------------------------------

  leaveQueue() {
    if (this.isOnline() && this.sessionId) this.socket.emit('leave_queue', { session_id: this.sessionId });
  }

  /** Tell the counsellor the resident is typing; throttled, never the text itself. */
  residentTyping() {
    if (!this.isOnline() || !this.sessionId) return;
    const now = Date.now();
    if (now - this.typingSentAt > TYPING_REPEAT_MS) {
      this.typingSentAt = now;
      this.socket.emit('resident_typing', { session_id: this.sessionId, typing: true });
    }
    window.clearTimeout(this.typingIdleTimer);
    this.typingIdleTimer = window.setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    window.clearTimeout(this.typingIdleTimer);
    if (!this.typingSentAt) return;
    this.typingSentAt = 0;
    if (this.isOnline() && this.sessionId) {
      this.socket.emit('resident_typing', { session_id: this.sessionId, typing: false });
    }
  }

  /** Forget this conversation here and start a new session on the server. */
  clear() {
    if (this.handoff.state === 'queued') this.leaveQueue();
    this.stopTyping();
    window.clearTimeout(this.historyTimer);
    this.sessionId = null;
    this.transcript = [];
    this.outbox = [];
    this.awaitingHistory = false;
    this.endCallback();
    const previous = this.handoff;
    this.handoff = BOT_STATE;
    this.store.clearConversation();
    this.emit('handoff', this.handoff, previous);
    this.emit('change');
    if (this.socket) {
      // A new connection so that the socket leaves the old conversation's room.
      this.socket.disconnect();
      this.socket.connect();
    }
  }
}
