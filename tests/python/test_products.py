"""Products and Prices through stripe-python: made as seed 002's Checkout needs
them and as Stripe's docs make them, every object checked against Stripe's spec,
their events, list filters and cursors, search, and bad input named by `param`."""
import threading

import pytest
import stripe

from openapi import plain, validate, validate_error, validate_list, validate_search


def emitted():
    """Event types in the order they happened (the Events API lists newest first)."""
    return [e.type for e in reversed(stripe.Event.list(limit=100).data)]


def event(kind, object_id):
    """The newest event of `kind` about `object_id`."""
    found = [e for e in stripe.Event.list(type=kind, limit=100).data if e.data.object.id == object_id]
    assert found, f"no {kind} for {object_id}"
    validate("event", found[0])
    return found[0]


def refused(call, param, status=400, code=None):
    """`call` fails with Stripe's error envelope naming `param`."""
    with pytest.raises(stripe.StripeError) as e:
        call()
    assert e.value.http_status == status, e.value.json_body
    validate_error(e.value.json_body)
    assert e.value.json_body["error"].get("param") == param, e.value.json_body
    if code:
        assert e.value.code == code, e.value.json_body
    return e.value


def test_a_product_and_the_price_seed_002_buys(account):
    product = stripe.Product.create(name="T-shirt", description="Comfortable cotton t-shirt")
    assert product.id.startswith("prod_") and product.object == "product"
    assert product.active is True and product.default_price is None
    assert product.created == product.updated
    validate("product", product)
    price = stripe.Price.create(product=product.id, unit_amount=2000, currency="usd")
    assert price.id.startswith("price_") and price.object == "price"
    assert (price.type, price.billing_scheme, price.active) == ("one_time", "per_unit", True)
    assert (price.unit_amount, price.unit_amount_decimal, price.currency) == (2000, "2000", "usd")
    assert price.recurring is None and price.tax_behavior == "unspecified"
    assert price.lookup_key is None and price.custom_unit_amount is None
    assert "tiers" not in plain(price) and "currency_options" not in plain(price)
    validate("price", price)
    assert emitted() == ["product.created", "price.created"]
    validate("price", event("price.created", price.id).data.object)
    validate("product", event("product.created", product.id).data.object)
    got = stripe.Price.retrieve(price.id, expand=["product"])
    assert got.product.id == product.id
    validate("product", got.product)


def test_default_price_data_makes_the_default_price(account):
    product = stripe.Product.create(
        name="Gold Special",
        default_price_data={"unit_amount": 1200, "currency": "EUR", "recurring": {"interval": "month"}},
        metadata={"sku": "gold"},
    )
    assert product.default_price.startswith("price_")
    price = stripe.Price.retrieve(product.default_price)
    assert (price.product, price.currency, price.type) == (product.id, "eur", "recurring")
    assert plain(price.recurring) == {
        "aggregate_usage": None, "interval": "month", "interval_count": 1, "meter": None, "usage_type": "licensed"}
    validate("price", price)
    assert emitted() == ["product.created", "price.created"]
    expanded = stripe.Product.retrieve(product.id, expand=["default_price"])
    assert expanded.default_price.id == price.id
    validate("price", expanded.default_price)
    refused(lambda: stripe.Product.create(name="x", default_price_data={"unit_amount": 1}),
            "default_price_data[currency]", code="parameter_missing")
    refused(lambda: stripe.Product.create(
        name="x", default_price_data={"currency": "usd", "unit_amount": 1, "recurring": {"interval": "year",
                                                                                     "interval_count": 2}}),
        "default_price_data[recurring][interval_count]")
    refused(lambda: stripe.Product.create(name="x", default_price_data={"currency": "usd"}),
            "default_price_data[unit_amount]")


