"""The portal's layout in a real headless Chromium against Django's live server: a model's
build log is above the fold while it builds or failed, and at a phone's 390 px the
navigation stays on one line, tables scroll instead of losing columns, and the Copy
button covers no code. Models are put in their states directly in the database.
"""

from __future__ import annotations

import pytest
from django.test import Client

from models_app.models import MLModel, ModelBuild
from tests.helpers.browser import screenshot
from tests.helpers.cast import PASSWORD

pytestmark = [pytest.mark.browser]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


def _page(browser, live_server, user, viewport):
    context = browser.new_context(viewport=viewport)
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    return page


def _model(cast, status: str, log: str, name: str = "Credit score") -> MLModel:
    model = MLModel.objects.create(
        name=name, group=cast.group, operation="Sync", model_reference="score", python_version="3.11",
        input_type="json", source_file="app.py", model_file="model.pkl", requirements_file="requirements.txt",
        status=status, created_by=cast.owner,
    )  # fmt: skip
    build_status = {"Deployed": "Succeeded", "Failed": "Failed"}.get(status, "Running")
    ModelBuild.objects.create(model=model, number=1, status=build_status, log=log)
    return model


@pytest.mark.parametrize("status", ["Building", "Failed"])
def test_the_build_log_is_above_the_fold_while_building_or_failed(browser, live_server, cast, status):
    log = "\n".join(f"step {n}" for n in range(30)) + "\nBuild failed: the smoke test raised"
    model = _model(cast, status, log)
    page = _page(browser, live_server, cast.owner, DESKTOP)
    page.goto(f"{live_server.url}/models/{model.hash}/")
    top = page.eval_on_selector("#build-log", "e => e.getBoundingClientRect().top")
    assert top < DESKTOP["height"] - 150, top  # its first lines show without scrolling
    screenshot(page, f"model-{status.lower()}-log-first")
    page.context.close()


def test_a_deployed_models_build_log_stays_below_its_use(browser, live_server, cast):
    model = _model(cast, "Deployed", "Build succeeded: model deployed.")
    page = _page(browser, live_server, cast.owner, DESKTOP)
    page.goto(f"{live_server.url}/models/{model.hash}/")
    order = page.eval_on_selector_all(".layout > .stack > section", "s => s.map(e => e.id)")
    assert order.index("build") > order.index("try-it"), order
    page.context.close()


def test_at_390_px_nav_tables_and_copy_buttons_fit(browser, live_server, cast):
    cast.owner.is_staff = True  # the longest navigation: People and Admin too
    cast.owner.save()
    for n in range(3):
        _model(cast, "Deployed", "Build succeeded: model deployed.", name=f"Scorer with a long name {n}")
    model = MLModel.objects.first()
    page = _page(browser, live_server, cast.owner, PHONE)

    page.goto(f"{live_server.url}/")
    nav = page.eval_on_selector(
        ".mainnav",
        "n => ({height: n.getBoundingClientRect().height, link: n.querySelector('a').getBoundingClientRect().height})",
    )
    assert nav["height"] <= nav["link"] + 8, nav  # one line of links (it scrolls sideways)
    assert (
        page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    )  # the page itself never scrolls sideways
    screenshot(page, "phone-dashboard")

    for url in ("/", "/models/", f"/groups/{cast.group.name}/"):
        page.goto(f"{live_server.url}{url}")
        tables = page.eval_on_selector_all(
            "main table",
            """ts => ts.map(t => {
                 const wrap = t.closest('.table-wrap');
                 const cells = [...t.querySelectorAll('thead th')];
                 return {
                   wrapped: !!wrap,
                   scrolls: wrap ? ['auto', 'scroll'].includes(getComputedStyle(wrap).overflowX) : false,
                   inside: wrap ? wrap.getBoundingClientRect().right <= innerWidth + 1 : false,
                   reach: wrap ? t.getBoundingClientRect().width <= wrap.scrollWidth + 1 : false,
                   squeezed: cells.filter(c => c.scrollWidth > c.clientWidth + 1).map(c => c.textContent),
                 };
               })""",
        )
        assert tables, url
        for table in tables:
            assert table["wrapped"] and table["scrolls"] and table["inside"] and table["reach"], (url, table)
            assert table["squeezed"] == [], (url, table)  # no column squeezed out of its header

    page.goto(f"{live_server.url}/models/{model.hash}/")
    overlaps = page.eval_on_selector_all(
        ".code-block",
        """blocks => blocks.filter(b => b.offsetParent).map(b => {
             const button = b.querySelector('.btn-copy').getBoundingClientRect();
             const range = document.createRange();
             range.selectNodeContents(b.querySelector('pre'));
             const pre = b.querySelector('pre').getBoundingClientRect();
             const hits = [...range.getClientRects()].filter(r => r.width && r.right > pre.left && r.left < pre.right
               && r.left < button.right && r.right > button.left && r.top < button.bottom && r.bottom > button.top);
             return hits.length;
           })""",
    )
    assert overlaps and all(n == 0 for n in overlaps), overlaps
    screenshot(page, "phone-model-page")
    page.context.close()
