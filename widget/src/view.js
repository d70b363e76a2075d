// The widget's interface: a launcher button and a non-modal chat panel in an
// open shadow root. Renders what ChatClient holds and turns the resident's
// actions into ChatClient calls.

import { h, icon, ICONS, richText } from './dom.js';
import { LANGUAGES, LANGUAGE_NAMES, strings, formatWait } from './i18n.js';
import { checkCallbackForm, phoneDigits } from './callback.js';
import css from './styles.css';

const PENDING_MARK_DELAY_MS = 1500;
const CONNECTING_NOTICE_DELAY_MS = 1500;
const TYPING_TIMEOUT_MS = 15000;
const DRAFT_SAVE_DELAY_MS = 300;
const NEAR_BOTTOM_PX = 96;
const TRANSIENT_STATUS_MS = { reconnected: 5000, cleared: 6000, sessionExpired: 10000 };
// The quick reply of the counsellors_unavailable notice: opens the callback form, is never sent.
const CALLBACK_PAYLOAD = '/callback_request';
const CALLBACK_FIELDS = ['phone', 'name', 'preferred_time', 'consent'];

/**
 * A constructed stylesheet where the browser has them: a host page's Content
 * Security Policy (style-src without 'unsafe-inline') does not block it, as
 * it would block a <style> element.
 */
function adoptStyles(shadow, text) {
  try {
    if ('adoptedStyleSheets' in shadow && typeof CSSStyleSheet.prototype.replaceSync === 'function') {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(text);
      shadow.adoptedStyleSheets = [sheet];
      return;
    }
  } catch (_) { /* fall back to a <style> element */ }
  shadow.appendChild(h('style', null, text));
}

export class ChatView {
  constructor({ client, store, language, host }) {
    this.client = client;
    this.store = store;
    this.lang = language;
    this.t = strings(language);
    this.nodes = new Map();
    this.unread = 0;
    this.typing = { bot: false, counsellor: false };
    this.typingTimers = {};
    this.typingShown = undefined;
    this.statusKind = null;
    this.callbackErrors = {};
    this.callbackAlert = null;
    this.callbackSending = false;
    this.build(host);
    this.applyStrings();
    this.bindClient();
    this.renderMessages();
    this.renderHandoff();
    this.input.value = store.get('draft', '') || '';
    this.autosize();
  }

  // --- structure ---------------------------------------------------------------

