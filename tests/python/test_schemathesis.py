"""schemathesis against payground's own OpenAPI document (`/payground/openapi.json`).

Every documented operation is fuzzed with generated valid and invalid inputs
(examples, coverage and fuzzing phases, a fixed seed, derandomized), operations on
`{id}` paths against real objects of a fresh account so the handlers get past
their 404s. Checks: no 5xx (`not_a_server_error`) and every answer matches the
document (`response_schema_conformance`, `content_type_conformance`,
`status_code_conformance`): the object it promises, or Stripe's error envelope.
"""
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance"
MAX_EXAMPLES = 5
SEED = 20261201
TIMEOUT = 240


def _id(response):
    assert response.status_code == 200, response.text
    return response.json()


def make_objects(api):
    """Real objects for the `{id}` operations: {operationId: {param: value}}."""
    cus = _id(api.post("/v1/customers", data={"email": "st@example.com", "name": "Schema Thesis"}))["id"]
    doomed_cus = _id(api.post("/v1/customers", data={"email": "gone@example.com"}))["id"]
    pm = _id(api.post("/v1/payment_methods", data={"type": "card", "card[token]": "tok_visa"}))["id"]
    _id(api.post(f"/v1/payment_methods/{pm}/attach", data={"customer": cus}))
    detached = _id(api.post("/v1/payment_methods", data={"type": "card", "card[token]": "tok_mastercard"}))["id"]
    _id(api.post(f"/v1/payment_methods/{detached}/attach", data={"customer": cus}))
    held = _id(api.post("/v1/payment_intents", data={
        "amount": 2000, "currency": "usd", "customer": cus, "payment_method": pm,
        "capture_method": "manual", "confirm": "true",
    }))["id"]
    paid = _id(api.post("/v1/payment_intents", data={
        "amount": 3000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true",
    }))
    charge = _id(api.get(f"/v1/charges/{paid['latest_charge']}"))
    refund = _id(api.post("/v1/refunds", data={"payment_intent": paid["id"], "amount": 100}))["id"]
    # Deliveries to a closed local port: attempts exist and fail, nothing leaves the machine.
    hook = {"url": "http://127.0.0.1:9/hook", "enabled_events[]": "*"}
    endpoint = _id(api.post("/v1/webhook_endpoints", data=hook))["id"]
    doomed_endpoint = _id(api.post("/v1/webhook_endpoints", data=hook))["id"]
    event = _id(api.get("/v1/events", params={"limit": 1}))["data"][0]["id"]
    seti = _id(api.post("/v1/setup_intents", data={"customer": cus}))["id"]
    ctoken = _id(api.post("/v1/test_helpers/confirmation_tokens", data={"payment_method": "pm_card_visa"}))["id"]
    saved = _id(api.post("/v1/payment_methods", data={"type": "card", "card[token]": "tok_visa"}))["id"]
    _id(api.post(f"/v1/payment_methods/{saved}/attach", data={"customer": cus}))
    product = _id(api.post("/v1/products", data={
        "name": "Schema Thesis", "default_price_data[currency]": "usd", "default_price_data[unit_amount]": 1000,
    }))["id"]
    doomed_product = _id(api.post("/v1/products", data={"name": "Doomed"}))["id"]
    price = _id(api.post("/v1/prices", data={"product": product, "currency": "usd", "unit_amount": 500}))["id"]
    ids = {
        "GetCustomersCustomer": cus, "PostCustomersCustomer": cus, "DeleteCustomersCustomer": doomed_cus,
        "GetCustomersCustomerPaymentMethods": cus,
        "GetPaymentMethodsPaymentMethod": pm, "PostPaymentMethodsPaymentMethod": pm,
        "PostPaymentMethodsPaymentMethodAttach": pm, "PostPaymentMethodsPaymentMethodDetach": detached,
        "GetPaymentIntentsIntent": held, "PostPaymentIntentsIntent": held,
        "PostPaymentIntentsIntentConfirm": held, "PostPaymentIntentsIntentCapture": held,
        "PostPaymentIntentsIntentCancel": held, "PostPaymentIntentsIntentIncrementAuthorization": held,
        "PostTestHelpersPaymentIntentsIntentSettle": held,
        "GetChargesCharge": charge["id"], "PostChargesCharge": charge["id"], "PostChargesChargeCapture": charge["id"],
        "GetBalanceTransactionsId": charge["balance_transaction"],
        "GetRefundsRefund": refund, "PostRefundsRefund": refund, "PostRefundsRefundCancel": refund,
        "GetEventsId": event, "PostEventsIdResend": event, "GetEventsIdAttempts": event,
        "GetWebhookEndpointsWebhookEndpoint": endpoint, "PostWebhookEndpointsWebhookEndpoint": endpoint,
        "GetWebhookEndpointsWebhookEndpointAttempts": endpoint, "DeleteWebhookEndpointsWebhookEndpoint": doomed_endpoint,
        "GetSetupIntentsIntent": seti, "PostSetupIntentsIntent": seti, "PostSetupIntentsIntentConfirm": seti,
        "PostSetupIntentsIntentCancel": seti, "PostTestHelpersSetupIntentsIntentSettle": seti,
        "GetConfirmationTokensConfirmationToken": ctoken,
        "PostElementsPaymentMethodsPaymentMethodDetach": saved,
        "GetProductsId": product, "PostProductsId": product, "DeleteProductsId": doomed_product,
    }
    params = {op: {"path.id": value} for op, value in ids.items()}
    params["GetCustomersCustomerPaymentMethodsPaymentMethod"] = {"path.id": cus, "path.payment_method": pm}
    # Stripe's spec names a price's path parameter `price`.
    params["GetPricesPrice"] = params["PostPricesPrice"] = {"path.price": price}
    return params