def test_product_fields_update_and_clear_with_their_events(account):
    product = stripe.Product.create(
        name="Mug", description="A mug", images=["https://example.com/mug.png"],
        marketing_features=[{"name": "Dishwasher safe"}],
        package_dimensions={"height": 10.5, "length": 8, "weight": 300, "width": 8},
        shippable=True, statement_descriptor="PAYGROUND MUG", tax_code="txcd_99999999",
        unit_label="mug", url="https://example.com/mug", metadata={"k": "v"},
    )
    validate("product", product)
    assert plain(product.package_dimensions) == {"height": 10.5, "length": 8, "weight": 300, "width": 8}
    assert [f.name for f in product.marketing_features] == ["Dishwasher safe"]
    updated = stripe.Product.modify(product.id, name="Big mug", metadata={"k": "", "size": "L"}, active=False)
    assert (updated.name, updated.active, dict(updated.metadata)) == ("Big mug", False, {"size": "L"})
    assert updated.updated >= product.updated
    validate("product", updated)
    e = event("product.updated", product.id)
    previous = plain(e.data.previous_attributes)
    assert previous["name"] == "Mug" and previous["active"] is True
    assert previous["metadata"] == {"k": "v", "size": None}
    cleared = stripe.Product.modify(
        product.id, description="", images="", marketing_features="", package_dimensions="",
        unit_label="", url="", tax_code="")
    for field in ("description", "package_dimensions", "unit_label", "url", "tax_code"):
        assert cleared[field] is None, field
    assert cleared.images == [] and cleared.marketing_features == []
    validate("product", cleared)
    assert emitted() == ["product.created", "product.updated", "product.updated"]
    refused(lambda: stripe.Product.modify(product.id, name=""), "name", code="parameter_invalid_empty")
    refused(lambda: stripe.Product.create(name=""), "name", code="parameter_invalid_empty")
    refused(lambda: stripe.Product.create(), "name", code="parameter_missing")
    refused(lambda: stripe.Product.create(name="x", statement_descriptor="<b>"), "statement_descriptor")
    refused(lambda: stripe.Product.create(name="x", statement_descriptor="x" * 23), "statement_descriptor")
    refused(lambda: stripe.Product.create(name="x", unit_label="x" * 13), "unit_label")
    refused(lambda: stripe.Product.create(name="x", images=["not a url"]), "images[0]")
    refused(lambda: stripe.Product.create(name="x", images=[f"https://example.com/{i}" for i in range(9)]), "images")
    refused(lambda: stripe.Product.create(name="x", tax_code="txcd_nope"), "tax_code", code="resource_missing")
    refused(lambda: stripe.Product.create(name="x", package_dimensions={"height": 1, "length": 1, "weight": 1}),
            "package_dimensions[width]", code="parameter_missing")
    refused(lambda: stripe.Product.create(name="x", id="prod_mine"), "id")
    refused(lambda: stripe.Product.create(name="x", default_price="price_1"), "default_price",
            code="parameter_unknown")
    refused(lambda: stripe.Product.modify(product.id, default_price_data={"currency": "usd"}),
            "default_price_data", code="parameter_unknown")
    refused(lambda: stripe.Product.retrieve("prod_missing"), "id", status=404, code="resource_missing")


def test_default_price_is_one_of_the_products_own_active_prices(account):
    product = stripe.Product.create(name="Plan")
    first = stripe.Price.create(product=product.id, unit_amount=1000, currency="usd")
    second = stripe.Price.create(product=product.id, unit_amount=2000, currency="usd")
    other = stripe.Price.create(product_data={"name": "Other"}, unit_amount=500, currency="usd")
    updated = stripe.Product.modify(product.id, default_price=second.id)
    assert updated.default_price == second.id
    assert plain(event("product.updated", product.id).data.previous_attributes)["default_price"] is None
    refused(lambda: stripe.Product.modify(product.id, default_price=other.id), "default_price")
    refused(lambda: stripe.Product.modify(product.id, default_price="price_missing"), "default_price",
            code="resource_missing")
    archived = stripe.Price.modify(first.id, active=False)
    assert archived.active is False
    refused(lambda: stripe.Product.modify(product.id, default_price=first.id), "default_price")
    # The default price cannot be archived until the product lets go of it.
    e = refused(lambda: stripe.Price.modify(second.id, active=False), "active")
    assert e.user_message == "This price cannot be archived because it is the default price of its product."
    assert stripe.Product.modify(product.id, default_price="").default_price is None
    assert stripe.Price.modify(second.id, active=False).active is False


