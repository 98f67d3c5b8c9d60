"""Schemathesis hooks for payground (loaded through SCHEMATHESIS_HOOKS).

Form bodies in Stripe's bracket notation. The document declares nested body
fields as `deepObject` (`card[number]=4242`, `expand[0]=customer`), but
schemathesis hands form bodies to requests as a dict, which would flatten a
nested value into its keys; this serializer writes what an SDK sends.
"""
from urllib.parse import urlencode

import schemathesis


def _scalar(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flatten(prefix, value, out):
    if isinstance(value, dict):
        if not value:
            out.append((prefix, ""))
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]", item, out)
    elif isinstance(value, list):
        if not value:
            out.append((prefix, ""))
        for index, item in enumerate(value):
            _flatten(f"{prefix}[{index}]", item, out)
    else:
        out.append((prefix, _scalar(value)))


def bracket_encode(body):
    """`{"card": {"number": "4242"}, "expand": ["customer"]}` →
    `card[number]=4242&expand[0]=customer`; a non-object body (negative tests)
    goes as its text."""
    if isinstance(body, bytes):
        return body
    if not isinstance(body, dict):
        return _scalar(body).encode()
    pairs = []
    for key, value in body.items():
        _flatten(str(key), value, pairs)
    return urlencode(pairs).encode()


@schemathesis.serializer("application/x-www-form-urlencoded")
def _form(ctx, value):
    return bracket_encode(value)


_TOKEN = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _carried_by_http(name, value):
    """Whether HTTP/1.1 can carry this header: a token name, no control characters."""
    text = value if isinstance(value, str) else str(value)
    return (bool(name) and set(name) <= _TOKEN
            and not any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in text))


@schemathesis.hook
def before_call(context, case, kwargs):
    # A header HTTP cannot carry is refused by the HTTP codec (a bare 400 without a
    # body) before payground sees the request: there is nothing of payground's to test.
    if case.headers:
        for name in [n for n, v in case.headers.items() if not _carried_by_http(n, v)]:
            del case.headers[name]