  build(host) {
    const shadow = host.attachShadow({ mode: 'open' });
    adoptStyles(shadow, css);

    this.launcherLabel = h('span', { class: 'polku-launcher__label' });
    this.badgeCount = h('span', { 'aria-hidden': 'true' });
    this.badgeText = h('span', { class: 'polku-sr' });
    this.badge = h('span', { class: 'polku-launcher__badge', hidden: true }, this.badgeCount, this.badgeText);
    this.launcher = h('button', {
      type: 'button',
      class: 'polku-launcher',
      'aria-expanded': 'false',
      'aria-controls': 'polku-panel',
      onclick: () => this.toggle(),
      onkeydown: (e) => {
        if (e.key === 'Escape' && !this.panel.hidden) {
          e.preventDefault();
          this.close();
        }
      },
    }, icon(ICONS.chat, 'polku-icon polku-icon--open'), icon(ICONS.chevronDown, 'polku-icon polku-icon--close'),
    this.launcherLabel, this.badge);

    // Header: title, close, language switcher, clear conversation.
    this.titleEl = h('h2', { id: 'polku-title', class: 'polku-title' });
    this.subtitleEl = h('p', { class: 'polku-subtitle' });
    this.closeBtn = h('button', { type: 'button', class: 'polku-iconbtn', onclick: () => this.close() }, icon(ICONS.close));
    this.langButtons = LANGUAGES.map((code) => h('button', {
      type: 'button',
      class: 'polku-headbtn polku-lang',
      lang: code,
      'aria-pressed': 'false',
      onclick: () => this.setLanguage(code),
    }, LANGUAGE_NAMES[code]));
    this.langGroup = h('div', { class: 'polku-langs', role: 'group' }, this.langButtons);
    this.clearLabel = h('span');
    this.clearBtn = h('button', { type: 'button', class: 'polku-headbtn polku-clear', onclick: () => this.askClear() },
      this.clearLabel);
    const header = h('div', { class: 'polku-header' },
      h('div', { class: 'polku-header__top' },
        h('div', { class: 'polku-header__titles' }, this.titleEl, this.subtitleEl),
        this.closeBtn),
      h('div', { class: 'polku-toolbar' }, this.langGroup, this.clearBtn));

    // Clearing asks first, inline (no browser confirm dialog).
    this.confirmTitle = h('p', { id: 'polku-confirm-title', class: 'polku-confirm__title' });
    this.confirmText = h('p', { id: 'polku-confirm-text' });
    this.confirmYes = h('button', { type: 'button', class: 'polku-btn polku-btn--danger', onclick: () => this.doClear() });
    this.confirmNo = h('button', { type: 'button', class: 'polku-btn', onclick: () => this.cancelClear() });
    this.confirm = h('div', {
      class: 'polku-confirm',
      role: 'group',
      'aria-labelledby': 'polku-confirm-title',
      'aria-describedby': 'polku-confirm-text',
      hidden: true,
    }, this.confirmTitle, this.confirmText, h('div', { class: 'polku-confirm__actions' }, this.confirmYes, this.confirmNo));

    // Live regions exist from the start: a region added later is not announced.
    this.status = h('div', { class: 'polku-status', role: 'status' });
    this.announcer = h('div', { class: 'polku-sr', role: 'status' });

    this.handoffTitle = h('p', { class: 'polku-handoff__title' });
    this.handoffDetail = h('p', { class: 'polku-handoff__detail' });
    this.leaveBtn = h('button', { type: 'button', class: 'polku-btn', onclick: () => this.client.leaveQueue() });
    this.handoffEl = h('div', { class: 'polku-handoff', hidden: true },
      h('div', { class: 'polku-handoff__texts' }, this.handoffTitle, this.handoffDetail), this.leaveBtn);

    this.introBot = h('p');
    this.introPrivacy = h('p');
    this.introEmergency = h('p');
    this.intro = h('div', { class: 'polku-intro' }, icon(ICONS.info),
      h('div', null, this.introBot, this.introPrivacy, this.introEmergency));
    // The transcript scrolls by itself and takes the keyboard focus, so that
    // it can be scrolled without a mouse even when it holds no links.
    this.log = h('div', {
      class: 'polku-log',
      role: 'log',
      'aria-live': 'polite',
      tabindex: '0',
    });
    // Follow the conversation while the resident is at its end; let them read
    // back in peace when they have scrolled up.
    this.stickToBottom = true;
    this.log.addEventListener('scroll', () => { this.stickToBottom = this.isNearBottom(); }, { passive: true });
    if (typeof ResizeObserver === 'function') {
      new ResizeObserver(() => { if (this.stickToBottom) this.scrollToBottom(); }).observe(this.log);
    }
    this.typingEl = h('div', { class: 'polku-typing', 'aria-live': 'polite' });

    this.errorEl = h('div', { class: 'polku-error', 'aria-live': 'polite' });

    this.buildCallbackForm();

    this.inputLabel = h('label', { class: 'polku-composer__label', for: 'polku-input' });
    this.inputHint = h('span', { id: 'polku-input-hint', class: 'polku-sr' });
    this.input = h('textarea', {
      id: 'polku-input',
      class: 'polku-input',
      rows: '1',
      enterkeyhint: 'send',
      autocomplete: 'off',
      'aria-describedby': 'polku-input-hint',
      onkeydown: (e) => this.onInputKey(e),
      oninput: () => this.onInput(),
    });
    this.sendLabel = h('span');
    this.sendBtn = h('button', { type: 'submit', class: 'polku-btn polku-btn--primary polku-send' }, icon(ICONS.send), this.sendLabel);
    this.form = h('form', {
      class: 'polku-composer',
      novalidate: true,
      onsubmit: (e) => {
        e.preventDefault();
        this.sendFromInput();
      },
    }, this.inputLabel, h('div', { class: 'polku-composer__row' }, this.input, this.sendBtn), this.inputHint);

    this.panel = h('div', {
      id: 'polku-panel',
      class: 'polku-panel',
      role: 'dialog',
      'aria-modal': 'false',
      'aria-labelledby': 'polku-title',
      hidden: true,
      onkeydown: (e) => this.onPanelKey(e),
    }, header, this.confirm, this.status, this.handoffEl, this.intro, this.log, this.typingEl,
    this.callbackForm, this.errorEl, this.form, this.announcer);

    this.root = h('div', { class: 'polku-root', lang: this.lang }, this.launcher, this.panel);
    shadow.appendChild(this.root);
  }