def test_delete_a_product_without_prices_only(account):
    lonely = stripe.Product.create(name="Lonely")
    deleted = stripe.Product.delete(lonely.id)
    assert plain(deleted) == {"id": lonely.id, "object": "product", "deleted": True}
    validate("deleted_product", deleted)
    gone = event("product.deleted", lonely.id)
    assert gone.data.object.name == "Lonely"
    refused(lambda: stripe.Product.retrieve(lonely.id), "id", status=404, code="resource_missing")
    refused(lambda: stripe.Product.delete(lonely.id), "id", status=404, code="resource_missing")
    priced = stripe.Product.create(name="Priced")
    price = stripe.Price.create(product=priced.id, unit_amount=100, currency="usd")
    stripe.Price.modify(price.id, active=False)
    with pytest.raises(stripe.InvalidRequestError) as e:
        stripe.Product.delete(priced.id)
    assert e.value.http_status == 400
    assert e.value.user_message == "This product cannot be deleted because it has one or more user-created prices."
    validate_error(e.value.json_body)
    assert stripe.Product.retrieve(priced.id).active is True
    assert [p.id for p in stripe.Product.list().data] == [priced.id]
    refused(lambda: stripe.Price.create(product=lonely.id, unit_amount=1, currency="usd"), "product",
            code="resource_missing")


def test_product_list_filters_and_cursors(account, api):
    made = [stripe.Product.create(name=f"p{i}", shippable=i % 2 == 0, url=f"https://example.com/{i % 3}").id
            for i in range(12)]
    stripe.Product.modify(made[3], active=False)
    newest_first = list(reversed(made))
    page = stripe.Product.list(limit=5)
    validate_list("product", page)
    assert page.url == "/v1/products" and page.has_more is True
    assert [p.id for p in stripe.Product.list(limit=5).auto_paging_iter()] == newest_first
    assert [p.id for p in stripe.Product.list(limit=4, starting_after=made[8]).data] == newest_first[4:8]
    assert [p.id for p in stripe.Product.list(limit=2, ending_before=made[8]).data] == [made[10], made[9]]
    assert [p.id for p in stripe.Product.list(active=False).data] == [made[3]]
    assert len(stripe.Product.list(active=True, limit=100).data) == 11
    assert [p.id for p in stripe.Product.list(shippable=True, limit=100).data] == newest_first[1::2]
    assert {p.id for p in stripe.Product.list(url="https://example.com/1", limit=100).data} == {
        made[i] for i in range(12) if i % 3 == 1}
    assert [p.id for p in stripe.Product.list(ids=[made[0], made[5], "prod_missing"]).data] == [made[5], made[0]]
    assert [p.id for p in stripe.Product.list(ids=[made[1]], shippable=True).data] == []
    refused(lambda: stripe.Product.list(ids=[made[0]], starting_after=made[1]), "ids")
    refused(lambda: stripe.Product.list(starting_after="prod_missing"), "starting_after", status=404)
    refused(lambda: stripe.Product.list(shippable="maybe"), "shippable")
    created = stripe.Product.retrieve(made[0]).created
    assert len(stripe.Product.list(created={"gte": created}, limit=100).data) == 12
    assert stripe.Product.list(created={"lt": created}).data == []
    r = api.get("/v1/products", params={"limit": 101})
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"


def test_product_search(account):
    shirt = stripe.Product.create(name="Blue T-shirt", description="Cotton", metadata={"line": "summer"})
    hoodie = stripe.Product.create(name="Grey hoodie", description="Warm cotton", active=False)
    r = stripe.Product.search(query="name~'shirt'")
    validate_search("product", r)
    assert [p.id for p in r.data] == [shirt.id]
    assert [p.id for p in stripe.Product.search(query="active:'false'").data] == [hoodie.id]
    assert [p.id for p in stripe.Product.search(query="metadata['line']:'summer'").data] == [shirt.id]
    assert {p.id for p in stripe.Product.search(query="description~'cotton'").data} == {shirt.id, hoodie.id}
    assert [p.id for p in stripe.Product.search(query=f"created>={shirt.created} AND -name:'Grey hoodie'").data] == [
        shirt.id]
    page = stripe.Product.search(query="description~'cotton'", limit=1)
    assert page.has_more is True and [p.id for p in page.data] == [hoodie.id]
    rest = stripe.Product.search(query="description~'cotton'", limit=1, page=page.next_page)
    assert [p.id for p in rest.data] == [shirt.id]
    refused(lambda: stripe.Product.search(query="email:'x'"), "query")


