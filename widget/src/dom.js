// A tiny element builder: h('button', { class: 'x', onclick }, 'text', child).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      el.className = value;
    } else {
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** A decorative icon from path data (hidden from assistive technology). */
export function icon(paths, className = 'polku-icon') {
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', className);
  for (const d of [].concat(paths)) {
    const path = document.createElementNS(SVG_NS, 'path');
    path.setAttribute('d', d);
    svg.appendChild(path);
  }
  return svg;
}

export const ICONS = {
  chat: 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm0 2v12h2v1.8L8.3 18H20V6H4zm3 3h10v2H7V9zm0 3h7v2H7v-2z',
  close: 'M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12 19 17.6 17.6 19 12 13.4 6.4 19 5 17.6 10.6 12 5 6.4z',
  chevronDown: 'M12 15.4 5.3 8.7l1.4-1.4 5.3 5.3 5.3-5.3 1.4 1.4z',
  send: 'M3 20.5v-6.2L11 12 3 9.7V3.5L22 12 3 20.5z',
  info: 'M12 2a10 10 0 1 1 0 20 10 10 0 0 1 0-20zm0 2a8 8 0 1 0 0 16 8 8 0 0 0 0-16zm-1 7h2v6h-2v-6zm0-4h2v2h-2V7z',
  warning: 'M12 2 1 21h22L12 2zm0 4.3L19.5 19h-15L12 6.3zM11 10v5h2v-5h-2zm0 6v2h2v-2h-2z',
};

/** Message text with web addresses as links; never parsed as HTML. */
export function richText(text, newTabNote, noteLang) {
  const frag = document.createDocumentFragment();
  const pattern = /\bhttps?:\/\/[^\s<>"]+|\bwww\.[^\s<>"]+/gi;
  let last = 0;
  let match;
  while ((match = pattern.exec(text)) !== null) {
    let url = match[0];
    // Sentence punctuation after an address belongs to the sentence.
    const trailing = url.match(/[.,;:!?)\]'»”]+$/);
    if (trailing) url = url.slice(0, -trailing[0].length);
    frag.appendChild(document.createTextNode(text.slice(last, match.index)));
    const href = /^www\./i.test(url) ? `https://${url}` : url;
    frag.appendChild(h('a', { href, target: '_blank', rel: 'noopener noreferrer' }, url,
      newTabNote ? h('span', { class: 'polku-sr', lang: noteLang }, ` ${newTabNote}`) : null));
    last = match.index + url.length;
  }
  frag.appendChild(document.createTextNode(text.slice(last)));
  return frag;
}
