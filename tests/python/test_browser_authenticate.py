"""payground's hosted 3-D Secure page in a real browser (Chromium), as a card holder
meets it: the merchant confirms with a return_url, the browser opens
next_action.redirect_to_url.url, the card holder clicks, and the browser lands back
on the merchant's site. Also: the page's stylesheet is cached, the page works from
the keyboard alone, and the publishable-key routes answer a page on another origin
(CORS) while the secret-key routes stay closed to it."""
import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import stripe

pytest_plugins = ["browser"]

ROOT = Path(__file__).resolve().parents[2]
README_SCREENSHOT = ROOT / "docs" / "images" / "three-d-secure.png"


def confirm_3ds(shop=None, **kw):
    """A PaymentIntent confirmed with a 3-D Secure card; with the shop's return URL when given."""
    params = dict(amount=2000, currency="usd", payment_method="pm_card_threeDSecure2Required", confirm=True)
    if shop is not None:
        params["return_url"] = shop.url("/checkout/complete?order=1042")
    params.update(kw)
    pi = stripe.PaymentIntent.create(**params)
    assert pi.status == "requires_action"
    return pi


def returned_query(page):
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


@pytest.mark.parametrize("action,redirect_status", [("Complete", "succeeded"), ("Fail", "failed")])
def test_the_card_holder_chooses_and_lands_on_the_return_url(page, account, shop, action, redirect_status):
    pi = confirm_3ds(shop)
    assert pi.next_action.type == "redirect_to_url"
    response = page.goto(pi.next_action.redirect_to_url.url)
    assert response.status == 200
    assert page.get_by_role("heading", level=1).inner_text() == "3D Secure test payment"
    assert page.locator("#amount").inner_text() == "20.00 USD"
    assert page.locator("#card").inner_text().endswith("•••• 3220")
    assert page.title() == "3D Secure test payment"
    assert page.console_log.errors() == []

    page.get_by_role("button", name=f"{action} authentication").click()
    page.wait_for_url(lambda u: u.startswith(shop.url("/checkout/complete?")))
    assert page.locator("#shop").inner_text() == "Back at the shop"
    assert returned_query(page) == {
        "order": "1042",
        "payment_intent": pi.id,
        "payment_intent_client_secret": pi.client_secret,
        "redirect_status": redirect_status,
    }

    pi = stripe.PaymentIntent.retrieve(pi.id)
    if redirect_status == "succeeded":
        assert pi.status == "succeeded"
        assert stripe.Charge.retrieve(pi.latest_charge).payment_method_details.card.three_d_secure.result == "authenticated"
    else:
        assert pi.status == "requires_payment_method"
        assert pi.last_payment_error.code == "payment_intent_authentication_failure"


def test_use_stripe_sdk_shows_the_result_page(page, account):
    pi = confirm_3ds()
    assert pi.next_action.type == "use_stripe_sdk"
    page.goto(pi.next_action.use_stripe_sdk.stripe_js)
    page.get_by_role("button", name="Complete authentication").click()
    result = page.locator("#result")
    result.wait_for()
    assert result.inner_text() == "Authentication complete."
    assert result.get_attribute("data-status") == "succeeded"
    assert page.get_by_text("You can close this window.").is_visible()
    assert stripe.PaymentIntent.retrieve(pi.id).status == "succeeded"


def test_a_wrong_client_secret_shows_the_error_page_with_404(page, account, shop):
    pi = confirm_3ds(shop)
    url = urlparse(pi.next_action.redirect_to_url.url)
    wrong = url._replace(query=urlencode({"client_secret": pi.id + "_secret_wrong"})).geturl()
    response = page.goto(wrong)
    assert response.status == 404
    assert page.get_by_role("heading", level=1).inner_text() == "Authentication unavailable"
    assert page.get_by_text("This payment does not exist.").is_visible()
    assert page.get_by_role("button").count() == 0
    # The error page is styled like the others: its stylesheet loaded.
    assert page.evaluate("getComputedStyle(document.querySelector('main')).borderRadius") != "0px"
    assert stripe.PaymentIntent.retrieve(pi.id).status == "requires_action"