def test_prices_as_stripes_docs_make_them(account):
    product = stripe.Product.create(name="Basic Dashboard")
    monthly = stripe.Price.create(product=product.id, unit_amount=1000, currency="usd",
                                  recurring={"interval": "month"}, lookup_key="standard_monthly",
                                  nickname="Standard", metadata={"plan": "standard"})
    assert (monthly.type, monthly.lookup_key, monthly.nickname) == ("recurring", "standard_monthly", "Standard")
    validate("price", monthly)
    quarterly = stripe.Price.create(product=product.id, unit_amount=2700, currency="usd",
                                    recurring={"interval": "month", "interval_count": 3})
    assert quarterly.recurring.interval_count == 3
    metered = stripe.Price.create(product=product.id, unit_amount=5, currency="usd",
                                  recurring={"interval": "month", "usage_type": "metered"})
    assert (metered.recurring.usage_type, metered.recurring.aggregate_usage) == ("metered", "sum")
    validate("price", metered)
    decimal = stripe.Price.create(product=product.id, unit_amount_decimal="12.345", currency="usd")
    assert (decimal.unit_amount, decimal.unit_amount_decimal) == (None, "12.345")
    validate("price", decimal)
    whole = stripe.Price.create(product=product.id, unit_amount_decimal="250.00", currency="usd")
    assert (whole.unit_amount, whole.unit_amount_decimal) == (250, "250")
    inclusive = stripe.Price.create(product=product.id, unit_amount=0, currency="jpy", tax_behavior="inclusive")
    assert (inclusive.unit_amount, inclusive.tax_behavior) == (0, "inclusive")
    for interval, most in [("day", 365), ("week", 52), ("month", 12), ("year", 1)]:
        price = stripe.Price.create(product=product.id, unit_amount=1, currency="usd",
                                    recurring={"interval": interval, "interval_count": most})
        assert price.recurring.interval_count == most
        refused(lambda: stripe.Price.create(product=product.id, unit_amount=1, currency="usd",
                                            recurring={"interval": interval, "interval_count": most + 1}),
                "recurring[interval_count]")
    new_product = stripe.Price.create(product_data={"name": "Add-on", "metadata": {"k": "v"}, "unit_label": "seat"},
                                      unit_amount=300, currency="usd")
    made = stripe.Product.retrieve(new_product.product)
    assert (made.name, made.unit_label, dict(made.metadata)) == ("Add-on", "seat", {"k": "v"})
    validate("product", made)
    assert emitted()[-2:] == ["product.created", "price.created"]


