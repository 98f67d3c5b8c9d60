// Customers and the wire conventions, through stripe-node.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, validate } from './helpers.mjs';

for (const backend of backends()) {
  describe(`customers (${backend})`, () => {
    let server;
    let stripe;
    let keys;
    before(async () => {
      server = await startServer(backend);
    });
    after(async () => {
      await server.stop();
    });

    it('creates, retrieves, updates and deletes', async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
      const c = await stripe.customers.create({ email: 'jenny@example.com', name: 'Jenny', metadata: { order_id: '6735' } });
      assert.match(c.id, /^cus_[0-9A-Za-z]{24}$/);
      validate('customer', c);
      const got = await stripe.customers.retrieve(c.id);
      assert.equal(got.email, 'jenny@example.com');
      const up = await stripe.customers.update(c.id, { metadata: { order_id: '', tier: 'gold' }, phone: '+15555550100' });
      assert.deepEqual(up.metadata, { tier: 'gold' });
      validate('customer', up);
      const del = await stripe.customers.del(c.id);
      assert.equal(del.deleted, true);
      validate('deleted_customer', del);
      const again = await stripe.customers.retrieve(c.id);
      assert.equal(again.deleted, true);
    });

    it('paginates 250 customers both ways', async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
      const ids = [];
      for (let i = 0; i < 250; i++) ids.push((await stripe.customers.create({ email: `c${i}@example.com` })).id);
      const newestFirst = [...ids].reverse();
      const seen = [];
      for await (const c of stripe.customers.list({ limit: 100 })) seen.push(c.id);
      assert.deepEqual(seen, newestFirst);
      const page = await stripe.customers.list({ limit: 3 });
      for (const c of page.data) validate('customer', c);
      assert.equal(page.has_more, true);
      assert.equal(page.url, '/v1/customers');
      // Backwards through ending_before, as autoPagingEach does for it.
      const back = [];
      for await (const c of stripe.customers.list({ limit: 100, ending_before: ids[0] })) back.push(c.id);
      assert.equal(back.length, 249);
      assert.deepEqual(new Set(back), new Set(newestFirst.slice(0, -1)));
    });

    it('searches', async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
      const jane = await stripe.customers.create({ email: 'jane@example.com', name: 'Jane Doe', metadata: { plan: 'pro' } });
      await stripe.customers.create({ email: 'john@example.com', name: 'John Doe' });
      const r = await stripe.customers.search({ query: "metadata['plan']:'pro' AND name~'jane'" });
      assert.deepEqual(r.data.map((c) => c.id), [jane.id]);
      assert.equal(r.object, 'search_result');
      const all = [];
      for await (const c of stripe.customers.search({ query: "name~'doe'", limit: 1 })) all.push(c.id);
      assert.equal(all.length, 2);
    });

    it('replays idempotent requests and refuses mismatches', async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
      const a = await stripe.customers.create({ name: 'x' }, { idempotencyKey: 'node-key' });
      const b = await stripe.customers.create({ name: 'x' }, { idempotencyKey: 'node-key' });
      assert.equal(a.id, b.id);
      assert.equal(b.lastResponse.headers['idempotent-replayed'], 'true');
      await assert.rejects(stripe.customers.create({ name: 'y' }, { idempotencyKey: 'node-key' }), (err) => {
        assert.equal(err.type, 'StripeIdempotencyError');
        return true;
      });
    });

    it('answers errors in Stripe\'s envelope', async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
      await assert.rejects(stripe.customers.retrieve('cus_missing'), (err) => {
        assert.equal(err.type, 'StripeInvalidRequestError');
        assert.equal(err.statusCode, 404);
        assert.equal(err.code, 'resource_missing');
        assert.equal(err.param, 'id');
        assert.match(err.requestId, /^req_/);
        return true;
      });
      await assert.rejects(stripe.customers.create({ balance: 'lots' }), (err) => {
        assert.equal(err.statusCode, 400);
        assert.equal(err.param, 'balance');
        assert.equal(err.code, 'parameter_invalid_integer');
        return true;
      });
      await assert.rejects(stripe.customers.create({ nonsense: 1 }), (err) => err.param === 'nonsense' && err.code === 'parameter_unknown');
      await assert.rejects(server.client('sk_test_not_a_real_key').customers.list(), (err) => err.type === 'StripeAuthenticationError' && err.statusCode === 401);
      await assert.rejects(server.client(keys.publishableKey).customers.list(), (err) => err.statusCode === 403);
    });

    it('keeps accounts apart', async () => {
      const a = server.client((await server.newAccount()).secretKey);
      const b = server.client((await server.newAccount()).secretKey);
      const mine = await a.customers.create({ name: 'mine' }, { idempotencyKey: 'same' });
      const theirs = await b.customers.create({ name: 'theirs' }, { idempotencyKey: 'same' });
      assert.notEqual(mine.id, theirs.id);
      await assert.rejects(b.customers.retrieve(mine.id), (err) => err.statusCode === 404);
      assert.deepEqual((await b.customers.list()).data.map((c) => c.id), [theirs.id]);
    });
  });
}
