"""The teaching dashboard in a real browser (issue 11): a clicked phonon mode moves, a
sample is checked against the reference, a pasted link restores the view and its
numbers, presentation mode enlarges the type, the HTML export opens offline, layer
views and pinned overlays show. Saves assets/figures/dashboard_{mode,reference_check,
layers,presentation,overlay}.png.
"""

from __future__ import annotations

import os
import re
import time
from urllib.parse import parse_qsl, urlparse

from test_dashboard_browser import (  # noqa: F401  (pytestmark: skipped without Chromium)
    FIGURES, done_of, phonon_plot_box, pytestmark, text_of, wait_for_text)

VF = re.compile(r"⟨v_F⟩ = ([0-9.]+ ± [0-9.]+)")


def open_page(browser, url, **kw):
    page = browser.new_page(viewport={"width": 1600, "height": 1000}, **kw)
    page.goto(url, wait_until="load", timeout=120_000)
    wait_for_text(page, ".mlepi-summary", lambda t: "atoms" in t)
    return page


def run_to_end(page, n: int, temperature: float, timeout: float = 300) -> str:
    """Press Run and wait for all ``n`` samples at ``temperature``; returns the shown '<v_F> ± se'."""
    page.locator(".mlepi-run button").click()
    at = f"at {temperature:g} K"
    wait_for_text(page, ".mlepi-progress", lambda t: done_of(t) >= n and at in t and "v_F" in t, timeout=timeout)
    wait_for_text(page, ".mlepi-message", lambda t: f"samples {at}" in t, timeout=60)
    return VF.search(text_of(page, ".mlepi-progress")).group(1)


def test_a_clicked_phonon_mode_is_named_and_moves(server, browser):
    page = open_page(browser, server + "?supercell=3")
    wait_for_text(page, ".mlepi-phonon-status", lambda t: "force constants" in t, timeout=180)
    box = phonon_plot_box(page)
    page.mouse.click(box["x"] + 0.6 * box["width"], box["y"] + 0.3 * box["height"])  # on the plot frame
    text = wait_for_text(page, ".mlepi-mode-text", lambda t: "cm^-1" in t, timeout=60)
    assert re.search(r"[0-9.]+ cm\^-1", text), text
    view = page.locator(".mlepi-mode-view").first
    view.scroll_into_view_if_needed()
    frames = set()
    for _ in range(6):
        frames.add(view.screenshot())
        time.sleep(0.23)
    assert len(frames) >= 3, "the animation's frames do not change"
    page.locator(".mlepi-mode").first.screenshot(path=str(FIGURES / "dashboard_mode.png"))
    page.close()


def test_a_pasted_link_restores_the_view_and_its_numbers(server, browser):
    first = open_page(browser, server + "?supercell=3&T=200&samples=4&seed=5&unit=thz")
    vf = run_to_end(first, 4, 200)
    link = first.url
    first.close()
    again = open_page(browser, link)
    time.sleep(1.0)
    assert dict(parse_qsl(urlparse(again.url).query)) == dict(parse_qsl(urlparse(link).query))  # every control
    assert again.locator(".mlepi-temperature input").input_value() == "200"
    assert again.locator(".mlepi-seed input").input_value() == "5"
    assert again.locator(".mlepi-supercell select").input_value() == "3"
    assert run_to_end(again, 4, 200) == vf  # the same numbers, to all shown digits
    again.close()


def test_presentation_mode_enlarges_the_type(server, browser):
    page = open_page(browser, server + "?supercell=3")
    size = "e => parseFloat(getComputedStyle(e).fontSize)"
    before = page.locator(".mlepi-summary").first.evaluate(size)
    page.locator(".mlepi-presentation button").click()
    deadline = time.time() + 10
    while time.time() < deadline and page.locator(".mlepi-summary").first.evaluate(size) <= before:
        time.sleep(0.1)
    after = page.locator(".mlepi-summary").first.evaluate(size)
    assert after >= 1.4 * before, (before, after)
    # the link is rewritten by its own message from the server, which may come after the styles'
    while time.time() < deadline and "presentation=1" not in page.url:
        time.sleep(0.1)
    assert "presentation=1" in page.url
    time.sleep(1.5)
    page.screenshot(path=str(FIGURES / "dashboard_presentation.png"))
    page.close()