def test_price_create_refusals_name_their_param(account):
    product = stripe.Product.create(name="P").id

    def create(**kw):
        return lambda: stripe.Price.create(**{"currency": "usd", "product": product, **kw})

    e = refused(create(unit_amount=1, unit_amount_decimal="1"), "unit_amount")
    assert e.user_message == "You may only specify one of these parameters: unit_amount, unit_amount_decimal."
    refused(create(), "unit_amount")
    refused(create(unit_amount=-1), "unit_amount")
    refused(create(unit_amount=100_000_000), "unit_amount")
    refused(create(unit_amount_decimal="1.0000000000001"), "unit_amount_decimal")
    refused(create(unit_amount_decimal="ten"), "unit_amount_decimal")
    refused(create(unit_amount="ten"), "unit_amount", code="parameter_invalid_integer")
    refused(create(unit_amount=1, currency="zzz"), "currency")
    refused(lambda: stripe.Price.create(product=product, unit_amount=1), "currency", code="parameter_missing")
    refused(create(unit_amount=1, recurring={"interval": "fortnight"}), "recurring[interval]")
    refused(create(unit_amount=1, recurring={"interval_count": 2}), "recurring[interval]", code="parameter_missing")
    refused(create(unit_amount=1, recurring={"interval": "month", "aggregate_usage": "sum"}),
            "recurring[aggregate_usage]")
    refused(create(unit_amount=1, recurring={"interval": "month", "meter": "mtr_1"}), "recurring[meter]",
            code="resource_missing")
    refused(create(unit_amount=1, tax_behavior="sometimes"), "tax_behavior")
    refused(create(unit_amount=1, lookup_key="k" * 201), "lookup_key")
    refused(create(billing_scheme="tiered", tiers_mode="volume", tiers=[{"up_to": "inf", "unit_amount": 1}],
                   recurring={"interval": "month"}), "billing_scheme")
    refused(create(unit_amount=1, tiers=[{"up_to": 5, "unit_amount": 1}]), "tiers")
    refused(create(custom_unit_amount={"enabled": True, "preset": 500}), "custom_unit_amount")
    refused(create(unit_amount=1, transform_quantity={"divide_by": 5, "round": "up"}), "transform_quantity")
    refused(create(unit_amount=1, currency_options={"eur": {"unit_amount": 1}}), "currency_options",
            code="parameter_unknown")
    e = refused(create(unit_amount=1, product_data={"name": "x"}), "product")
    assert e.user_message == "You may only specify one of these parameters: product, product_data."
    e = refused(lambda: stripe.Price.create(currency="usd", unit_amount=1), "product")
    assert e.user_message == "You must specify either `product` or `product_data` when creating a price."
    refused(create(unit_amount=1, product="prod_missing"), "product", code="resource_missing")
    refused(lambda: stripe.Price.create(currency="usd", unit_amount=1, product_data={"active": True}),
            "product_data[name]", code="parameter_missing")
    refused(lambda: stripe.Price.create(currency="usd", unit_amount=1, product_data={"name": "x", "id": "mine"}),
            "product_data[id]")
    refused(lambda: stripe.Price.create(currency="usd", unit_amount=1,
                                        product_data={"name": "x", "statement_descriptor": "12345"}),
            "product_data[statement_descriptor]")
    refused(lambda: stripe.Price.create(currency="usd", unit_amount=1, product_data={"name": "x", "metadata": {
        "k" * 41: "v"}}), f"product_data[metadata][{'k' * 41}]")
    assert stripe.Price.list(limit=100).data == []
    assert [p.id for p in stripe.Product.list().data] == [product]


def test_price_updates_take_only_what_stripe_lets_change(account, api):
    product = stripe.Product.create(name="P")
    price = stripe.Price.create(product=product.id, unit_amount=1000, currency="usd", metadata={"a": "1"})
    updated = stripe.Price.modify(price.id, nickname="Standard", metadata={"a": "", "b": "2"}, active=False)
    assert (updated.nickname, dict(updated.metadata), updated.active) == ("Standard", {"b": "2"}, False)
    validate("price", updated)
    previous = plain(event("price.updated", price.id).data.previous_attributes)
    assert previous == {"active": True, "metadata": {"a": "1", "b": None}, "nickname": None}
    assert stripe.Price.modify(price.id, nickname="").nickname is None
    for param, value in [("unit_amount", 1), ("currency", "eur"), ("recurring[interval]", "month"),
                         ("product", product.id), ("billing_scheme", "per_unit"), ("type", "recurring"),
                         ("unit_amount_decimal", "1"), ("currency_options[eur][unit_amount]", "1")]:
        r = api.post(f"/v1/prices/{price.id}", data={param: value})
        assert r.status_code == 400, (param, r.text)
        assert r.json()["error"]["code"] == "parameter_unknown", r.text
        assert r.json()["error"]["param"] == param.split("[")[0], r.text
    # tax_behavior: set once from unspecified, then fixed.
    assert stripe.Price.modify(price.id, tax_behavior="exclusive").tax_behavior == "exclusive"
    assert stripe.Price.modify(price.id, tax_behavior="exclusive").tax_behavior == "exclusive"
    for other in ("inclusive", "unspecified"):
        e = refused(lambda: stripe.Price.modify(price.id, tax_behavior=other), "tax_behavior")
        assert "tax_behavior" in e.user_message
    refused(lambda: stripe.Price.modify("price_missing", nickname="x"), "price", status=404, code="resource_missing")
    refused(lambda: stripe.Price.retrieve("price_missing"), "price", status=404, code="resource_missing")
    assert api.delete(f"/v1/prices/{price.id}").status_code == 404
    assert emitted() == ["product.created", "price.created"] + ["price.updated"] * 3


