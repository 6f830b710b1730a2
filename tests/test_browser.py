"""The notebooks in a real browser: JupyterLab in headless Chromium, driven by Playwright.

What a reader does, checked end to end: open a notebook, run all cells, see no error, see the widgets (sliders,
buttons, images) rendered by the JupyterLab widget manager, and use them -- choosing another degradation family
in 01's task explorer redraws its picture; moving 03's adaptation-step slider changes the picture and the PSNR
text; 03's family explorer is moved to its last step for the README's screenshot. Screenshots go to
``artifacts/browser_<notebook>.png``.

The server runs on a temporary copy of ``notebooks/`` (nothing in the repository changes). Selectors and widget
descriptions this test relies on (notebook authors: keep them):

- task explorer (01): a ``Dropdown`` described ``family`` with at least two options, a ``severity`` slider and a
  ``new task`` button, in the same output as an ``ipywidgets.Image`` (``TaskExplorer`` builds these);
- adaptation explorer (03): an ``IntSlider`` described ``step`` in the same output as an ``ipywidgets.Image`` and
  an ``HTML`` whose text starts with ``step <k>:`` and names PSNRs in ``dB`` (``AdaptationExplorer``);
- family explorer (03): a ``Dropdown`` described ``family`` (first option ``tone_curve``) in the same output as an
  ``IntSlider`` described ``step`` (``FamilyAdaptationExplorer``); its picture at the last step is the README's
  screenshot (``artifacts/browser_03_meta_testing_family_widget.png``, copied to
  ``docs/images/adaptation_explorer_jupyterlab.png``);
- the last code cell of 00 prints ``all checks passed``.

DOM (JupyterLab 4, ipywidgets 8): outputs ``.jp-OutputArea-output``, widgets ``.jupyter-widgets``, sliders
``.widget-slider`` (handle ``.noUi-handle``, readout ``.widget-readout``), buttons ``button.jupyter-button``, images
``img.widget-image``, dropdowns ``.widget-dropdown select``, descriptions ``label.widget-label``, HTML text
``.widget-html-content``; errors are read from the notebook model (``output_type == "error"``) and from
``.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]`` containing ``Traceback``.

Skipped only when Playwright or a Chromium executable cannot be found. Run alone with ``pytest -m browser``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
TASKS_NOTEBOOK = "01_tasks.ipynb"
ADAPTATION_NOTEBOOK = "03_meta_testing.ipynb"
RUN_TIMEOUT_S = 300.0  # a notebook run in the browser; generous because CI machines may be loaded
UI_TIMEOUT_S = 60.0

# DOM selectors (JupyterLab 4 + ipywidgets 8)
OUTPUT = ".jp-OutputArea-output"
STDERR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
WIDGET = ".jupyter-widgets"
SLIDER = ".widget-slider"
BUTTON = "button.jupyter-button"
IMAGE = "img.widget-image"
DROPDOWN = ".widget-dropdown"
HTML_TEXT = ".widget-html-content"
LABEL = "label.widget-label"


@pytest.fixture(scope="module")
def browser_session(tmp_path_factory):
    """(lab, browser context, notebook names) for the module; everything is shut down afterwards."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the browser test needs Playwright for Python (pip install playwright); it is not installed")
    import browser_util as bu

    chromium = bu.find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found ($METALEARN_KIT_CHROMIUM, /usr/bin/chromium, or chromium/google-chrome on "
                    "PATH); install Debian's chromium (apt-get install chromium) to run the browser test")

    work = tmp_path_factory.mktemp("browser")
    root = work / "notebooks"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    names = {"welcome": "00_welcome.ipynb", "tasks": TASKS_NOTEBOOK, "adaptation": ADAPTATION_NOTEBOOK}
    missing = [name for name in names.values() if not (root / name).exists()]
    assert not missing, f"notebooks missing from {NOTEBOOKS}: {missing}"

    # the browser's processes carry a marker too, to check that none outlives the test
    browser_marker = secrets.token_hex(8)
    started = time.monotonic()
    with bu.jupyter_lab(root, work) as lab, sync_playwright() as playwright:
        print(f"JupyterLab answered after {time.monotonic() - started:.1f} s")
        context = playwright.chromium.launch_persistent_context(
            str(work / "chromium-profile"), executable_path=chromium, headless=True, args=bu.CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000}, env={**os.environ, bu.MARKER: browser_marker})
        try:
            yield lab, context, names
        finally:
            context.close()
    left = bu.leftover_processes(browser_marker)
    assert not left, f"Chromium processes outlived the test: {left}"
    print(f"browser session: {time.monotonic() - started:.1f} s")


# ---------------------------------------------------------------------------------------------- helpers
def _wait(condition, timeout: float, what: str, poll: float = 0.4):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def _state(page):
    import browser_util as bu

    return page.evaluate(bu.JS_NOTEBOOK_STATE)