def test_the_stylesheet_is_fetched_once_then_cached(page, account, shop):
    """Three loads of the page: the stylesheet comes over the network once; after
    that from the browser's cache (or, at most, as a 304)."""
    pi = confirm_3ds(shop)
    url = pi.next_action.redirect_to_url.url
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    sheets = {}  # requestId -> what happened to it
    from_cache = set()

    def on_response(e):
        r = e["response"]
        if "/payground/assets/" in r["url"] and r["url"].endswith(".css"):
            sheets[e["requestId"]] = (r["status"], r.get("fromDiskCache", False), r["headers"])

    cdp.on("Network.responseReceived", on_response)
    cdp.on("Network.requestServedFromCache", lambda e: from_cache.add(e["requestId"]))

    first = page.goto(url)
    assert first.status == 200
    href = page.locator('link[rel="stylesheet"]').get_attribute("href")
    assert href.startswith("/payground/assets/payground.") and href.endswith(".css") and len(href) > len("/payground/assets/payground..css") + 8
    page.goto(url)
    page.reload()
    page.wait_for_load_state("load")

    assert len(sheets) == 3, sheets
    over_network = [rid for rid, (status, disk, _) in sheets.items()
                    if status == 200 and not disk and rid not in from_cache]
    assert len(over_network) == 1, sheets
    status, _, headers = sheets[over_network[0]]
    headers = {k.lower(): v for k, v in headers.items()}
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["content-type"] == "text/css; charset=utf-8"
    assert headers["etag"].startswith('"')
    for rid, (status, disk, _) in sheets.items():
        if rid != over_network[0]:
            assert status == 304 or disk or rid in from_cache, sheets[rid]

    # A cache that asks again gets 304 for the tag it holds.
    again = page.request.get(page.url.split("/payground/")[0] + href, headers={"If-None-Match": headers["etag"]})
    assert again.status == 304


def test_keyboard_alone_completes_authentication(page, account, shop):
    pi = confirm_3ds(shop)
    page.goto(pi.next_action.redirect_to_url.url)
    focused = None
    for _ in range(5):  # the first stop is the button; allow for a browser's own stops
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement && document.activeElement.textContent")
        if focused == "Complete authentication":
            break
    assert focused == "Complete authentication"
    # The focus is visible: an outline of the focus colour, not the browser's none.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Fail authentication"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(lambda u: u.startswith(shop.url("/checkout/complete?")))
    assert returned_query(page)["redirect_status"] == "succeeded"
    assert stripe.PaymentIntent.retrieve(pi.id).status == "succeeded"


def test_the_page_is_accessible_in_its_structure(page, account, shop):
    pi = confirm_3ds(shop)
    page.goto(pi.next_action.redirect_to_url.url)
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.get_by_role("main").count() == 1
    assert page.get_by_role("heading", level=1).count() == 1
    for name in ["Complete authentication", "Fail authentication"]:
        button = page.get_by_role("button", name=name)
        assert button.is_visible()
        box = button.bounding_box()
        assert box["height"] >= 44, name  # a comfortable target
    # Text against its background meets WCAG AA (4.5:1).
    ratios = page.evaluate("""() => {
        const lum = (c) => {
            const [r, g, b] = c.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map(v => {
                v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
            });
            return 0.2126 * r + 0.7152 * g + 0.0722 * b;
        };
        const bg = (el) => {
            for (; el; el = el.parentElement) {
                const c = getComputedStyle(el).backgroundColor;
                if (c && c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent') return c;
            }
            return 'rgb(255, 255, 255)';
        };
        return [...document.querySelectorAll('h1, p, dt, dd, button, .badge, .brand')].map(el => {
            const a = lum(getComputedStyle(el).color), b = lum(bg(el));
            return [el.textContent.trim().slice(0, 30), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
        });
    }""")
    low = [(text, round(r, 2)) for text, r in ratios if r < 4.5]
    assert ratios and low == []


