// CustomerSessions through stripe-node: the seed 004 server's
// `/create-customer-session`, and what its client secret lets the Payment Element
// see with the publishable key.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, validate } from './helpers.mjs';

for (const backend of backends()) {
  describe(`customer sessions (${backend})`, () => {
    let server;
    before(async () => {
      server = await startServer(backend);
    });
    after(async () => {
      await server.stop();
    });

    it('lets the Payment Element list and remove the saved cards it allows', async () => {
      const keys = await server.newAccount();
      const stripe = server.client(keys.secretKey);
      const customer = await stripe.customers.create();
      const shown = await stripe.paymentMethods.attach('pm_card_visa', { customer: customer.id });
      await stripe.paymentMethods.update(shown.id, { allow_redisplay: 'always' });
      await stripe.paymentMethods.attach('pm_card_mastercard', { customer: customer.id });
      const session = await stripe.customerSessions.create({
        customer: customer.id,
        components: { payment_element: { enabled: true, features: { payment_method_redisplay: 'enabled', payment_method_remove: 'enabled' } } },
      });
      validate('customer_session', session);
      const headers = { Authorization: `Bearer ${keys.publishableKey}` };
      const params = new URLSearchParams({
        type: 'deferred_intent', 'deferred_intent[mode]': 'payment', 'deferred_intent[amount]': '1099',
        'deferred_intent[currency]': 'usd', customer_session_client_secret: session.client_secret,
      });
      const elements = await (await fetch(`${server.url}/v1/elements/sessions?${params}`, { headers })).json();
      assert.deepEqual(elements.customer.payment_methods.map((pm) => pm.id), [shown.id]);
      const removed = await fetch(`${server.url}/v1/elements/payment_methods/${shown.id}/detach`, {
        method: 'POST', headers, body: new URLSearchParams({ customer_session_client_secret: session.client_secret }),
      });
      assert.equal(removed.status, 200);
      assert.equal((await stripe.paymentMethods.retrieve(shown.id)).customer, null);
    });

    it('refuses a session without exactly one component', async () => {
      const keys = await server.newAccount();
      const stripe = server.client(keys.secretKey);
      const customer = await stripe.customers.create();
      await assert.rejects(
        stripe.customerSessions.create({ customer: customer.id, components: {} }),
        (err) => err.type === 'StripeInvalidRequestError' && err.param === 'components',
      );
    });
  });
}