def test_pinned_overlays_and_the_exported_page_opens_offline(server, browser, tmp_path):
    page = open_page(browser, server + "?supercell=3&samples=4", accept_downloads=True)
    run_to_end(page, 4, 300)
    page.locator(".mlepi-pin button").click()
    page.locator(".mlepi-temperature input").fill("0")
    page.locator(".mlepi-temperature input").press("Enter")
    time.sleep(1.0)
    vf = run_to_end(page, 4, 0)
    time.sleep(2.0)
    page.locator(".mlepi-monte-carlo").first.screenshot(path=str(FIGURES / "dashboard_overlay.png"))
    with page.expect_download() as info:
        page.locator(".mlepi-html button").click()
    path = tmp_path / "view.html"
    info.value.save_as(path)
    page.close()
    context = browser.new_context(offline=True)
    offline = context.new_page()
    offline.goto(path.as_uri(), wait_until="load")
    offline.locator("canvas").first.wait_for(timeout=30_000)
    assert offline.locator(".bk-Canvas, canvas").count() >= 3
    deep_text = offline.evaluate("""() => { const walk = n => (n.shadowRoot ? walk(n.shadowRoot) : '') +
        Array.from(n.childNodes).map(c => c.nodeType === 3 ? c.textContent : walk(c)).join(' ');
        return walk(document.body); }""")  # Bokeh draws its Div in a shadow root
    assert vf.split(" ± ")[0] in deep_text and vf.split(" ± ")[1] in deep_text
    assert "pinned" in deep_text  # the pinned 300 K run travels with the page
    context.close()


def test_a_sample_checked_against_the_reference_and_the_layer_views(server, browser):
    # GFN1-xTB needs the 6x6 cell; two samples suffice to check one (docs/dashboard.md's screenshot,
    # refreshed with MLEPI_SCREENSHOTS=1, shows the last of a 10-sample run)
    n = 10 if os.environ.get("MLEPI_SCREENSHOTS") == "1" else 2
    page = open_page(browser, server + f"?supercell=6&samples={n}&T=300")
    run_to_end(page, n, 300, timeout=600)
    page.locator(".mlepi-check button").first.click()
    text = wait_for_text(page, ".mlepi-check-text", lambda t: "meV" in t or "failed" in t, timeout=600)
    assert re.search(r"= [0-9.]+ meV", text), text
    time.sleep(1.5)
    page.locator(".mlepi-reference-check").first.screenshot(path=str(FIGURES / "dashboard_reference_check.png"))

    page.locator(".mlepi-layers-toggle input").check()
    page.locator(".mlepi-layers").first.wait_for(state="visible", timeout=30_000)
    page.locator(".mlepi-layers canvas").first.wait_for(timeout=60_000)
    time.sleep(3.0)
    page.locator(".mlepi-layers").first.screenshot(path=str(FIGURES / "dashboard_layers.png"))
    page.close()


SOCKETS: dict[int, list] = {}  # id(page) -> the websockets it opened


def websocket_frames(page, seconds: float) -> int:
    """Messages the page receives from the server in ``seconds`` (its Bokeh websocket)."""
    count = [0]
    for ws in SOCKETS.get(id(page), []):
        ws.on("framereceived", lambda _frame: count.__setitem__(0, count[0] + 1))
    page.wait_for_timeout(int(1000 * seconds))
    return count[0]


def test_an_idle_page_gets_no_messages_and_a_shown_mode_animates(server, browser):
    """Nothing moves on the page, so the server sends it nothing; once a mode is shown its
    frames arrive (the animation's 80 ms clock runs only while there is something to move)."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.on("websocket", lambda ws: SOCKETS.setdefault(id(page), []).append(ws))
    page.goto(server + "?supercell=3", wait_until="load", timeout=120_000)
    wait_for_text(page, ".mlepi-phonon-status", lambda t: "force constants" in t, timeout=180)
    page.wait_for_timeout(3000)  # the dispersion is drawn
    for _ in range(30):  # the first drawing may still be arriving on a busy machine: until a quiet second
        if websocket_frames(page, 1.0) == 0:
            break
    idle = websocket_frames(page, 3.0)
    box = phonon_plot_box(page)
    page.mouse.click(box["x"] + 0.6 * box["width"], box["y"] + 0.3 * box["height"])
    wait_for_text(page, ".mlepi-mode-text", lambda t: "cm^-1" in t, timeout=60)
    moving = websocket_frames(page, 3.0)
    page.close()
    assert idle <= 2, f"an idle page received {idle} messages in 3 s"
    assert moving >= 15, f"an animated mode sent only {moving} frames in 3 s"
