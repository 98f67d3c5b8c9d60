// Products and Prices through stripe-node: the catalogue a Node integration
// builds before Checkout sells from it, checked against Stripe's spec; events,
// lists, search, lookup keys and bad input.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backends, serverForSuite, validate } from './helpers.mjs';

/** The account's event types, oldest first. */
async function emitted(stripe) {
  const page = await stripe.events.list({ limit: 100 });
  return page.data.map((e) => e.type).reverse();
}

/** Rejects with Stripe's error naming `param` (and `code`, when given). */
async function refused(promise, param, { status = 400, code } = {}) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.statusCode, status, err.message);
    assert.equal(err.param, param, err.message);
    if (code) assert.equal(err.code, code, err.message);
    return true;
  });
}

for (const backend of backends()) {
  describe(`products and prices (${backend})`, () => {
    const { client } = serverForSuite(backend);

    it('makes the product and price Checkout sells, as the docs do', async () => {
      const stripe = await client();
      const product = await stripe.products.create({ name: 'T-shirt', description: 'Comfortable cotton t-shirt' });
      assert.match(product.id, /^prod_[0-9A-Za-z]{24}$/);
      validate('product', product);
      const price = await stripe.prices.create({ product: product.id, unit_amount: 2000, currency: 'usd' });
      assert.match(price.id, /^price_[0-9A-Za-z]{24}$/);
      assert.equal(price.type, 'one_time');
      assert.equal(price.unit_amount_decimal, '2000');
      assert.equal(price.tax_behavior, 'unspecified');
      validate('price', price);
      const withDefault = await stripe.products.create({
        name: 'Gold',
        default_price_data: { unit_amount: 1200, currency: 'usd', recurring: { interval: 'month', interval_count: 3 } },
      });
      const gold = await stripe.prices.retrieve(withDefault.default_price, { expand: ['product'] });
      assert.equal(gold.product.id, withDefault.id);
      assert.deepEqual(gold.recurring, { aggregate_usage: null, interval: 'month', interval_count: 3, meter: null, usage_type: 'licensed' });
      validate('price', gold);
      validate('product', gold.product);
      assert.deepEqual(await emitted(stripe), ['product.created', 'price.created', 'product.created', 'price.created']);
      const events = await stripe.events.list({ type: 'price.created' });
      for (const e of events.data) validate('price', e.data.object);
    });

    it('updates and deletes products with their events', async () => {
      const stripe = await client();
      const product = await stripe.products.create({ name: 'Mug', metadata: { k: 'v' }, shippable: true });
      const up = await stripe.products.update(product.id, { name: 'Big mug', metadata: { k: '' }, url: 'https://example.com/mug' });
      assert.equal(up.name, 'Big mug');
      assert.deepEqual(up.metadata, {});
      validate('product', up);
      const [updated] = (await stripe.events.list({ type: 'product.updated' })).data;
      assert.equal(updated.data.previous_attributes.name, 'Mug');
      assert.deepEqual(updated.data.previous_attributes.metadata, { k: 'v' });
      const del = await stripe.products.del(product.id);
      assert.deepEqual({ ...del, lastResponse: undefined }, { id: product.id, object: 'product', deleted: true, lastResponse: undefined });
      validate('deleted_product', del);
      await refused(stripe.products.retrieve(product.id), 'id', { status: 404, code: 'resource_missing' });
      const priced = await stripe.products.create({ name: 'Priced' });
      await stripe.prices.create({ product: priced.id, unit_amount: 100, currency: 'usd' });
      await assert.rejects(stripe.products.del(priced.id), (err) => {
        assert.equal(err.statusCode, 400);
        assert.equal(err.message, 'This product cannot be deleted because it has one or more user-created prices.');
        return true;
      });
      assert.deepEqual(await emitted(stripe), ['product.created', 'product.updated', 'product.deleted', 'product.created', 'price.created']);
    });

    it('lists and searches products and prices, with cursors', async () => {
      const stripe = await client();
      const products = [];
      for (let i = 0; i < 7; i++) products.push((await stripe.products.create({ name: `Item ${i}`, shippable: i < 3 })).id);
      const newestFirst = [...products].reverse();
      const seen = [];
      for await (const p of stripe.products.list({ limit: 3 })) seen.push(p.id);
      assert.deepEqual(seen, newestFirst);
      const page = await stripe.products.list({ limit: 2, starting_after: newestFirst[1] });
      assert.deepEqual(page.data.map((p) => p.id), newestFirst.slice(2, 4));
      for (const p of page.data) validate('product', p);
      assert.deepEqual((await stripe.products.list({ shippable: true })).data.map((p) => p.id), newestFirst.slice(4));
      assert.deepEqual((await stripe.products.list({ ids: [products[0], products[6]] })).data.map((p) => p.id), [products[6], products[0]]);
      const monthly = await stripe.prices.create({ product: products[0], unit_amount: 500, currency: 'eur', recurring: { interval: 'month' } });
      const once = await stripe.prices.create({ product: products[0], unit_amount: 900, currency: 'usd' });
      await stripe.prices.create({ product: products[1], unit_amount: 1, currency: 'usd', active: false });
      assert.deepEqual((await stripe.prices.list({ product: products[0] })).data.map((p) => p.id), [once.id, monthly.id]);
      assert.deepEqual((await stripe.prices.list({ type: 'recurring' })).data.map((p) => p.id), [monthly.id]);
      assert.deepEqual((await stripe.prices.list({ recurring: { interval: 'month' }, currency: 'eur' })).data.map((p) => p.id), [monthly.id]);
      assert.equal((await stripe.prices.list({ active: false })).data.length, 1);
      const prices = [];
      for await (const p of stripe.prices.list({ limit: 1 })) prices.push(p.id);
      assert.deepEqual(prices, [once.id, monthly.id]);
      const found = await stripe.products.search({ query: "name~'item' AND shippable:'true'" });
      assert.equal(found.object, 'search_result');
      assert.deepEqual(found.data.map((p) => p.id), newestFirst.slice(4));
      const all = [];
      for await (const p of stripe.prices.search({ query: `product:'${products[0]}'`, limit: 1 })) all.push(p.id);
      assert.deepEqual(all, [once.id, monthly.id]);
      await refused(stripe.prices.list({ product: 'prod_missing' }), 'product', { code: 'resource_missing' });
      await refused(stripe.products.list({ ids: [products[0]], starting_after: products[1] }), 'ids');
    });

    it('keeps a lookup key on one active price, and transfers it', async () => {
      const stripe = await client();
      const product = await stripe.products.create({ name: 'Plans' });
      const make = (extra) => stripe.prices.create({ product: product.id, unit_amount: 1000, currency: 'usd', recurring: { interval: 'month' }, ...extra });
      const first = await make({ lookup_key: 'standard_monthly' });
      await assert.rejects(make({ lookup_key: 'standard_monthly' }), (err) => {
        assert.equal(err.param, 'lookup_key');
        assert.equal(err.message, `A price (\`${first.id}\`) already uses that lookup key.`);
        return true;
      });
      const second = await make({ lookup_key: 'standard_monthly', transfer_lookup_key: true });
      assert.equal((await stripe.prices.retrieve(first.id)).lookup_key, null);
      const listed = await stripe.prices.list({ lookup_keys: ['standard_monthly'], expand: ['data.product'] });
      assert.deepEqual(listed.data.map((p) => p.id), [second.id]);
      assert.equal(listed.data[0].product.name, 'Plans');
      const [moved] = (await stripe.events.list({ type: 'price.updated' })).data;
      assert.equal(moved.data.object.id, first.id);
      assert.deepEqual(moved.data.previous_attributes, { lookup_key: 'standard_monthly' });
    });

    it('refuses what Stripe refuses, naming the parameter', async () => {
      const stripe = await client();
      const product = await stripe.products.create({ name: 'P', default_price_data: { unit_amount: 100, currency: 'usd' } });
      const price = await stripe.prices.create({ product: product.id, unit_amount: 100, currency: 'usd', tax_behavior: 'inclusive' });
      await refused(stripe.prices.create({ product: product.id, currency: 'usd' }), 'unit_amount');
      await refused(stripe.prices.create({ product: product.id, currency: 'usd', unit_amount: 1, unit_amount_decimal: '1' }), 'unit_amount');
      await refused(stripe.prices.create({ product: product.id, currency: 'usd', unit_amount: 1, recurring: { interval: 'week', interval_count: 53 } }), 'recurring[interval_count]');
      await refused(stripe.prices.create({ product: product.id, currency: 'usd', billing_scheme: 'tiered', tiers_mode: 'graduated', tiers: [{ up_to: 'inf', unit_amount: 1 }] }), 'billing_scheme');
      await refused(stripe.prices.create({ product: product.id, currency: 'usd', custom_unit_amount: { enabled: true } }), 'custom_unit_amount');
      await refused(stripe.prices.create({ product: 'prod_missing', currency: 'usd', unit_amount: 1 }), 'product', { code: 'resource_missing' });
      await refused(stripe.prices.update(price.id, { tax_behavior: 'exclusive' }), 'tax_behavior');
      await refused(stripe.prices.update(product.default_price, { active: false }), 'active');
      await refused(stripe.prices.update(price.id, { unit_amount: 5 }), 'unit_amount', { code: 'parameter_unknown' });
      await refused(stripe.prices.retrieve('price_missing'), 'price', { status: 404, code: 'resource_missing' });
      await refused(stripe.products.update(product.id, { name: '' }), 'name', { code: 'parameter_invalid_empty' });
      await refused(stripe.products.update(product.id, { default_price: 'price_missing' }), 'default_price', { code: 'resource_missing' });
      await refused(stripe.products.create({ name: 'x', images: ['nope'] }), 'images[0]');
      assert.deepEqual(await emitted(stripe), ['product.created', 'price.created', 'price.created']);
    });
  });
}