def open_and_run(lab, context, notebook: str):
    """Open ``notebook`` in a new tab, wait for its kernel, run all cells and wait for the last one; return the
    page. Fails at once on an error output, with the error."""
    import browser_util as bu

    started = time.monotonic()
    page = context.new_page()
    page.goto(lab.page_url(notebook), timeout=UI_TIMEOUT_S * 1000)
    _wait(lambda: (s := _state(page)).get("ready") and s.get("status") == "idle" and s.get("connection") == "connected",
          UI_TIMEOUT_S, f"the kernel of {notebook} to be connected and idle\n{lab.log()}")
    opened = time.monotonic()
    # the saved notebook holds outputs and execution counts of its last run: clear them, so a count below can
    # only come from this run
    page.evaluate(bu.JS_CLEAR_OUTPUTS)
    _wait(lambda: not any(c["count"] for c in _state(page)["cells"]), UI_TIMEOUT_S,
          f"the saved outputs of {notebook} to be cleared")
    page.evaluate(bu.JS_RUN_ALL)  # fire and forget: the command's promise resolves only when all cells ran

    def finished():
        state = _state(page)
        errors = [f"cell {c['index']}: {e}" for c in state["cells"] for e in c["errors"]]
        assert not errors, f"{notebook} raised an error in the browser:\n" + "\n".join(errors)
        return (state["status"] == "idle" and state["pending"] == 0 and all(c["count"] for c in state["cells"])
                and state)

    state = _wait(finished, RUN_TIMEOUT_S, f"all cells of {notebook} to run")
    print(f"{notebook}: opened with an idle kernel in {opened - started:.1f} s, ran all cells in "
          f"{time.monotonic() - opened:.1f} s")
    counts = [c["count"] for c in state["cells"]]
    assert counts == sorted(counts) and len(set(counts)) == len(counts), f"cells ran out of order: {counts}"
    return page


def check_clean_outputs(page, notebook: str) -> None:
    tracebacks = [t for t in page.locator(STDERR_OUTPUT).all_text_contents() if "Traceback" in t]
    assert not tracebacks, f"{notebook} printed a traceback to stderr:\n" + "\n".join(tracebacks)
    # widget views render asynchronously: wait for the placeholders to go before judging
    _wait(lambda: "Loading widget..." not in "\n".join(page.locator(OUTPUT).all_text_contents()), UI_TIMEOUT_S,
          f"the widgets of {notebook} to finish loading")
    texts = "\n".join(page.locator(OUTPUT).all_text_contents())
    for problem in ("Error displaying widget", "Failed to load model class", "Failed to create view"):
        assert problem not in texts, f"{notebook}: a widget did not render ({problem!r})"


def check_widgets_render(page, notebook: str) -> None:
    for selector, what in ((WIDGET, "widgets"), (SLIDER, "sliders"), (BUTTON, "buttons"), (IMAGE, "images")):
        _wait(lambda s=selector: page.locator(s).count() > 0, UI_TIMEOUT_S, f"{what} ({selector}) in {notebook}")
    # images really decoded (a broken PNG has naturalWidth 0)
    widths = page.locator(IMAGE).evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert widths and all(w > 0 for w in widths), f"{notebook}: undecodable widget images, widths {widths}"


