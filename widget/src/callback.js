// The callback request form's checks, the same as the server's
// (chat_server/counsellor/callbacks.py): the resident hears about a mistake at once, by
// the field, instead of a refusal from the server.

export const NAME_MAX_CHARS = 100;
export const PREFERRED_TIME_MAX_CHARS = 100;
const PHONE_MAX_CHARS = 32;
const PHONE_MIN_DIGITS = 6;
const PHONE_MAX_DIGITS = 15; // E.164
const PHONE_RE = /^\+?[0-9][0-9 ()./-]*$/;
const CONTROL_RE = /\p{C}/u;

/** Runs of white space as one space, no space at the ends (as the server stores it). */
function squeeze(value) {
  return String(value || '').split(/\s+/).filter(Boolean).join(' ');
}

export function phoneDigits(phone) {
  return (String(phone).match(/[0-9]/g) || []).join('');
}

function checkPhone(value) {
  const phone = squeeze(value);
  if (!phone) return { error: 'callbackPhoneMissing' };
  const digits = phoneDigits(phone).length;
  if (phone.length > PHONE_MAX_CHARS || !PHONE_RE.test(phone) || digits < PHONE_MIN_DIGITS || digits > PHONE_MAX_DIGITS) {
    return { error: 'callbackPhoneInvalid' };
  }
  return { value: phone };
}

function checkText(value, maxChars) {
  const text = squeeze(value);
  if (Array.from(text).length > maxChars) return { error: 'callbackTooLong', max: maxChars };
  if (CONTROL_RE.test(text)) return { error: 'callbackBadCharacters' };
  return { value: text || null };
}

/**
 * { phone, name, preferred_time, consent } as typed -> { values, errors }.
 * errors maps a field to { error: <i18n key>, max? }, in the form's order.
 */
export function checkCallbackForm(form) {
  const checks = {
    phone: checkPhone(form.phone),
    name: checkText(form.name, NAME_MAX_CHARS),
    preferred_time: checkText(form.preferred_time, PREFERRED_TIME_MAX_CHARS),
    consent: form.consent === true ? { value: true } : { error: 'callbackConsentMissing' },
  };
  const values = {};
  const errors = {};
  for (const [field, check] of Object.entries(checks)) {
    if (check.error) errors[field] = check;
    else values[field] = check.value;
  }
  return { values, errors };
}