  /**
   * The callback request form: inline in the panel, in place of the message
   * box while it is open. Checked here as the server checks it; errors sit by
   * their fields (aria-describedby, aria-invalid).
   */
  buildCallbackForm() {
    const field = (name, input, { hint = true } = {}) => {
      const id = `polku-cb-${name.replace('_', '-')}`;
      input.id = id;
      const parts = {
        input,
        label: h('label', { class: 'polku-field__label', for: id }),
        hint: hint ? h('span', { id: `${id}-hint`, class: 'polku-field__hint' }) : null,
        error: h('p', { id: `${id}-error`, class: 'polku-field__error', hidden: true }),
      };
      this.callbackFields[name] = parts;
      return parts;
    };
    this.callbackFields = {};
    const onEdit = (name) => () => { if (this.callbackErrors[name]) this.checkCallbackField(name); };
    const text = (name, attrs) => field(name, h('input', {
      type: 'text', class: 'polku-field__input', oninput: onEdit(name), ...attrs,
    }));
    const phone = text('phone', { type: 'tel', autocomplete: 'tel', 'aria-required': 'true' });
    const name = text('name', { autocomplete: 'given-name' });
    const time = text('preferred_time', { autocomplete: 'off' });
    const consent = field('consent', h('input', {
      type: 'checkbox', class: 'polku-field__check', onchange: onEdit('consent'),
    }), { hint: false });

    this.callbackTitle = h('h3', { id: 'polku-cb-title', class: 'polku-callback__title' });
    this.callbackIntro = h('p', { id: 'polku-cb-intro', class: 'polku-callback__intro' });
    // Exists from the start, so that the server's refusal is announced when it comes.
    this.callbackAlertEl = h('div', { class: 'polku-callback__alert', role: 'alert' });
    this.callbackSendLabel = h('span');
    this.callbackSend = h('button', { type: 'submit', class: 'polku-btn polku-btn--primary' }, this.callbackSendLabel);
    this.callbackCancel = h('button', { type: 'button', class: 'polku-btn', onclick: () => this.cancelCallback() });
    const textField = (parts) => h('div', { class: 'polku-field' }, parts.label, parts.hint, parts.input, parts.error);
    this.callbackForm = h('form', {
      class: 'polku-callback',
      novalidate: true,
      'aria-labelledby': 'polku-cb-title',
      'aria-describedby': 'polku-cb-intro',
      hidden: true,
      onsubmit: (e) => {
        e.preventDefault();
        this.submitCallback();
      },
    }, this.callbackTitle, this.callbackIntro,
    textField(phone), textField(name), textField(time),
    h('div', { class: 'polku-field polku-field--check' },
      h('div', { class: 'polku-field__checkrow' }, consent.input, consent.label), consent.error),
    this.callbackAlertEl,
    h('div', { class: 'polku-callback__actions' }, this.callbackSend, this.callbackCancel));
  }

  /** Every interface text, in the current language. */
  applyStrings() {
    const t = this.t;
    this.root.setAttribute('lang', this.lang);
    this.launcherLabel.textContent = t.launcher;
    this.titleEl.textContent = t.title;
    this.subtitleEl.textContent = t.subtitle;
    this.closeBtn.setAttribute('aria-label', t.close);
    this.closeBtn.setAttribute('title', t.close);
    this.langGroup.setAttribute('aria-label', t.language);
    this.log.setAttribute('aria-label', t.log);
    for (const btn of this.langButtons) {
      btn.setAttribute('aria-pressed', String(btn.getAttribute('lang') === this.lang));
    }
    // Short visible label; the accessible name starts with it (WCAG 2.5.3).
    this.clearLabel.textContent = t.clearShort;
    this.clearBtn.setAttribute('aria-label', t.clear);
    this.clearBtn.setAttribute('title', t.clear);
    this.confirmTitle.textContent = t.clearTitle;
    this.confirmText.textContent = t.clearText;
    this.confirmYes.textContent = t.clearYes;
    this.confirmNo.textContent = t.clearNo;
    this.leaveBtn.textContent = t.leaveQueue;
    this.introBot.textContent = t.introBot;
    this.introPrivacy.textContent = t.introPrivacy;
    this.introEmergency.textContent = '';
    this.introEmergency.append(t.introEmergencyBefore, h('a', { href: 'tel:112' }, '112'), t.introEmergencyAfter);
    this.inputLabel.textContent = t.inputLabel;
    this.inputHint.textContent = t.inputHint;
    this.sendLabel.textContent = t.send;
    this.callbackTitle.textContent = t.callbackTitle;
    this.callbackIntro.textContent = t.callbackIntro;
    const f = this.callbackFields;
    f.phone.label.textContent = t.callbackPhone;
    f.phone.hint.textContent = t.callbackPhoneHint;
    f.name.label.textContent = t.callbackName;
    f.name.hint.textContent = t.callbackNameHint;
    f.preferred_time.label.textContent = t.callbackTime;
    f.preferred_time.hint.textContent = t.callbackTimeHint;
    f.consent.label.textContent = t.callbackConsent;
    this.callbackCancel.textContent = t.callbackCancel;
    this.renderCallbackState();
    this.renderBadge();
  }

