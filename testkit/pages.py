"""Driving the Gradio app in Playwright: picking from a dropdown, and what a test must wait for that the page
does not show."""

from __future__ import annotations

# Two animation frames, then the task after them.
AFTER_NEXT_FRAMES_JS = ("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame("
                        "() => setTimeout(done))))")


def reveal(page, opener, shown: str) -> None:
    """Click ``opener`` (a tab or an accordion's header), wait for the control ``shown`` (a selector) it shows,
    then for the frame after which Gradio sets the shown controls' properties again, their stored values
    included (gradio 6.31, ``render_previously_invisible_children``): a value typed before that frame is
    overwritten without a change event. Users never type that fast; a test does, and on a busy machine the
    frame comes late (clean-clone CI runs saw beam size 2 typed and reset to 1, 3 times in 7)."""
    opener.click()
    page.locator(shown).wait_for()
    page.evaluate(AFTER_NEXT_FRAMES_JS)


def select(page, elem_id: str, option: str) -> None:
    """Pick ``option`` in the dropdown ``elem_id``, as a user does: open its list, click the option."""
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()