def config_toml(params):
    # Unexpected methods meet one fallback shared by every path: one of them is enough.
    lines = ["[phases.coverage]", 'unexpected-methods = ["patch"]', ""]
    for op, values in sorted(params.items()):
        pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in values.items())
        lines += ["[[operations]]", f"include-operation-id = {json.dumps(op)}", f"parameters = {{ {pairs} }}", ""]
    return "\n".join(lines)


def run_schemathesis(url, secret_key, workdir, params):
    config = workdir / "schemathesis.toml"
    config.write_text(config_toml(params))
    report = workdir / "report.ndjson"
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    args = [
        str(SCHEMATHESIS), "--config-file", str(config), "run", f"{url}/payground/openapi.json",
        "-H", f"Authorization: Bearer {secret_key}",
        "--checks", CHECKS,
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED), "--generation-deterministic",
        "--suppress-health-check", "filter_too_much,too_slow",
        "--workers", "2",
        "--request-timeout", "20",
        "--report", "ndjson", "--report-ndjson-path", str(report),
        "--no-color",
    ]
    started = time.monotonic()
    proc = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return proc, report, time.monotonic() - started


def figures(report):
    """(operations with requests, requests, responses by status class) from the report."""
    operations, requests_sent, statuses = set(), 0, collections.Counter()
    for line in report.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        interactions = finished.get("recorder", {}).get("interactions", {})
        for interaction in interactions.values():
            requests_sent += 1
            operations.add(finished["recorder"]["label"])
            response = interaction.get("response")
            statuses[f"{response['status_code'] // 100}xx" if response else "none"] += 1
    return operations, requests_sent, statuses


def real_failures(report):
    """What in the report makes a run fail: each check that did not pass, each errored
    scenario and each error event. schemathesis 4.10.2 can also mark the fuzzing
    phase failed with none of these (every check of the "failed" scenario passed,
    "No issues found"; upstream issue #4209, fixed in a later release that does not
    install beside this pytest), which is no finding about payground."""
    found = []
    for line in report.read_text().splitlines():
        event = json.loads(line)
        name, body = next(iter(event.items()))
        if "Error" in name:
            found.append(f"{name}: {json.dumps(body)[:500]}")
        if name != "ScenarioFinished":
            continue
        label = body.get("recorder", {}).get("label")
        if body.get("status") == "error":
            found.append(f"{label}: errored")
        for checks in body.get("recorder", {}).get("checks", {}).values():
            found += [f"{label}: {c['name']} {c['status']}" for c in checks if c["status"] != "success"]
    return found


def test_schemathesis_finds_no_5xx_and_every_answer_matches_the_document(server, api, account, tmp_path):
    if not SCHEMATHESIS.exists():
        pytest.fail(f"{SCHEMATHESIS} is missing: install tests/requirements.txt")
    params = make_objects(api)
    proc, report, elapsed = run_schemathesis(server.url, account["secret_key"], tmp_path, params)
    operations, requests_sent, statuses = figures(report) if report.exists() else (set(), 0, {})
    documented = sum(len(item) for item in api.get("/payground/openapi.json").json()["paths"].values())
    print(f"\nschemathesis ({server.backend}): {len(operations)} of {documented} operations tested, "
          f"{requests_sent} requests in {elapsed:.0f} s, responses {dict(sorted(statuses.items()))}, "
          f"5xx found: {statuses.get('5xx', 0)}")
    tail = "\n".join(proc.stdout.splitlines()[-80:])
    whole = proc.stdout[-30000:]
    summary = proc.stdout.split("SUMMARY", 1)[-1].strip("= \n")
    print(summary)
    found = real_failures(report) if report.exists() else ["no report"]
    unexplained = proc.returncode == 1 and not found and "No issues found" in proc.stdout
    if unexplained:
        print("schemathesis exited 1 with no failing check, error or issue (upstream #4209)")
    else:
        assert proc.returncode == 0, (
            f"schemathesis failed (exit {proc.returncode}): {found}\n{whole}\n{proc.stderr[-3000:]}")
    assert statuses.get("5xx", 0) == 0, tail
    assert statuses.get("none", 0) == 0, f"requests without a response:\n{tail}"
    assert len(operations) == documented, f"untested operations:\n{tail}"
    assert requests_sent > 20 * documented


def test_an_answer_before_the_body_is_read_closes_the_connection(server):
    """A 401 or 404 sent before a large body was read says `Connection: close`: the
    unread rest of the body makes the server drop the connection, and a client that
    reused it would see its next request fail (schemathesis did)."""
    import http.client

    host, port = server.url.removeprefix("http://").split(":")
    for method, path in [("POST", "/v1/customers"), ("PATCH", "/v1/nothing_here")]:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request(method, path, body="a=" + "x" * 200_000,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        assert response.status in (401, 404)
        assert response.getheader("Connection") == "close", (method, path)
        conn.close()
    # A request whose body was read keeps its connection.
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    assert response.status == 200 and response.getheader("Connection") is None
    conn.close()
