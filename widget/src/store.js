// Browser storage for the conversation, under one key prefix.
//
// sessionStorage by default: the conversation survives reloads and page
// changes in the same tab and is gone when the tab closes (kind to shared
// computers). Storage can be unavailable (privacy modes, sandboxed frames,
// quota): then values live in memory for this page only.

const PREFIX = 'polku-chat:v1:';
const KEYS = ['session', 'transcript', 'outbox', 'handoff', 'open', 'language', 'draft'];

function pickBackend(kind) {
  if (kind === 'memory') return null;
  try {
    const backend = kind === 'local' ? window.localStorage : window.sessionStorage;
    const probe = PREFIX + 'probe';
    backend.setItem(probe, '1');
    backend.removeItem(probe);
    return backend;
  } catch (_) {
    return null;
  }
}

export function createStore(kind = 'session') {
  const backend = pickBackend(kind);
  const memory = new Map();

  function read(name) {
    if (memory.has(name)) return memory.get(name);
    return backend ? backend.getItem(PREFIX + name) : null;
  }

  return {
    get(name, fallback) {
      try {
        const raw = read(name);
        return raw == null ? fallback : JSON.parse(raw);
      } catch (_) {
        return fallback;
      }
    },
    set(name, value) {
      const raw = JSON.stringify(value);
      if (backend) {
        try {
          backend.setItem(PREFIX + name, raw);
          memory.delete(name);
          return;
        } catch (_) {
          // Quota or a revoked storage: keep the value for this page at least.
        }
      }
      memory.set(name, raw);
    },
    remove(name) {
      memory.delete(name);
      try {
        if (backend) backend.removeItem(PREFIX + name);
      } catch (_) { /* nothing to do */ }
    },
    /** Forget the conversation; interface preferences (language) stay. */
    clearConversation() {
      for (const key of KEYS) if (key !== 'language' && key !== 'open') this.remove(key);
    },
  };
}