def test_screenshot_of_the_page(chromium, account, shop, artifacts):
    """The picture the README shows. Written under artifacts/ on every run; with
    PAYGROUND_UPDATE_SCREENSHOTS=1 it also replaces docs/images/three-d-secure.png."""
    pi = confirm_3ds(shop)
    context = chromium.new_context(viewport={"width": 560, "height": 680}, device_scale_factor=2,
                                   color_scheme="light")
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(pi.next_action.redirect_to_url.url)
        page.locator('link[rel="stylesheet"]').wait_for(state="attached")
        path = artifacts / "three-d-secure.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 20_000
        if os.environ.get("PAYGROUND_UPDATE_SCREENSHOTS") == "1":
            README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, README_SCREENSHOT)
    finally:
        context.close()


def test_publishable_key_routes_answer_another_origin(page, server, account, shop):
    """A page on the shop's origin calls payground with fetch(), as stripe.js does:
    the publishable-key routes answer it; a secret-key route is blocked by the browser."""
    pk, sk = account["publishable_key"], account["secret_key"]
    pi = stripe.PaymentIntent.create(amount=1500, currency="usd")
    page.goto(shop.url("/blank"))
    assert page.evaluate("location.origin") == shop.origin != server.url

    call = """async ([url, init]) => {
        try {
            const r = await fetch(url, init);
            return {status: r.status, body: await r.json(), requestId: r.headers.get('request-id')};
        } catch (e) {
            return {blocked: String(e)};
        }
    }"""
    got = page.evaluate(call, [
        f"{server.url}/v1/payment_intents/{pi.id}?client_secret={pi.client_secret}",
        {"headers": {"Authorization": f"Bearer {pk}", "Stripe-Version": "2024-04-10"}},
    ])
    assert got.get("status") == 200, got
    assert got["body"]["id"] == pi.id and got["body"]["status"] == "requires_payment_method"
    assert got["requestId"].startswith("req_")  # exposed to the page

    form = {"Authorization": f"Bearer {pk}", "Content-Type": "application/x-www-form-urlencoded",
            "Idempotency-Key": f"browser-{pi.id}"}
    got = page.evaluate(call, [f"{server.url}/v1/payment_methods", {
        "method": "POST", "headers": form,
        "body": "type=card&card[number]=4242424242424242&card[exp_month]=12&card[exp_year]=2034&card[cvc]=123"}])
    assert got.get("status") == 200, got
    pm = got["body"]["id"]
    got = page.evaluate(call, [f"{server.url}/v1/payment_intents/{pi.id}/confirm", {
        "method": "POST", "headers": form | {"Idempotency-Key": f"confirm-{pi.id}"},
        "body": urlencode({"client_secret": pi.client_secret, "payment_method": pm})}])
    assert got.get("status") == 200, got
    assert got["body"]["status"] == "succeeded"

    # An error of a browser route reaches the page too.
    got = page.evaluate(call, [f"{server.url}/v1/payment_intents/{pi.id}?client_secret=wrong",
                               {"headers": {"Authorization": f"Bearer {pk}"}}])
    assert got.get("status") == 404 and got["body"]["error"]["type"] == "invalid_request_error", got

    # Secret-key routes: neither the preflighted call nor a simple one is readable.
    for url, init in [
        (f"{server.url}/v1/customers", {"headers": {"Authorization": f"Bearer {sk}"}}),
        (f"{server.url}/v1/customers", {}),
        (f"{server.url}/v1/payment_intents/{pi.id}/capture",
         {"method": "POST", "headers": {"Authorization": f"Bearer {sk}"}}),
        (f"{server.url}/v1/payment_intents/{pi.id}",
         {"method": "POST", "headers": form, "body": "description=x"}),
    ]:
        got = page.evaluate(call, [url, init])
        assert "TypeError" in got.get("blocked", ""), (url, got)
    assert stripe.PaymentIntent.retrieve(pi.id).description is None
