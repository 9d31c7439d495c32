"""The chat page (examples/static/chat.html) in a real headless Chromium: the browser's own
EventSource, cut twice by the server mid-answer, resumes token-exact; presence counts pages."""

from __future__ import annotations

from examples import chat


async def test_the_page_survives_two_cuts_with_the_exact_answer_and_counts_watchers(browser, serve):
    server = await serve(chat.create_app())
    page = await browser.new_page()
    await page.goto(server.url("/chat"))
    await page.wait_for_function(
        "document.getElementById('watching').textContent === '1 person watching'"
    )
    await page.fill("input[name=tokens]", "600")
    await page.fill("input[name=pace]", "0.004")
    prompt = await page.input_value("textarea[name=prompt]")
    await page.click("button[type=submit]")
    tokens = "+document.getElementById('count').textContent"
    for cut, after in ((1, 100), (2, 250)):
        await page.wait_for_function(f"{tokens} >= {after}")
        await page.click("#cut")
        await page.wait_for_function(
            f"document.querySelectorAll('#resumes li').length === {cut}", timeout=15_000
        )
    other = await browser.new_page()
    await other.goto(server.url("/chat"))
    await page.wait_for_function(
        "document.getElementById('watching').textContent === '2 people watching'"
    )
    await page.wait_for_function("document.body.dataset.ended === 'complete'", timeout=30_000)
    assert await page.text_content("#answer") == "".join(chat.answer(prompt, 600))
    assert await page.text_content("#connections") == "3"
    resumes = await page.eval_on_selector_all(
        "#resumes li", "items => items.map(i => i.textContent)"
    )
    assert all("reconnected with Last-Event-ID" in r for r in resumes)
    await other.close()
    await page.wait_for_function(
        "document.getElementById('watching').textContent === '1 person watching'"
    )
    await page.close()