def test_lookup_keys_are_held_by_one_active_price(account):
    product = stripe.Product.create(name="Plans").id

    def price(**kw):
        return stripe.Price.create(product=product, unit_amount=1000, currency="usd", **kw)

    holder = price(lookup_key="standard_monthly")
    e = refused(lambda: price(lookup_key="standard_monthly"), "lookup_key")
    assert e.user_message == f"A price (`{holder.id}`) already uses that lookup key."
    assert emitted() == ["product.created", "price.created"]
    # transfer_lookup_key moves it from the price that has it, which says so.
    newer = price(lookup_key="standard_monthly", transfer_lookup_key=True)
    assert newer.lookup_key == "standard_monthly"
    old = stripe.Price.retrieve(holder.id)
    assert old.lookup_key is None and old.active is True
    assert plain(event("price.updated", holder.id).data.previous_attributes) == {"lookup_key": "standard_monthly"}
    assert emitted()[-2:] == ["price.updated", "price.created"]
    assert [p.id for p in stripe.Price.list(lookup_keys=["standard_monthly"]).data] == [newer.id]
    # On update too, and re-sending a price's own key is no conflict.
    other = price()
    refused(lambda: stripe.Price.modify(other.id, lookup_key="standard_monthly"), "lookup_key")
    assert stripe.Price.modify(other.id, lookup_key="standard_monthly", transfer_lookup_key=True).lookup_key == \
        "standard_monthly"
    assert stripe.Price.retrieve(newer.id).lookup_key is None
    assert stripe.Price.modify(other.id, lookup_key="standard_monthly").lookup_key == "standard_monthly"
    # Held while active: an archived holder keeps its key but lets another take it.
    stripe.Price.modify(other.id, active=False)
    taker = price(lookup_key="standard_monthly")
    assert stripe.Price.retrieve(other.id).lookup_key == "standard_monthly"
    refused(lambda: stripe.Price.modify(other.id, active=True), "lookup_key")
    assert stripe.Price.modify(other.id, active=True, lookup_key="standard_monthly",
                               transfer_lookup_key=True).active is True
    assert stripe.Price.retrieve(taker.id).lookup_key is None
    assert [p.id for p in stripe.Price.list(lookup_keys=["standard_monthly", "nope"]).data] == [other.id]
    refused(lambda: stripe.Price.list(lookup_keys=[f"k{i}" for i in range(11)]), "lookup_keys")


def test_one_lookup_key_raced_for_goes_to_one_price(account):
    # A product each, so that nothing but the key is shared.
    products = [stripe.Product.create(name=f"Race {i}").id for i in range(8)]
    outcomes = []
    start = threading.Barrier(len(products))

    def create(product):
        start.wait()
        try:
            outcomes.append(stripe.Price.create(product=product, unit_amount=100, currency="usd",
                                                lookup_key="contested").id)
        except stripe.InvalidRequestError as e:
            outcomes.append(e.param)

    threads = [threading.Thread(target=create, args=(p,)) for p in products]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o.startswith("price_")]
    assert len(winners) == 1 and outcomes.count("lookup_key") == 7, outcomes
    assert [p.id for p in stripe.Price.list(lookup_keys=["contested"]).data] == winners


