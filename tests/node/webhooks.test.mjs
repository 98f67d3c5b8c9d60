// Events, webhook endpoints and signed delivery, through stripe-node: a receiver on
// 127.0.0.1 verifies every delivery with stripe.webhooks.constructEvent.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { backends, startServer, validate } from './helpers.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check, what, timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** A webhook receiver: `secrets[path]` verifies, `plan[path]` lists statuses to answer first. */
async function startReceiver(stripe) {
  const receiver = { secrets: {}, plan: {}, deliveries: [] };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let status = (receiver.plan[req.url] || []).shift() ?? 200;
      const entry = { path: req.url, headers: req.headers, raw, event: null, error: null };
      try {
        entry.event = stripe.webhooks.constructEvent(raw, req.headers['stripe-signature'], receiver.secrets[req.url]);
      } catch (e) {
        entry.error = e;
        status = 400;
      }
      entry.status = status;
      receiver.deliveries.push(entry);
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(status < 300 ? 'received' : 'nope');
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  receiver.port = server.address().port;
  receiver.url = (path) => `http://127.0.0.1:${receiver.port}${path}`;
  receiver.on = (path) => receiver.deliveries.filter((d) => d.path === path);
  receiver.verified = (path) => receiver.on(path).filter((d) => d.event && d.status < 300).map((d) => d.event);
  // The sender keeps connections alive between deliveries: close those too.
  receiver.close = () => new Promise((r) => {
    server.close(r);
    server.closeAllConnections();
  });
  return receiver;
}

