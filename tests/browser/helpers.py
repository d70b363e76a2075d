"""Helpers of the widget's browser tests. The widget lives in an open shadow
root: Playwright's CSS locators pierce it; page.evaluate code uses deepActive."""

from __future__ import annotations

import os

from playwright.sync_api import Page, expect

from bot.settings import PROJECT_ROOT

AXE_JS = PROJECT_ROOT / "widget" / "node_modules" / "axe-core" / "axe.min.js"

QUESTION_FI = "Miten haen toimeentulotukea?"

LOG = ".polku-log"
MESSAGES = ".polku-log .polku-msg"
RESIDENT_MESSAGES = ".polku-log .polku-msg--resident"
# Anything that is not the resident's, after the resident's (last) message.
ANSWERS_AFTER_RESIDENT = ".polku-log .polku-msg--resident ~ .polku-msg:not(.polku-msg--resident)"

DEEP_ACTIVE_JS = """() => {
  let a = document.activeElement;
  while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
  return a;
}"""


def open_demo(page: Page, base_url: str) -> None:
    page.goto(base_url + "/demo")
    page.wait_for_function("() => window.PolkuChat && !window.PolkuChat.pending")


def active_matches(page: Page, selector: str) -> bool:
    return page.evaluate(f"(sel) => {{ const a = ({DEEP_ACTIVE_JS})(); return !!a && a.matches(sel); }}", selector)


def tab_to(page: Page, selector: str, max_presses: int = 80) -> None:
    """Press Tab until the focused element (inside the shadow root too) matches selector."""
    for _ in range(max_presses):
        page.keyboard.press("Tab")
        if active_matches(page, selector):
            return
    raise AssertionError(f"{selector} was not reached with Tab in {max_presses} presses")


def open_with_keyboard(page: Page) -> None:
    tab_to(page, ".polku-launcher")
    page.keyboard.press("Enter")
    expect(page.locator(".polku-panel")).to_be_visible()
    assert active_matches(page, "textarea.polku-input"), "opening should put the focus in the message box"


def wait_for_welcome(page: Page) -> None:
    expect(page.locator(MESSAGES).first).to_be_visible(timeout=20_000)


def send_with_enter(page: Page, text: str) -> None:
    page.locator("textarea.polku-input").fill(text)
    page.locator("textarea.polku-input").press("Enter")


def wait_for_answer(page: Page, timeout: float = 30_000) -> None:
    expect(page.locator(ANSWERS_AFTER_RESIDENT).first).to_be_visible(timeout=timeout)


def session_value(page: Page, name: str):
    return page.evaluate("(k) => JSON.parse(sessionStorage.getItem('polku-chat:v1:' + k))", name)


