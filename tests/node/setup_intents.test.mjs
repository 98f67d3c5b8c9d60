// SetupIntents through stripe-node: saving a card for later, as a Node integration
// writes it, then charging it off-session; declines, 3-D Secure, attempts, events.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, validate } from './helpers.mjs';

/** Submits payground's hosted 3-D Secure page as a browser would. */
async function authenticate(intent, action = 'complete') {
  const na = intent.next_action;
  const url = na.type === 'redirect_to_url' ? na.redirect_to_url.url : na.use_stripe_sdk.stripe_js;
  const page = await (await fetch(url)).text();
  assert.match(page, /Complete authentication/);
  const fields = new URLSearchParams();
  for (const m of page.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields.set(m[1], m[2].replace(/&amp;/g, '&').replace(/&quot;/g, '"'));
  }
  fields.set('action', action);
  return fetch(url, { method: 'POST', body: fields, redirect: 'manual' });
}

/** The account's event types after `before`, oldest first. */
async function eventsSince(stripe, before) {
  const page = await stripe.events.list(before ? { limit: 100, ending_before: before } : { limit: 100 });
  return page.data.map((e) => e.type).reverse();
}

async function newestEvent(stripe) {
  const page = await stripe.events.list({ limit: 1 });
  return page.data.length ? page.data[0].id : undefined;
}

for (const backend of backends()) {
  describe(`setup intents (${backend})`, () => {
    let server;
    before(async () => {
      server = await startServer(backend);
    });
    after(async () => {
      await server.stop();
    });

    async function client() {
      const keys = await server.newAccount();
      return server.client(keys.secretKey);
    }

    it('saves a card, then charges it off-session', async () => {
      const stripe = await client();
      const customer = await stripe.customers.create({ email: 'jenny@example.com' });
      const before = await newestEvent(stripe);
      const si = await stripe.setupIntents.create({ customer: customer.id, payment_method: 'pm_card_visa', confirm: true });
      validate('setup_intent', si);
      assert.equal(si.status, 'succeeded');
      assert.equal(si.usage, 'off_session');
      const attempts = await stripe.setupAttempts.list({ setup_intent: si.id });
      assert.equal(attempts.data.length, 1);
      validate('setup_attempt', attempts.data[0]);
      assert.equal(attempts.data[0].status, 'succeeded');
      assert.deepEqual(await eventsSince(stripe, before), ['setup_intent.created', 'payment_method.attached', 'setup_intent.succeeded']);
      const pms = await stripe.customers.listPaymentMethods(customer.id);
      assert.deepEqual(pms.data.map((p) => p.id), [si.payment_method]);
      const pi = await stripe.paymentIntents.create({
        amount: 1099, currency: 'usd', customer: customer.id, payment_method: si.payment_method, off_session: true, confirm: true,
      });
      assert.equal(pi.status, 'succeeded');
    });

    it('fails a declining card with StripeCardError and err.raw.setup_intent', async () => {
      const stripe = await client();
      const si = await stripe.setupIntents.create({ payment_method_types: ['card'] });
      await assert.rejects(
        stripe.setupIntents.confirm(si.id, { payment_method: 'pm_card_chargeDeclinedInsufficientFunds' }),
        (err) => {
          assert.equal(err.type, 'StripeCardError');
          assert.equal(err.statusCode, 402);
          assert.equal(err.code, 'card_declined');
          assert.equal(err.decline_code, 'insufficient_funds');
          assert.equal(err.raw.setup_intent.status, 'requires_payment_method');
          validate('setup_intent', err.raw.setup_intent);
          return true;
        },
      );
      const failed = await stripe.setupIntents.retrieve(si.id);
      assert.equal(failed.last_setup_error.decline_code, 'insufficient_funds');
    });

    it('authenticates 3155 during setup, after which it charges off-session', async () => {
      const stripe = await client();
      const customer = await stripe.customers.create();
      const si = await stripe.setupIntents.create({
        customer: customer.id, payment_method: 'pm_card_authenticationRequiredOnSetup', confirm: true, return_url: 'https://example.com/back',
      });
      assert.equal(si.status, 'requires_action');
      assert.equal(si.next_action.type, 'redirect_to_url');
      const r = await authenticate(si);
      assert.equal(r.status, 303);
      const back = new URL(r.headers.get('location'));
      assert.equal(back.searchParams.get('setup_intent'), si.id);
      assert.equal(back.searchParams.get('redirect_status'), 'succeeded');
      const done = await stripe.setupIntents.retrieve(si.id);
      validate('setup_intent', done);
      assert.equal(done.status, 'succeeded');
      const pi = await stripe.paymentIntents.create({
        amount: 1099, currency: 'usd', customer: customer.id, payment_method: done.payment_method, off_session: true, confirm: true,
      });
      assert.equal(pi.status, 'succeeded');
    });

    it('keeps 3184 needing authentication off-session', async () => {
      const stripe = await client();
      const customer = await stripe.customers.create();
      const si = await stripe.setupIntents.create({ customer: customer.id, payment_method: 'pm_card_authenticationRequired', confirm: true });
      assert.equal(si.next_action.type, 'use_stripe_sdk');
      await authenticate(si);
      assert.equal((await stripe.setupIntents.retrieve(si.id)).status, 'succeeded');
      await assert.rejects(
        stripe.paymentIntents.create({ amount: 1099, currency: 'usd', customer: customer.id, payment_method: si.payment_method, off_session: true, confirm: true }),
        (err) => err.code === 'authentication_required',
      );
    });

    it('cancels, and refuses what a canceled intent cannot do', async () => {
      const stripe = await client();
      const si = await stripe.setupIntents.create({});
      const canceled = await stripe.setupIntents.cancel(si.id, { cancellation_reason: 'abandoned' });
      validate('setup_intent', canceled);
      assert.equal(canceled.status, 'canceled');
      await assert.rejects(stripe.setupIntents.confirm(si.id, { payment_method: 'pm_card_visa' }),
        (err) => err.type === 'StripeInvalidRequestError' && err.code === 'setup_intent_unexpected_state');
    });

    it('lists by customer', async () => {
      const stripe = await client();
      const customer = await stripe.customers.create();
      const a = await stripe.setupIntents.create({ customer: customer.id });
      await stripe.setupIntents.create({});
      const list = await stripe.setupIntents.list({ customer: customer.id });
      assert.deepEqual(list.data.map((s) => s.id), [a.id]);
      for (const s of list.data) validate('setup_intent', s);
    });
  });
}