for (const backend of backends()) {
  describe(`webhooks (${backend})`, () => {
    let server;
    let stripe;
    let key;
    let receiver;
    const api = async (method, path, params) => {
      const body = params ? new URLSearchParams(params) : undefined;
      const r = await fetch(server.url + path, { method, body, headers: { Authorization: `Bearer ${key}` } });
      return { status: r.status, body: await r.json() };
    };
    const endpoint = async (path, enabledEvents = ['*']) => {
      const we = await stripe.webhookEndpoints.create({ url: receiver.url(path), enabled_events: enabledEvents });
      receiver.secrets[path] = we.secret;
      return we;
    };

    before(async () => {
      server = await startServer(backend, ['--webhook-retry-schedule', '0.2,0.5,1', '--webhook-timeout', '2']);
    });
    after(async () => {
      await server.stop();
    });
    const fresh = async () => {
      ({ secretKey: key } = await server.newAccount());
      stripe = server.client(key);
      receiver = await startReceiver(stripe);
    };
    const done = async () => {
      const failed = receiver.deliveries.filter((d) => d.error);
      await receiver.close();
      assert.deepEqual(failed.map((d) => String(d.error)), []);
    };

    it('creates, updates, lists and deletes endpoints; the secret only on create', async () => {
      await fresh();
      const we = await endpoint('/a', ['customer.created']);
      assert.match(we.id, /^we_[0-9A-Za-z]{24}$/);
      assert.match(we.secret, /^whsec_[0-9A-Za-z]{32}$/);
      assert.equal(we.status, 'enabled');
      validate('webhook_endpoint', we);
      const got = await stripe.webhookEndpoints.retrieve(we.id);
      assert.equal(got.secret, undefined);
      validate('webhook_endpoint', got);
      const up = await stripe.webhookEndpoints.update(we.id, { disabled: true, enabled_events: ['*'], description: 'x' });
      assert.equal(up.status, 'disabled');
      assert.deepEqual(up.enabled_events, ['*']);
      validate('webhook_endpoint', up);
      const list = await stripe.webhookEndpoints.list();
      assert.deepEqual(list.data.map((e) => e.id), [we.id]);
      const del = await stripe.webhookEndpoints.del(we.id);
      validate('deleted_webhook_endpoint', del);
      await assert.rejects(stripe.webhookEndpoints.retrieve(we.id), (e) => e.statusCode === 404);
      await assert.rejects(
        stripe.webhookEndpoints.create({ url: receiver.url('/x'), enabled_events: ['customer.created', 'nope'] }),
        (e) => e.statusCode === 400 && e.param === 'enabled_events[1]',
      );
      await assert.rejects(
        stripe.webhookEndpoints.create({ url: 'nope', enabled_events: ['*'] }),
        (e) => e.statusCode === 400 && e.param === 'url',
      );
      await done();
    });

    it('delivers signed events that constructEvent verifies; tampering is refused', async () => {
      await fresh();
      const we = await endpoint('/hook');
      const c = await stripe.customers.create({ name: 'Jenny' });
      await stripe.customers.update(c.id, { name: 'Jenny R.' });
      await stripe.customers.del(c.id);
      await waitFor(() => receiver.verified('/hook').length >= 3, '3 deliveries');
      await sleep(400);
      const got = receiver.verified('/hook');
      assert.deepEqual(got.map((e) => e.type).sort(), ['customer.created', 'customer.deleted', 'customer.updated']);
      const updated = got.find((e) => e.type === 'customer.updated');
      assert.deepEqual(updated.data.previous_attributes, { name: 'Jenny' });
      for (const e of got) validate('event', e);

      const first = receiver.on('/hook')[0];
      assert.equal(first.headers['content-type'], 'application/json; charset=utf-8');
      assert.equal(first.headers['user-agent'], 'Stripe/1.0 (+https://stripe.com/docs/webhooks)');
      const sig = first.headers['stripe-signature'];
      // The SDK's own signer, given the same timestamp, computes the same v1.
      const t = Number(/t=(\d+)/.exec(sig)[1]);
      const expected = stripe.webhooks.generateTestHeaderString({ payload: first.raw, secret: we.secret, timestamp: t });
      assert.equal(/v1=([0-9a-f]+)/.exec(sig)[1], /v1=([0-9a-f]+)/.exec(expected)[1]);
      assert.match(sig, /,v0=[0-9a-f]{64}$/);
      assert.throws(
        () => stripe.webhooks.constructEvent(first.raw.replace('"livemode":false', '"livemode":true'), sig, we.secret),
        (e) => e.type === 'StripeSignatureVerificationError',
      );
      for (const e of got) {
        await waitFor(async () => (await stripe.events.retrieve(e.id)).pending_webhooks === 0, 'pending_webhooks 0');
      }
      await done();
    });

    it('retries failures, records attempts, filters by enabled_events and skips disabled endpoints', async () => {
      await fresh();
      await endpoint('/flaky', ['customer.created']);
      receiver.plan['/flaky'] = [500, 500];
      await endpoint('/updates', ['customer.updated']);
      const off = await endpoint('/off');
      await stripe.webhookEndpoints.update(off.id, { disabled: true });
      const c = await stripe.customers.create({ name: 'n' });
      await stripe.customers.update(c.id, { name: 'm' });
      await waitFor(() => receiver.verified('/flaky').length === 1 && receiver.verified('/updates').length === 1, 'deliveries');
      await sleep(400);
      assert.deepEqual(receiver.on('/flaky').map((d) => d.status), [500, 500, 200]);
      assert.deepEqual(receiver.verified('/updates').map((e) => e.type), ['customer.updated']);
      assert.equal(receiver.on('/off').length, 0);
      const event = receiver.verified('/flaky')[0];
      // The success is recorded with the attempt, right after the receiver answered.
      const attempts = await waitFor(async () => {
        const r = await api('GET', `/v1/events/${event.id}/attempts`);
        assert.equal(r.status, 200);
        return r.body.data.length === 3 && r.body;
      }, 'three attempts');
      assert.deepEqual(attempts.data.map((a) => a.status_code), [200, 500, 500]);
      assert.deepEqual(attempts.data.map((a) => a.attempt), [3, 2, 1]);
      await done();
    });

    it('lists events by type, wildcard and types[]; resends on demand', async () => {
      await fresh();
      const we = await endpoint('/resend');
      const c = await stripe.customers.create({ name: 'a' });
      await stripe.customers.update(c.id, { name: 'b' });
      const all = await stripe.events.list();
      for (const e of all.data) validate('event', e);
      assert.deepEqual(all.data.map((e) => e.type), ['customer.updated', 'customer.created']);
      assert.equal((await stripe.events.list({ type: 'customer.*' })).data.length, 2);
      assert.equal((await stripe.events.list({ type: 'charge.*' })).data.length, 0);
      assert.deepEqual((await stripe.events.list({ types: ['customer.created'] })).data.map((e) => e.type), ['customer.created']);
      await waitFor(() => receiver.verified('/resend').length === 2, 'two deliveries');
      const r = await api('POST', `/v1/events/${all.data[1].id}/resend`, { webhook_endpoint: we.id });
      assert.equal(r.status, 200);
      await waitFor(() => receiver.verified('/resend').length === 3, 'the resend');
      assert.equal(receiver.verified('/resend')[2].id, all.data[1].id);
      await done();
    });
  });
}
