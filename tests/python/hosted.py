"""Drives payground's hosted 3-D Secure page as a browser would: load the page,
submit its form with one of its two buttons, follow the 303."""
import html
import re
from urllib.parse import parse_qs, urlparse

import requests


def next_action_url(pi):
    na = pi["next_action"]
    if na["type"] == "redirect_to_url":
        return na["redirect_to_url"]["url"]
    return na["use_stripe_sdk"]["stripe_js"]


def authenticate(pi, complete=True):
    """Submits the page for a PaymentIntent in requires_action. Returns (response, redirect query)."""
    url = next_action_url(pi)
    page = requests.get(url, timeout=10)
    assert page.status_code == 200, page.text
    assert "Complete authentication" in page.text and "Fail authentication" in page.text
    assert '<form method="post">' in page.text
    fields = dict(
        (html.unescape(m.group(1)), html.unescape(m.group(2)))
        for m in re.finditer(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
    )
    fields["action"] = "complete" if complete else "fail"
    r = requests.post(url, data=fields, allow_redirects=False, timeout=10)
    query = None
    if r.status_code == 303:
        query = {k: v[0] for k, v in parse_qs(urlparse(r.headers["Location"]).query).items()}
    return r, query