  // --- opening and closing --------------------------------------------------------

  isOpen() {
    return !this.panel.hidden;
  }

  open({ focus = true } = {}) {
    if (!this.isOpen()) {
      this.panel.hidden = false;
      this.root.classList.add('polku-root--open');
      this.launcher.setAttribute('aria-expanded', 'true');
      this.store.set('open', true);
      this.unread = 0;
      this.renderBadge();
      this.client.connect();
      this.renderMessages();
      this.scrollToBottom();
      this.dispatch('open');
    }
    if (focus) (this.isCallbackOpen() ? this.callbackFields.phone.input : this.input).focus();
  }

  close({ returnFocus = true } = {}) {
    if (!this.isOpen()) return;
    this.confirm.hidden = true;
    this.panel.hidden = true;
    this.root.classList.remove('polku-root--open');
    this.launcher.setAttribute('aria-expanded', 'false');
    this.store.set('open', false);
    if (returnFocus) this.launcher.focus();
    this.dispatch('close');
  }

  toggle() {
    if (this.isOpen()) this.close();
    else this.open();
  }

  onPanelKey(e) {
    if (e.key !== 'Escape' || e.isComposing) return;
    e.preventDefault();
    e.stopPropagation();
    // Escape in the callback form cancels the form, not the whole chat.
    if (this.isCallbackOpen() && this.callbackForm.contains(e.target)) this.cancelCallback();
    else if (!this.confirm.hidden) this.cancelClear();
    else this.close();
  }

  dispatch(name, detail = {}) {
    // Never message text: host pages run analytics scripts.
    window.dispatchEvent(new CustomEvent(`polku-chat:${name}`, { detail }));
  }

  // --- language -----------------------------------------------------------------

  setLanguage(code) {
    if (!LANGUAGES.includes(code)) return;
    this.lang = code;
    this.t = strings(code);
    this.store.set('language', code);
    this.applyStrings();
    this.relabelMessages();
    this.renderHandoff();
    this.renderTyping(true);
    this.renderStatus();
    this.dispatch('language', { language: code });
  }

  // --- composing and sending ------------------------------------------------------