def horizontal_overflow(page: Page) -> tuple[int, int]:
    return tuple(page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"))


def assert_no_horizontal_scroll(page: Page) -> None:
    scroll_width, client_width = horizontal_overflow(page)
    assert scroll_width <= client_width, f"page scrolls sideways: {scroll_width} > {client_width}"


def wait_for_animations(page: Page, selector: str) -> None:
    """Wait until the element's finite animations (the panel's opening rise) are over:
    a box measured mid-animation sits a fraction of a pixel off."""
    page.locator(selector).evaluate(
        "el => Promise.all(el.getAnimations()"
        ".filter(a => a.effect && a.effect.getComputedTiming().iterations !== Infinity)"
        ".map(a => a.finished.catch(() => null)))")


def assert_inside_viewport(page: Page, selector: str) -> None:
    wait_for_animations(page, selector)
    box = page.locator(selector).bounding_box()
    viewport = page.viewport_size
    assert box is not None, f"{selector} is not rendered"
    # Half a pixel either way is sub-pixel rounding of a scrolled, zoomed layout, not clipping.
    assert box["x"] >= -0.5 and box["y"] >= -0.5, f"{selector} starts outside the viewport: {box}"
    assert box["x"] + box["width"] <= viewport["width"] + 0.5, f"{selector} is wider than the viewport: {box}"
    assert box["y"] + box["height"] <= viewport["height"] + 0.5, f"{selector} is taller than the viewport: {box}"


def run_axe(page: Page) -> list[dict]:
    """axe-core's WCAG 2.0/2.1 A and AA violations on the whole page (open shadow roots included)."""
    # Evaluated through the DevTools protocol rather than added as a <script> tag: our pages' CSP
    # (script-src 'self') rightly refuses an inline script, and the test should not switch the CSP off.
    page.evaluate(AXE_JS.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate("""async () => {
      const r = await axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
        resultTypes: ['violations'],
      });
      return r.violations.map(v => ({
        id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map(n => ({ target: n.target, summary: n.failureSummary })),
      }));
    }""")
    return result


def contrast_ratio(rgb_a: tuple[float, float, float], rgb_b: tuple[float, float, float]) -> float:
    def luminance(rgb):
        def channel(c):
            c = c / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
        r, g, b = (channel(c) for c in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    la, lb = sorted((luminance(rgb_a), luminance(rgb_b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def parse_rgb(css_colour: str) -> tuple[float, float, float]:
    inner = css_colour[css_colour.index("(") + 1:css_colour.index(")")]
    parts = [p for p in inner.replace("/", " ").replace(",", " ").split() if p]
    return tuple(float(p) for p in parts[:3])  # type: ignore[return-value]


def save_screenshot(page: Page, name: str, full_page: bool = False) -> None:
    """A screenshot for a person to look at, only when POLKU_SCREENSHOT_DIR names a directory."""
    directory = os.environ.get("POLKU_SCREENSHOT_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        page.screenshot(path=os.path.join(directory, name), full_page=full_page)


# --- Socket.IO frames the page sends (the callback request tests) ---------------------

SOCKET_SPY_JS = """(() => {
  // Every text frame the page's WebSockets send; __polkuTamper(frame) may rewrite one.
  window.__polkuFrames = [];
  window.__polkuTamper = null;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (typeof data === 'string') {
      if (window.__polkuTamper) data = window.__polkuTamper(data);
      window.__polkuFrames.push(data);
    }
    return send.call(this, data);
  };
})();"""


def spy_on_socket(page: Page) -> None:
    """Record what the page sends over WebSocket, from its next navigation on."""
    page.add_init_script(SOCKET_SPY_JS)


def sent_events(page: Page, event: str) -> list:
    """Payloads of the Socket.IO events named `event` that the page has sent (spy_on_socket)."""
    return page.evaluate("""(name) => (window.__polkuFrames || [])
      .filter((f) => f.startsWith('42'))
      .map((f) => JSON.parse(f.slice(2)))
      .filter((packet) => packet[0] === name)
      .map((packet) => packet[1])""", event)


def all_session_storage(page: Page) -> str:
    """Every key and value of the page's sessionStorage, as one text."""
    return page.evaluate("""() => Object.keys(sessionStorage)
      .map((k) => k + '=' + sessionStorage.getItem(k)).join('\\n')""")


# --- the second factor of staff sign-in ----------------------------------------------------

# The tests' authenticator app: the TOTP secret each account enrolled (by server URL and
# username); the last time step each secret used is kept by next_totp_code's unused_code.
TOTP_SECRETS: dict[tuple[str, str], str] = {}


def next_totp_code(secret: str) -> str:
    """The authenticator's code, for a time step not used yet (one step ahead is accepted):
    the server tests' authenticator (tests/server/counsellor_helpers.unused_code), waited for
    without an event loop."""
    import time

    from tests.server.counsellor_helpers import unused_code

    while (code := unused_code(secret)) is None:
        time.sleep(1)
    return code


def second_factor(page: Page, base_url: str, username: str) -> list[str]:
    """After the password: enrol (the first time: the secret shown as text goes into the
    "app", the recovery codes page is passed) or give the code. The recovery codes, if shown."""
    import re

    expect(page).to_have_url(re.compile(r"/login/(enrol|second-factor)"))
    codes: list[str] = []
    if "/login/enrol" in page.url:
        secret = page.locator("#totp-secret").inner_text().replace(" ", "")
        TOTP_SECRETS[(base_url, username)] = secret
        page.locator("#code").fill(next_totp_code(secret))
        page.locator("#code").press("Enter")
        expect(page.locator("#continue")).to_be_visible()
        codes = page.locator(".recovery-codes li").all_inner_texts()
        page.locator("#continue").click()
    else:
        page.locator("#code").fill(next_totp_code(TOTP_SECRETS[(base_url, username)]))
        page.locator("#code").press("Enter")
    return codes
