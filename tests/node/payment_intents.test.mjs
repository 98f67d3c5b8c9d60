// PaymentIntents through stripe-node: the seed flows as a Node integration writes them.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, validate } from './helpers.mjs';

/** Submits payground's hosted 3-D Secure page as a browser would. */
async function authenticate(pi, action = 'complete') {
  const na = pi.next_action;
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

for (const backend of backends()) {
  describe(`payment intents (${backend})`, () => {
    let server;
    let stripe;
    let keys;
    before(async () => {
      server = await startServer(backend);
    });
    after(async () => {
      await server.stop();
    });

    it('charges a card and records charge and balance transaction', async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
      const pi = await stripe.paymentIntents.create({ amount: 2000, currency: 'usd', payment_method: 'pm_card_visa', confirm: true });
      validate('payment_intent', pi);
      assert.equal(pi.status, 'succeeded');
      const charge = await stripe.charges.retrieve(pi.latest_charge, { expand: ['balance_transaction'] });
      validate('charge', charge);
      assert.equal(charge.balance_transaction.fee, 88);
      assert.equal(charge.balance_transaction.net, 1912);
    });

    it('raises StripeCardError with err.raw.payment_intent on a decline (seed 001)', async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
      const customer = await stripe.customers.create({ email: 'jenny@example.com' });
      await assert.rejects(
        stripe.paymentIntents.create({ amount: 1099, currency: 'usd', customer: customer.id, payment_method: 'pm_card_visa_chargeDeclinedInsufficientFunds', off_session: true, confirm: true }),
        (err) => {
          assert.equal(err.type, 'StripeCardError');
          assert.equal(err.statusCode, 402);
          assert.equal(err.code, 'card_declined');
          assert.equal(err.decline_code, 'insufficient_funds');
          assert.equal(err.raw.payment_intent.status, 'requires_payment_method');
          assert.match(err.raw.payment_intent.id, /^pi_/);
          validate('payment_intent', err.raw.payment_intent);
          return true;
        },
      );
    });

    it('saves a card with setup_future_usage, then charges it off-session (seed 001)', async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
      const customer = await stripe.customers.create();
      const first = await stripe.paymentIntents.create({
        amount: 1099, currency: 'usd', customer: customer.id, payment_method: 'pm_card_authenticationRequiredOnSetup',
        setup_future_usage: 'off_session', confirm: true, return_url: 'https://merchant.example/return',
      });
      assert.equal(first.status, 'requires_action');
      const r = await authenticate(first);
      assert.equal(r.status, 303);
      const location = new URL(r.headers.get('location'));
      assert.equal(location.searchParams.get('redirect_status'), 'succeeded');
      assert.equal(location.searchParams.get('payment_intent'), first.id);
      const done = await stripe.paymentIntents.retrieve(first.id);
      assert.equal(done.status, 'succeeded');
      const saved = await stripe.paymentMethods.retrieve(done.payment_method);
      assert.equal(saved.customer, customer.id);
      const later = await stripe.paymentIntents.create({
        amount: 1099, currency: 'usd', customer: customer.id, payment_method: saved.id, off_session: true, confirm: true,
      });
      assert.equal(later.status, 'succeeded');
    });

    it('captures manually, refunds, and cancels', async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
      const held = await stripe.paymentIntents.create({ amount: 5000, currency: 'usd', payment_method: 'pm_card_visa', confirm: true, capture_method: 'manual' });
      assert.equal(held.status, 'requires_capture');
      const captured = await stripe.paymentIntents.capture(held.id, { amount_to_capture: 4000 });
      assert.equal(captured.amount_received, 4000);
      const refund = await stripe.refunds.create({ payment_intent: held.id, amount: 1000 });
      validate('refund', refund);
      const charge = await stripe.charges.retrieve(captured.latest_charge);
      assert.equal(charge.amount_refunded, 2000); // 1000 released at capture + 1000 refunded
      const open = await stripe.paymentIntents.create({ amount: 5000, currency: 'usd' });
      const canceled = await stripe.paymentIntents.cancel(open.id, { cancellation_reason: 'abandoned' });
      assert.equal(canceled.status, 'canceled');
      await assert.rejects(stripe.paymentIntents.cancel(captured.id), (err) => err.code === 'payment_intent_unexpected_state');
    });

    it('lets the browser retrieve and confirm with the publishable key and client secret', async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
      const browser = server.client(keys.publishableKey);
      const pi = await stripe.paymentIntents.create({ amount: 2000, currency: 'usd', metadata: { internal: 'yes' } });
      const seen = await browser.paymentIntents.retrieve(pi.id, { client_secret: pi.client_secret });
      assert.equal(seen.status, 'requires_payment_method');
      assert.equal(seen.metadata, undefined);
      const confirmed = await browser.paymentIntents.confirm(pi.id, { client_secret: pi.client_secret, payment_method: 'pm_card_visa' });
      assert.equal(confirmed.status, 'succeeded');
      await assert.rejects(browser.paymentIntents.retrieve(pi.id, { client_secret: 'pi_x_secret_y' }), (err) => err.statusCode === 404);
      await assert.rejects(browser.paymentIntents.list(), (err) => err.statusCode === 403);
    });
  });
}