  onInputKey(e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      this.sendFromInput();
    }
  }

  onInput() {
    this.autosize();
    this.client.residentTyping();
    window.clearTimeout(this.draftTimer);
    this.draftTimer = window.setTimeout(() => this.store.set('draft', this.input.value), DRAFT_SAVE_DELAY_MS);
  }

  autosize() {
    this.input.style.height = 'auto';
    if (this.input.value) this.input.style.height = `${this.input.scrollHeight + 4}px`;
  }

  sendFromInput() {
    const text = this.input.value;
    if (!text.trim()) {
      this.input.focus();
      return;
    }
    this.showError(null);
    this.client.send(text);
    this.input.value = '';
    window.clearTimeout(this.draftTimer);
    this.store.set('draft', '');
    this.autosize();
  }

  sendQuickReply(reply) {
    if (reply.payload === CALLBACK_PAYLOAD) {
      this.openCallback();
      return;
    }
    this.showError(null);
    this.client.send(reply.payload, reply.title);
    // The buttons disappear with the answer; keep the resident where they can go on.
    this.input.focus();
  }

  // --- clearing -------------------------------------------------------------------

  askClear() {
    this.confirm.hidden = false;
    this.confirmNo.focus();
  }

  cancelClear() {
    this.confirm.hidden = true;
    this.clearBtn.focus();
  }

  doClear() {
    this.confirm.hidden = true;
    // A new conversation: the callback form forgets what was typed in it.
    if (this.isCallbackOpen()) this.hideCallback();
    this.resetCallback();
    this.client.clear();
    this.store.set('draft', this.input.value);
    this.showError(null);
    this.unread = 0;
    this.renderBadge();
    this.showStatus('cleared');
    this.input.focus();
    this.dispatch('clear');
  }

  // --- callback request --------------------------------------------------------------

  isCallbackOpen() {
    return !this.callbackForm.hidden;
  }

  openCallback({ focus = true } = {}) {
    if (!this.isCallbackOpen()) {
      this.callbackReturnFocus = this.activeElement();
      this.callbackForm.hidden = false;
      this.form.hidden = true;
      this.panel.classList.add('polku-panel--callback');
      this.showError(null);
    }
    if (focus) this.callbackFields.phone.input.focus();
  }

  hideCallback() {
    this.callbackForm.hidden = true;
    this.form.hidden = false;
    this.panel.classList.remove('polku-panel--callback');
  }

  /** Closes the form, keeps what was typed (until sent or the conversation is cleared). */
  cancelCallback() {
    if (!this.isCallbackOpen()) return;
    this.setCallbackErrors({});
    this.callbackAlert = null;
    this.renderCallbackState();
    this.hideCallback();
    const back = this.callbackReturnFocus;
    this.callbackReturnFocus = null;
    const visible = back && back.isConnected && back.getClientRects().length > 0 && this.panel.contains(back);
    (visible ? back : this.input).focus();
  }

  resetCallback() {
    for (const name of CALLBACK_FIELDS) {
      const { input } = this.callbackFields[name];
      if (input.type === 'checkbox') input.checked = false;
      else input.value = '';
    }
    this.setCallbackErrors({});
    this.callbackAlert = null;
    this.callbackSending = false;
    this.renderCallbackState();
  }

  callbackValues() {
    const f = this.callbackFields;
    return {
      phone: f.phone.input.value,
      name: f.name.input.value,
      preferred_time: f.preferred_time.input.value,
      consent: f.consent.input.checked,
    };
  }

  /** Re-checks a field with an error as the resident corrects it: the error goes once it is fixed. */
  checkCallbackField(name) {
    const { errors } = checkCallbackForm(this.callbackValues());
    if (errors[name]) return;
    const next = { ...this.callbackErrors };
    delete next[name];
    this.setCallbackErrors(next);
  }

  submitCallback() {
    if (this.callbackSending) return;
    const { values, errors } = checkCallbackForm(this.callbackValues());
    this.callbackAlert = null;
    this.setCallbackErrors(errors);
    const firstInvalid = CALLBACK_FIELDS.find((name) => errors[name]);
    if (firstInvalid) {
      this.renderCallbackState();
      this.callbackFields[firstInvalid].input.focus();
      return;
    }
    this.callbackSending = true;
    this.callbackSentPhone = values.phone;
    this.renderCallbackState();
    // No topic: the widget does not know the conversation's; the server adds its own.
    this.client.requestCallback({ phone: values.phone, name: values.name, preferred_time: values.preferred_time });
  }

  setCallbackErrors(errors) {
    this.callbackErrors = errors;
    for (const name of CALLBACK_FIELDS) {
      const { input, hint, error } = this.callbackFields[name];
      const problem = errors[name];
      error.replaceChildren();
      error.hidden = !problem;
      if (problem) {
        const message = problem.max ? this.t[problem.error](problem.max) : this.t[problem.error];
        error.append(icon(ICONS.warning), h('span', null, message));
        input.setAttribute('aria-invalid', 'true');
      } else {
        input.removeAttribute('aria-invalid');
      }
      const described = [hint && hint.id, problem && error.id].filter(Boolean).join(' ');
      if (described) input.setAttribute('aria-describedby', described);
      else input.removeAttribute('aria-describedby');
    }
  }

  /** The texts that depend on the form's state, in the current language. */
  renderCallbackState() {
    this.callbackSendLabel.textContent = this.callbackSending ? this.t.callbackSending : this.t.callbackSend;
    // Not `disabled`: a disabled button would drop the keyboard focus.
    if (this.callbackSending) this.callbackSend.setAttribute('aria-disabled', 'true');
    else this.callbackSend.removeAttribute('aria-disabled');
    this.setCallbackErrors(this.callbackErrors);
    this.callbackAlertEl.replaceChildren();
    const alert = this.callbackAlert;
    if (alert) {
      const message = alert.message || this.t[alert.key] || this.t.errorGeneric;
      this.callbackAlertEl.appendChild(h('p', { class: 'polku-callback__alerttext' },
        icon(ICONS.warning), h('span', null, `${message} ${this.t.callbackKept}`)));
    }
  }

  onCallbackAck() {
    const inForm = this.callbackForm.contains(this.activeElement());
    const digits = phoneDigits(this.callbackSentPhone || '');
    this.callbackSentPhone = null;
    this.resetCallback();
    if (this.isCallbackOpen()) this.hideCallback();
    // Only the end of the number, in the transcript and so in the browser's storage.
    const text = this.t.callbackConfirmed(digits.slice(-3));
    // Said once, by the announcer: the log would say it again.
    this.log.setAttribute('aria-live', 'off');
    this.client.addLocalNote(text);
    this.scrollToBottom();
    window.clearTimeout(this.relabelTimer);
    this.relabelTimer = window.setTimeout(() => this.log.setAttribute('aria-live', 'polite'), 400);
    this.announce(text);
    if (inForm) this.input.focus();
  }

  onCallbackRefused(error) {
    this.callbackSending = false;
    this.callbackAlert = error.code === 'timeout' ? { key: 'callbackTimeout' } : { message: error.message };
    // Closed meanwhile (cancelled while sending): open again, with everything as typed.
    if (!this.isCallbackOpen()) this.openCallback({ focus: this.panel.contains(this.activeElement()) });
    this.renderCallbackState();
  }

  // --- client events ------------------------------------------------------------------

  bindClient() {
    const c = this.client;
    c.on('change', () => this.renderMessages());
    c.on('connection', (state) => {
      window.clearTimeout(this.connectingTimer);
      if (state === 'connecting') {
        this.connectingTimer = window.setTimeout(() => {
          if (c.connection === 'connecting') this.showStatus('connecting');
        }, CONNECTING_NOTICE_DELAY_MS);
      } else if (state === 'connected' && this.statusKind === 'connecting') {
        this.showStatus(null);
      } else if (state === 'connected' && (this.statusKind === 'reconnecting' || this.statusKind === 'unreachable')) {
        this.showStatus('reconnected');
      }
      this.renderMessages();
    });
    c.on('status', (kind) => this.showStatus(kind));
    c.on('handoff', (next, previous) => {
      this.renderHandoff();
      this.announceHandoff(next, previous);
    });
    c.on('typing', (data) => this.setTyping(data));
    c.on('sent', () => {
      this.scrollToBottom();
      window.setTimeout(() => this.renderMessages(), PENDING_MARK_DELAY_MS + 50);
    });
    c.on('message', (entry) => {
      if (!this.isOpen()) {
        this.unread += 1;
        this.renderBadge();
      }
      this.dispatch('message', { sender: entry.sender });
    });
    c.on('refused', ({ error, text }) => {
      if (text) {
        const current = this.input.value;
        this.input.value = current.trim() ? `${text}\n${current}` : text;
        this.store.set('draft', this.input.value);
        this.autosize();
      }
      if (error.code === 'gave_up') this.showError(this.t.busyGaveUp, text ? this.t.textKept : '');
      else this.showError(error.message || this.t.errorGeneric, text ? this.t.textKept : '');
    });
    c.on('serverError', (error) => this.showError(error.message || this.t.errorGeneric));
    c.on('callbackAck', () => this.onCallbackAck());
    c.on('callbackRefused', (error) => this.onCallbackRefused(error));
  }

  // --- rendering: messages --------------------------------------------------------------

  /** Sender labels and marks in the new language, without announcing every message again. */
  relabelMessages() {
    this.log.setAttribute('aria-live', 'off');
    for (const node of this.nodes.values()) {
      node.polkuSender.textContent = this.senderLabel(node.polkuEntry);
      node.polkuSender.setAttribute('lang', this.lang);
      if (node.polkuMark) {
        node.polkuMark.textContent = this.t.notSent;
        node.polkuMark.setAttribute('lang', this.lang);
      }
      if (node.polkuQuick) node.polkuQuick.setAttribute('aria-label', this.t.quickReplies);
    }
    // Screen readers read the tree after this task: switch the region back on later.
    window.clearTimeout(this.relabelTimer);
    this.relabelTimer = window.setTimeout(() => this.log.setAttribute('aria-live', 'polite'), 400);
  }

  renderMessages() {
    const entries = this.client.transcript;
    const last = entries[entries.length - 1];
    const keep = new Set();
    let previous = null;
    let added = false;

    for (const entry of entries) {
      keep.add(entry.key);
      let node = this.nodes.get(entry.key);
      if (node && node.polkuText !== entry.text) {
        node.remove();
        node = null;
      }
      if (!node) {
        node = this.messageNode(entry);
        this.nodes.set(entry.key, node);
        added = true;
      }
      node.polkuEntry = entry;
      this.updateMessageNode(node, entry, entry === last);
      const expected = previous ? previous.nextSibling : this.log.firstChild;
      if (expected !== node) this.log.insertBefore(node, expected);
      previous = node;
    }
    for (const [key, node] of this.nodes) {
      if (!keep.has(key)) {
        node.remove();
        this.nodes.delete(key);
      }
    }
    // The server's welcome says the same (a bot, no identity codes, 112);
    // the intro covers the time before it arrives or when it cannot.
    this.intro.hidden = entries.length > 0;
    if (added && this.stickToBottom) this.scrollToBottom();
  }

  senderLabel(entry) {
    const t = this.t;
    if (entry.sender === 'resident') return t.you;
    if (entry.sender === 'counsellor') return entry.counsellor_name ? t.counsellorNamed(entry.counsellor_name) : t.counsellor;
    if (entry.sender === 'system') return t.system;
    return t.bot;
  }

  messageNode(entry) {
    const lang = entry.language || this.lang;
    const sender = h('span', { lang: this.lang }, this.senderLabel(entry));
    const node = h('div', { class: `polku-msg polku-msg--${entry.sender}`, lang },
      h('p', { class: 'polku-msg__sender' }, sender, h('span', { class: 'polku-sr' }, ':')),
      h('div', { class: 'polku-msg__bubble' }, richText(entry.text, this.t.newTab, this.lang)));
    node.polkuText = entry.text;
    node.polkuSender = sender;
    if (entry.quick_replies && entry.quick_replies.length) {
      node.polkuQuick = h('div', { class: 'polku-quick', role: 'group', 'aria-label': this.t.quickReplies, lang: this.lang },
        entry.quick_replies.map((reply) => h('button', {
          type: 'button',
          class: 'polku-btn',
          lang,
          onclick: () => this.sendQuickReply(reply),
        }, reply.title)));
      node.appendChild(node.polkuQuick);
    }
    return node;
  }

  updateMessageNode(node, entry, isLast) {
    if (node.polkuQuick) {
      const hide = !isLast;
      if (hide && node.polkuQuick.contains(this.activeElement())) this.input.focus();
      node.polkuQuick.hidden = hide;
    }
    const age = Date.now() - (entry.created_ms || 0);
    const showMark = Boolean(entry.pending) && (!this.client.isOnline() || age > PENDING_MARK_DELAY_MS);
    node.classList.toggle('polku-msg--pending', Boolean(entry.pending));
    if (showMark && !node.polkuMark) {
      node.polkuMark = h('p', { class: 'polku-msg__state', lang: this.lang }, this.t.notSent);
      node.appendChild(node.polkuMark);
    } else if (!showMark && node.polkuMark) {
      node.polkuMark.remove();
      node.polkuMark = null;
    }
  }

  activeElement() {
    return this.root.getRootNode().activeElement;
  }

  isNearBottom() {
    const s = this.log;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  scrollToBottom() {
    this.log.scrollTop = this.log.scrollHeight;
    this.stickToBottom = true;
  }

  // --- rendering: notices -----------------------------------------------------------------

  renderBadge() {
    this.badge.hidden = this.unread === 0;
    this.badgeCount.textContent = String(this.unread);
    this.badgeText.textContent = this.unread ? `, ${this.t.newMessages(this.unread)}` : '';
  }

  showStatus(kind) {
    window.clearTimeout(this.statusTimer);
    this.statusKind = kind;
    this.renderStatus();
    if (kind && TRANSIENT_STATUS_MS[kind]) {
      this.statusTimer = window.setTimeout(() => this.showStatus(null), TRANSIENT_STATUS_MS[kind]);
    }
  }

  renderStatus() {
    const kind = this.statusKind;
    const text = kind ? this.t[kind] : '';
    this.status.replaceChildren();
    if (!text) return;
    const good = kind === 'reconnected' || kind === 'cleared';
    this.status.appendChild(h('p', { class: `polku-status__text polku-status--${kind}` },
      icon(good ? ICONS.info : ICONS.warning), h('span', null, text)));
  }

  showError(message, extra) {
    this.errorEl.replaceChildren();
    if (!message) return;
    this.errorEl.appendChild(h('p', { class: 'polku-error__text' },
      icon(ICONS.warning), h('span', null, [message, extra].filter(Boolean).join(' '))));
  }

  announce(text) {
    // Emptied first so that the same words twice are announced twice.
    this.announcer.textContent = '';
    window.setTimeout(() => { this.announcer.textContent = text; }, 60);
  }

  queueDetail(state) {
    const t = this.t;
    const wait = formatWait(t, state.estimated_wait_secs);
    return [state.position != null ? t.queuePosition(state.position) : null, wait ? t.queueWait(wait) : null]
      .filter(Boolean).join(' ');
  }

  renderHandoff() {
    const t = this.t;
    const state = this.client.handoff || { state: 'bot' };
    let title = '';
    let detail = '';
    if (state.state === 'queued') {
      title = t.queuedTitle;
      detail = this.queueDetail(state);
    } else if (state.state === 'counsellor') {
      title = t.counsellorJoined(state.counsellor_name);
    } else if (state.state === 'unavailable') {
      // Nobody is online, but the conversation stays in the queue.
      title = t.unavailable;
      detail = t.unavailableDetail;
    } else if (state.state === 'closed') {
      title = t.closed;
    }
    const leaving = state.state !== 'queued' && state.state !== 'unavailable';
    if (leaving && this.leaveBtn.contains(this.activeElement())) this.input.focus();
    this.leaveBtn.hidden = leaving;
    this.handoffTitle.textContent = title;
    this.handoffDetail.textContent = detail;
    this.handoffDetail.hidden = !detail;
    this.handoffEl.hidden = !title;
    this.handoffEl.className = `polku-handoff polku-handoff--${state.state}`;
  }

  announceHandoff(next, previous) {
    if (!previous || next === previous) return;
    const t = this.t;
    if (next.state === 'queued') {
      const detail = this.queueDetail(next);
      if (previous.state !== 'queued') this.announce(`${t.queuedTitle}. ${detail}`);
      else if (previous.position !== next.position) this.announce(detail);
    } else if (next.state !== previous.state) {
      if (next.state === 'counsellor') this.announce(t.counsellorJoined(next.counsellor_name));
      else if (next.state === 'unavailable') this.announce(`${t.unavailable}. ${t.unavailableDetail}`);
      else if (next.state === 'closed') this.announce(t.closed);
    }
  }

  setTyping({ sender, typing }) {
    if (sender !== 'bot' && sender !== 'counsellor') return;
    this.typing[sender] = typing;
    window.clearTimeout(this.typingTimers[sender]);
    if (typing) {
      this.typingTimers[sender] = window.setTimeout(() => this.setTyping({ sender, typing: false }), TYPING_TIMEOUT_MS);
    }
    this.renderTyping();
  }

  renderTyping(force = false) {
    const who = this.typing.counsellor ? 'counsellor' : this.typing.bot ? 'bot' : null;
    if (!force && who === this.typingShown) return;
    this.typingShown = who;
    this.typingEl.replaceChildren();
    if (who) {
      this.typingEl.append(
        h('span', { class: 'polku-typing__dots', 'aria-hidden': 'true' }, h('span'), h('span'), h('span')),
        h('span', null, who === 'bot' ? this.t.botTyping : this.t.counsellorTyping));
      if (this.stickToBottom) this.scrollToBottom();
    }
  }
}
