// Polku chat widget entry point. One script tag on any page:
//   <script src="https://chat.example/widget/polku-chat.js"
//           data-server="https://chat.example" data-language="fi" defer></script>

import { ChatClient } from './client.js';
import { ChatView } from './view.js';
import { createStore } from './store.js';
import { normalizeLanguage } from './i18n.js';

const VERSION = '0.1.0';

function findScript() {
  return document.currentScript
    || document.querySelector('script[data-polku-chat]')
    || document.querySelector('script[src*="polku-chat"]');
}

function readConfig(script) {
  const data = (script && script.dataset) || {};
  let scriptOrigin = window.location.origin;
  try {
    if (script && script.src) scriptOrigin = new URL(script.src, window.location.href).origin;
  } catch (_) { /* keep the page's origin */ }
  const pageLanguage = normalizeLanguage(document.documentElement.getAttribute('lang'));
  return {
    server: data.server || scriptOrigin,
    language: normalizeLanguage(data.language) || pageLanguage || 'fi',
    open: data.open === 'true',
    storage: ['session', 'local', 'memory'].includes(data.storage) ? data.storage : 'session',
  };
}

function start(config) {
  const store = createStore(config.storage);
  // The resident's own choice in the switcher wins over the page's default.
  const language = normalizeLanguage(store.get('language', null)) || config.language;
  let view = null;
  const client = new ChatClient({
    serverUrl: config.server,
    store,
    getLanguage: () => (view ? view.lang : language),
  });

  const host = document.createElement('div');
  host.id = 'polku-chat';
  host.setAttribute('data-polku-chat-version', VERSION);
  document.body.appendChild(host);
  view = new ChatView({ client, store, language, host });

  if (config.open || store.get('open', false)) view.open({ focus: false });
  // Keep an ongoing conversation live (counsellor messages, unsent messages).
  else if (client.hasConversation()) client.connect();

  window.PolkuChat = {
    version: VERSION,
    open: () => view.open(),
    close: () => view.close(),
    toggle: () => view.toggle(),
    setLanguage: (code) => view.setLanguage(normalizeLanguage(code)),
  };
  window.dispatchEvent(new CustomEvent('polku-chat:ready', { detail: { version: VERSION } }));
}

(function boot() {
  if (window.PolkuChat) return; // the script was included twice
  const config = readConfig(findScript());
  window.PolkuChat = { version: VERSION, pending: true };
  if (document.body) start(config);
  else document.addEventListener('DOMContentLoaded', () => start(config), { once: true });
}());
