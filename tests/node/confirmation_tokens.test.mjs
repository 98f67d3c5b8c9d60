// ConfirmationTokens through stripe-node, as seed 004's server uses them: the
// `/create-confirm-intent` route creates and confirms a PaymentIntent with the
// token the browser made, in one call.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, validate } from './helpers.mjs';

/** What stripe.createConfirmationToken sends, with the publishable key. */
async function browserToken(server, publishableKey, form) {
  const r = await fetch(`${server.url}/v1/confirmation_tokens`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${publishableKey}`, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  assert.equal(r.status, 200, await r.clone().text());
  return r.json();
}

/** The seed's server route, as written there. */
async function createConfirmIntent(stripe, confirmationTokenId) {
  const intent = await stripe.paymentIntents.create({
    confirm: true,
    amount: 1099,
    currency: 'usd',
    automatic_payment_methods: { enabled: true },
    confirmation_token: confirmationTokenId,
  });
  return { client_secret: intent.client_secret, status: intent.status, intent };
}

for (const backend of backends()) {
  describe(`confirmation tokens (${backend})`, () => {
    let server;
    before(async () => {
      server = await startServer(backend);
    });
    after(async () => {
      await server.stop();
    });

    it('confirms a payment with a token the browser made', async () => {
      const keys = await server.newAccount();
      const stripe = server.client(keys.secretKey);
      const token = await browserToken(server, keys.publishableKey, {
        'payment_method_data[type]': 'card',
        'payment_method_data[card][number]': '4242424242424242',
        'payment_method_data[card][exp_month]': '12',
        'payment_method_data[card][exp_year]': '2040',
        'payment_method_data[card][cvc]': '123',
        'payment_method_data[billing_details][name]': 'Jenny Rosen',
      });
      validate('confirmation_token', token);
      assert.equal(token.payment_method_preview.card.last4, '4242');
      const answer = await createConfirmIntent(stripe, token.id);
      assert.equal(answer.status, 'succeeded');
      assert.match(answer.client_secret, /^pi_.+_secret_/);
      validate('payment_intent', answer.intent);
      const pm = await stripe.paymentMethods.retrieve(answer.intent.payment_method);
      assert.equal(pm.billing_details.name, 'Jenny Rosen');
      const used = await stripe.confirmationTokens.retrieve(token.id);
      validate('confirmation_token', used);
      assert.equal(used.payment_intent, answer.intent.id);
    });

    it('refuses a token used twice', async () => {
      const keys = await server.newAccount();
      const stripe = server.client(keys.secretKey);
      const token = await stripe.testHelpers.confirmationTokens.create({ payment_method: 'pm_card_visa' });
      validate('confirmation_token', token);
      await createConfirmIntent(stripe, token.id);
      await assert.rejects(createConfirmIntent(stripe, token.id), (err) => {
        assert.equal(err.type, 'StripeInvalidRequestError');
        assert.equal(err.statusCode, 400);
        assert.equal(err.param, 'confirmation_token');
        return true;
      });
    });

    it('saves the card when the token says setup_future_usage', async () => {
      const keys = await server.newAccount();
      const stripe = server.client(keys.secretKey);
      const customer = await stripe.customers.create();
      const token = await stripe.testHelpers.confirmationTokens.create({ payment_method: 'pm_card_visa', setup_future_usage: 'off_session' });
      const pi = await stripe.paymentIntents.create({
        confirm: true, amount: 1099, currency: 'usd', customer: customer.id, confirmation_token: token.id,
      });
      assert.equal(pi.status, 'succeeded');
      const saved = await stripe.customers.listPaymentMethods(customer.id);
      assert.deepEqual(saved.data.map((p) => p.id), [pi.payment_method]);
    });
  });
}