def widget_output(page, control: str, description: str):
    """The output area holding a ``control`` (CSS) described ``description`` (its label's exact text)."""
    label = page.locator(LABEL, has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
    area = page.locator(OUTPUT).filter(has=page.locator(control).filter(has=label)).first
    area.wait_for(state="visible", timeout=UI_TIMEOUT_S * 1000)
    return area, area.locator(control).filter(has=label).first


def screenshot(page, area, artifacts_dir: str, name: str) -> None:
    """The JupyterLab window with the widget in view, and the widget's output alone (``_widget``)."""
    area.scroll_into_view_if_needed()
    page.screenshot(path=str(Path(artifacts_dir) / f"browser_{name}.png"))
    area.screenshot(path=str(Path(artifacts_dir) / f"browser_{name}_widget.png"))


def close(lab, page) -> None:
    """Shut the notebook's kernel down (frees memory for the next notebook) and close the tab."""
    import contextlib

    with contextlib.suppress(Exception):
        for session in lab.api("/api/sessions"):
            lab.api(f"/api/sessions/{session['id']}", method="DELETE")
    page.close()


# ---------------------------------------------------------------------------------------------- tests
def test_welcome_notebook_runs_in_jupyterlab(browser_session, artifacts_dir):
    lab, context, names = browser_session
    page = open_and_run(lab, context, names["welcome"])
    try:
        check_clean_outputs(page, names["welcome"])
        last = page.locator(".jp-CodeCell").last.locator(OUTPUT).all_text_contents()
        assert any("all checks passed" in t for t in last), f"last cell printed {last}"
        page.screenshot(path=str(Path(artifacts_dir) / f"browser_{Path(names['welcome']).stem}.png"))
    finally:
        close(lab, page)


def test_task_explorer_redraws_when_the_family_changes(browser_session, artifacts_dir):
    lab, context, names = browser_session
    notebook = names["tasks"]
    page = open_and_run(lab, context, notebook)
    try:
        check_clean_outputs(page, notebook)
        check_widgets_render(page, notebook)
        area, family = widget_output(page, DROPDOWN, "family")
        image = area.locator(IMAGE).first
        _wait(lambda: image.get_attribute("src"), UI_TIMEOUT_S, "the task explorer's image")
        before = image.get_attribute("src")
        select = family.locator("select")
        options = select.locator("option").all_text_contents()
        current = select.evaluate("s => s.options[s.selectedIndex].text")
        assert len(options) >= 2, f"the family dropdown offers {options}"
        choice = next(o for o in options if o != current)
        select.select_option(label=choice)
        _wait(lambda: image.get_attribute("src") != before, UI_TIMEOUT_S,
              f"the task explorer to redraw after choosing family {choice!r}")
        assert select.evaluate("s => s.options[s.selectedIndex].text") == choice
        print(f"{notebook}: family {current!r} -> {choice!r} redrew the task explorer")
        assert area.locator(BUTTON, has_text="new task").count() == 1
        assert area.locator(SLIDER).filter(has=page.locator(LABEL, has_text="severity")).count() == 1
        check_clean_outputs(page, notebook)
        screenshot(page, area, artifacts_dir, Path(notebook).stem)
    finally:
        close(lab, page)


def test_adaptation_step_slider_changes_image_and_psnr_text(browser_session, artifacts_dir):
    lab, context, names = browser_session
    notebook = names["adaptation"]
    page = open_and_run(lab, context, notebook)
    try:
        check_clean_outputs(page, notebook)
        check_widgets_render(page, notebook)
        area, slider = widget_output(page, SLIDER, "step")
        area.scroll_into_view_if_needed()  # a reader looks at it before moving the slider
        image = area.locator(IMAGE).first
        text = area.locator(HTML_TEXT).filter(has_text=re.compile(r"^\s*step \d+:")).first
        _wait(lambda: image.get_attribute("src"), UI_TIMEOUT_S, "the adaptation explorer's image")
        before_src, before_text = image.get_attribute("src"), text.text_content()
        assert "dB" in before_text, f"the step text shows no PSNR: {before_text!r}"
        readout = slider.locator(".widget-readout")
        start = int(readout.text_content())
        handle = slider.locator(".noUi-handle").first
        handle.focus()
        # move it by the keyboard, as a reader can: one step left if at the end, else one step right
        handle.press("ArrowLeft" if start > 0 else "ArrowRight")
        _wait(lambda: text.text_content() != before_text and image.get_attribute("src") != before_src, UI_TIMEOUT_S,
              "the adaptation explorer to show another step after moving the step slider")
        after = text.text_content()
        moved_to = int(readout.text_content())
        assert moved_to != start and after.strip().startswith(f"step {moved_to}:"), (start, moved_to, after)
        check_clean_outputs(page, notebook)
        screenshot(page, area, artifacts_dir, Path(notebook).stem)
        family_explorer_at_its_last_step(page, notebook, artifacts_dir)
    finally:
        close(lab, page)


def family_explorer_at_its_last_step(page, notebook: str, artifacts_dir: str) -> None:
    """03's family explorer (default family: tone curve) moved to its last step by the keyboard, its picture saved
    as ``artifacts/browser_03_meta_testing_family_widget.png`` -- the README's
    ``docs/images/adaptation_explorer_jupyterlab.png`` is a copy of it."""
    area, family = widget_output(page, DROPDOWN, "family")
    select = family.locator("select")
    assert select.evaluate("s => s.options[s.selectedIndex].text") == "tone_curve", "the default family changed"
    slider = area.locator(SLIDER).filter(has=page.locator(LABEL, has_text=re.compile(r"^\s*step\s*$"))).first
    text = area.locator(HTML_TEXT).filter(has_text=re.compile(r"^\s*step \d+:")).first
    handle = slider.locator(".noUi-handle").first
    readout = slider.locator(".widget-readout")
    last = int(float(handle.get_attribute("aria-valuemax")))
    area.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(last - int(readout.text_content())):
        handle.press("ArrowRight")
    _wait(lambda: text.text_content().strip().startswith(f"step {last}:"), UI_TIMEOUT_S,
          f"the family explorer to show its last step {last}")
    assert "meta-learned" in text.text_content() and "dB" in text.text_content(), text.text_content()
    check_clean_outputs(page, notebook)
    screenshot(page, area, artifacts_dir, f"{Path(notebook).stem}_family")