def test_price_list_filters_and_cursors(account, api):
    shirt = stripe.Product.create(name="Shirt").id
    plan = stripe.Product.create(name="Plan").id
    once = stripe.Price.create(product=shirt, unit_amount=2000, currency="usd")
    eur = stripe.Price.create(product=shirt, unit_amount=1800, currency="eur")
    monthly = stripe.Price.create(product=plan, unit_amount=900, currency="usd", recurring={"interval": "month"})
    yearly = stripe.Price.create(product=plan, unit_amount=9000, currency="usd", recurring={"interval": "year"})
    metered = stripe.Price.create(product=plan, unit_amount=1, currency="usd",
                                  recurring={"interval": "month", "usage_type": "metered"})
    archived = stripe.Price.create(product=shirt, unit_amount=100, currency="usd", active=False)

    def ids(**kw):
        page = stripe.Price.list(limit=100, **kw)
        validate_list("price", page)
        return [p.id for p in page.data]

    active = [metered.id, yearly.id, monthly.id, eur.id, once.id]
    assert ids() == active
    assert ids(active=True) == active
    assert ids(active=False) == [archived.id]
    assert ids(product=shirt) == [eur.id, once.id]
    assert ids(product=shirt, active=False) == [archived.id]
    assert ids(type="one_time") == [eur.id, once.id]
    assert ids(type="recurring", product=plan) == [metered.id, yearly.id, monthly.id]
    assert ids(currency="EUR") == [eur.id]
    assert ids(recurring={"interval": "month"}) == [metered.id, monthly.id]
    assert ids(recurring={"usage_type": "licensed"}) == [yearly.id, monthly.id]
    assert ids(recurring={"interval": "month", "usage_type": "metered"}) == [metered.id]
    assert ids(created={"gte": once.created}) == active
    assert [p.id for p in stripe.Price.list(limit=2).auto_paging_iter()] == active
    assert [p.id for p in stripe.Price.list(limit=2, starting_after=yearly.id).data] == [monthly.id, eur.id]
    assert [p.id for p in stripe.Price.list(limit=2, ending_before=eur.id).data] == [yearly.id, monthly.id]
    page = stripe.Price.list(limit=2)
    assert page.has_more is True and page.url == "/v1/prices"
    e = refused(lambda: stripe.Price.list(product="prod_missing"), "product", code="resource_missing")
    assert e.user_message == "No such product: 'prod_missing'"
    refused(lambda: stripe.Price.list(type="monthly"), "type")
    refused(lambda: stripe.Price.list(recurring={"interval": "hour"}), "recurring[interval]")
    refused(lambda: stripe.Price.list(starting_after=shirt), "starting_after", status=404)
    r = api.get("/v1/prices", params={"expand[]": "data.product"})
    assert r.status_code == 200, r.text
    assert {p["product"]["object"] for p in r.json()["data"]} == {"product"}


def test_price_search(account):
    shirt = stripe.Product.create(name="Shirt").id
    usd = stripe.Price.create(product=shirt, unit_amount=2000, currency="usd", lookup_key="shirt_usd",
                              metadata={"season": "summer"})
    eur = stripe.Price.create(product=shirt, unit_amount=1800, currency="eur", recurring={"interval": "month"})
    off = stripe.Price.create(product_data={"name": "Other"}, unit_amount=1, currency="usd", active=False)
    r = stripe.Price.search(query="currency:'eur'")
    validate_search("price", r)
    assert [p.id for p in r.data] == [eur.id]
    assert [p.id for p in stripe.Price.search(query="type:'recurring'").data] == [eur.id]
    assert [p.id for p in stripe.Price.search(query=f"product:'{shirt}'").data] == [eur.id, usd.id]
    assert [p.id for p in stripe.Price.search(query="lookup_key:'shirt_usd'").data] == [usd.id]
    assert [p.id for p in stripe.Price.search(query="active:'false'").data] == [off.id]
    assert [p.id for p in stripe.Price.search(query="metadata['season']:'summer'").data] == [usd.id]
    assert [p.id for p in stripe.Price.search(query=f"created>={usd.created} AND currency:'usd'").data] == [
        off.id, usd.id]
    refused(lambda: stripe.Price.search(query="unit_amount>5"), "query")
