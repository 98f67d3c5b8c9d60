// PaymentMethods through stripe-node: cards, tokens and pm_card_* ids, bank debits,
// attach/detach, update, lists, and a customer's payment methods.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, validate } from './helpers.mjs';

// Stripe's succeeding test cards by brand: number, brand, funding, issuing country.
const BRANDS = [
  ['4242424242424242', 'visa', 'credit', 'US'],
  ['4000056655665556', 'visa', 'debit', 'US'],
  ['5555555555554444', 'mastercard', 'credit', 'US'],
  ['2223003122003222', 'mastercard', 'credit', 'US'],
  ['5200828282828210', 'mastercard', 'debit', 'US'],
  ['5105105105105100', 'mastercard', 'prepaid', 'US'],
  ['378282246310005', 'amex', 'credit', 'US'],
  ['371449635398431', 'amex', 'credit', 'US'],
  ['6011111111111117', 'discover', 'credit', 'US'],
  ['6011000990139424', 'discover', 'credit', 'US'],
  ['3056930009020004', 'diners', 'credit', 'US'],
  ['36227206271667', 'diners', 'credit', 'US'],
  ['3566002020360505', 'jcb', 'credit', 'JP'],
  ['6200000000000005', 'unionpay', 'credit', 'CN'],
];
const EXP_YEAR = new Date().getUTCFullYear() + 3;
const card = (number = '4242424242424242', extra = {}) => ({
  number, exp_month: 12, exp_year: EXP_YEAR, cvc: number.length === 15 ? '1234' : '123', ...extra,
});
const SEPA = {
  type: 'sepa_debit',
  sepa_debit: { iban: 'DE89370400440532013000' },
  billing_details: { name: 'Jenny Rosen', email: 'jenny@example.com' },
};

/** Events of `type` about `id`, oldest first. */
async function eventsFor(stripe, type, id) {
  const page = await stripe.events.list({ type, limit: 100 });
  for (const e of page.data) validate('event', e);
  return page.data.filter((e) => e.data.object.id === id).reverse();
}

for (const backend of backends()) {
  describe(`payment methods (${backend})`, () => {
    let server;
    let keys;
    let stripe;
    before(async () => {
      server = await startServer(backend);
    });
    after(async () => {
      await server.stop();
    });
    const fresh = async () => {
      keys = await server.newAccount();
      stripe = server.client(keys.secretKey);
    };
    const newCard = async (number, extra = {}) => {
      const pm = await stripe.paymentMethods.create({ type: 'card', card: card(number), ...extra });
      validate('payment_method', pm);
      return pm;
    };

    it('creates cards from raw numbers for every brand', async () => {
      await fresh();
      const fingerprints = new Set();
      for (const [number, brand, funding, country] of BRANDS) {
        const pm = await newCard(number);
        assert.match(pm.id, /^pm_[0-9A-Za-z]{24}$/);
        assert.equal(pm.type, 'card');
        assert.deepEqual([pm.card.brand, pm.card.funding, pm.card.country, pm.card.last4], [brand, funding, country, number.slice(-4)]);
        assert.deepEqual([pm.card.exp_month, pm.card.exp_year], [12, EXP_YEAR]);
        assert.equal(pm.card.checks.cvc_check, 'unchecked');
        assert.equal((await newCard(number)).card.fingerprint, pm.card.fingerprint);
        fingerprints.add(pm.card.fingerprint);
      }
      assert.equal(fingerprints.size, BRANDS.length);
      const other = server.client((await server.newAccount()).secretKey);
      const elsewhere = await other.paymentMethods.create({ type: 'card', card: card() });
      assert.ok(!fingerprints.has(elsewhere.card.fingerprint));
    });

    it('accepts tokens and pm_card_* ids', async () => {
      await fresh();
      const raw = await newCard('4242424242424242');
      const tok = await stripe.paymentMethods.create({ type: 'card', card: { token: 'tok_visa' } });
      validate('payment_method', tok);
      assert.equal(tok.card.fingerprint, raw.card.fingerprint);
      const a = await stripe.paymentMethods.retrieve('pm_card_visa');
      const b = await stripe.paymentMethods.retrieve('pm_card_visa');
      validate('payment_method', a);
      assert.notEqual(a.id, 'pm_card_visa');
      assert.notEqual(a.id, b.id);
      assert.equal(a.card.fingerprint, raw.card.fingerprint);
      assert.equal((await stripe.paymentMethods.retrieve(a.id)).id, a.id);
      await assert.rejects(stripe.paymentMethods.create({ type: 'card', card: { token: 'tok_nope' } }), (err) => {
        assert.equal(err.statusCode, 400);
        assert.equal(err.param, 'card[token]');
        return true;
      });
    });

    it('refuses bad numbers and dates as card errors', async () => {
      await fresh();
      await assert.rejects(stripe.paymentMethods.create({ type: 'card', card: card('4242424242424241') }), (err) => {
        assert.equal(err.type, 'StripeCardError');
        assert.equal(err.statusCode, 402);
        assert.equal(err.code, 'incorrect_number');
        return true;
      });
      await assert.rejects(stripe.paymentMethods.create({ type: 'card', card: card(undefined, { exp_month: 13 }) }), (err) => err.type === 'StripeCardError' && err.code === 'invalid_expiry_month');
      await assert.rejects(stripe.paymentMethods.create({ type: 'card', card: card(undefined, { exp_year: 2001 }) }), (err) => err.type === 'StripeCardError' && err.code === 'invalid_expiry_year');
      await assert.rejects(stripe.paymentMethods.create({ type: 'card', card: card(undefined, { cvc: 'abc' }) }), (err) => err.code === 'invalid_cvc');
      assert.deepEqual((await stripe.paymentMethods.list()).data, []);
    });

    it('creates bank debits', async () => {
      await fresh();
      const ach = await stripe.paymentMethods.create({
        type: 'us_bank_account',
        us_bank_account: { routing_number: '110000000', account_number: '000123456789', account_holder_type: 'individual' },
        billing_details: { name: 'Jenny Rosen' },
      });
      validate('payment_method', ach);
      assert.deepEqual([ach.us_bank_account.routing_number, ach.us_bank_account.last4, ach.us_bank_account.bank_name], ['110000000', '6789', 'STRIPE TEST BANK']);
      const sepa = await stripe.paymentMethods.create(SEPA);
      validate('payment_method', sepa);
      assert.deepEqual([sepa.sepa_debit.country, sepa.sepa_debit.last4, sepa.sepa_debit.bank_code], ['DE', '3000', '37040044']);
      assert.equal(sepa.billing_details.email, 'jenny@example.com');
      await assert.rejects(stripe.paymentMethods.create({ ...SEPA, billing_details: { name: 'Jenny Rosen' } }), (err) => err.param === 'billing_details[email]');
      await assert.rejects(stripe.paymentMethods.create({ ...SEPA, sepa_debit: { iban: 'DE89370400440532013001' } }), (err) => err.param === 'sepa_debit[iban]');
    });

    it('attaches, detaches and updates', async () => {
      await fresh();
      const cus = await stripe.customers.create({ email: 'jenny@example.com' });
      const pm = await newCard('4242424242424242', { billing_details: { address: { postal_code: '12345' } } });
      assert.equal(pm.card.checks.address_postal_code_check, 'unchecked');
      await assert.rejects(stripe.paymentMethods.update(pm.id, { metadata: { a: 'b' } }), (err) => err.statusCode === 400);
      const attached = await stripe.paymentMethods.attach(pm.id, { customer: cus.id });
      validate('payment_method', attached);
      assert.equal(attached.customer, cus.id);
      assert.deepEqual([attached.card.checks.address_postal_code_check, attached.card.checks.cvc_check], ['pass', 'pass']);
      const [attachedEvent, ...more] = await eventsFor(stripe, 'payment_method.attached', pm.id);
      assert.equal(more.length, 0);
      assert.equal(attachedEvent.data.object.customer, cus.id);

      const up = await stripe.paymentMethods.update(pm.id, {
        billing_details: { name: 'Jenny Rosen' },
        allow_redisplay: 'always',
        card: { exp_month: 3, exp_year: EXP_YEAR + 1 },
        metadata: { order: '6735' },
      });
      validate('payment_method', up);
      assert.deepEqual([up.billing_details.name, up.allow_redisplay, up.card.exp_month, up.card.exp_year, up.metadata.order],
        ['Jenny Rosen', 'always', 3, EXP_YEAR + 1, '6735']);
      const expanded = await stripe.paymentMethods.retrieve(pm.id, { expand: ['customer'] });
      assert.equal(expanded.customer.email, 'jenny@example.com');

      await assert.rejects(stripe.paymentMethods.attach('pm_card_visa_chargeDeclinedInsufficientFunds', { customer: cus.id }), (err) => {
        assert.equal(err.type, 'StripeCardError');
        assert.equal(err.decline_code, 'insufficient_funds');
        return true;
      });
      await assert.rejects(stripe.paymentMethods.attach(pm.id, { customer: (await stripe.customers.create()).id }), (err) => err.code === 'payment_method_unexpected_state');

      const detached = await stripe.paymentMethods.detach(pm.id);
      validate('payment_method', detached);
      assert.equal(detached.customer, null);
      const [detachedEvent] = await eventsFor(stripe, 'payment_method.detached', pm.id);
      assert.equal(detachedEvent.data.object.customer, null);
      assert.deepEqual(detachedEvent.data.previous_attributes, { customer: cus.id });
      const [updatedEvent] = await eventsFor(stripe, 'payment_method.updated', pm.id);
      assert.equal(updatedEvent.data.previous_attributes.allow_redisplay, 'unspecified');
      await assert.rejects(stripe.paymentMethods.detach(pm.id), (err) => err.statusCode === 400);
      await assert.rejects(stripe.paymentMethods.retrieve('pm_missing'), (err) => err.statusCode === 404 && err.code === 'resource_missing');
    });

    it('lists by customer, type and allow_redisplay, paginating on the index', async () => {
      await fresh();
      const cus = await stripe.customers.create();
      const other = await stripe.customers.create();
      const mine = [];
      for (let i = 0; i < 12; i++) {
        const params = i % 4 === 3 ? SEPA : { type: 'card', card: card(), allow_redisplay: i % 2 ? 'always' : 'limited' };
        const pm = await stripe.paymentMethods.create(params);
        mine.push(await stripe.paymentMethods.attach(pm.id, { customer: cus.id }));
        if (i % 3 === 0) await stripe.paymentMethods.attach('pm_card_visa', { customer: other.id });
      }
      const newestFirst = mine.map((p) => p.id).reverse();
      const seen = [];
      for await (const pm of stripe.customers.listPaymentMethods(cus.id, { limit: 5 })) seen.push(pm.id);
      assert.deepEqual(seen, newestFirst);
      const page = await stripe.customers.listPaymentMethods(cus.id, { limit: 3 });
      for (const pm of page.data) validate('payment_method', pm);
      assert.equal(page.has_more, true);
      assert.equal(page.url, `/v1/customers/${cus.id}/payment_methods`);

      const cards = mine.filter((p) => p.type === 'card').map((p) => p.id).reverse();
      const cardIds = [];
      for await (const pm of stripe.paymentMethods.list({ customer: cus.id, type: 'card', limit: 2 })) cardIds.push(pm.id);
      assert.deepEqual(cardIds, cards);
      const always = mine.filter((p) => p.allow_redisplay === 'always').map((p) => p.id).reverse();
      const alwaysIds = [];
      for await (const pm of stripe.customers.listPaymentMethods(cus.id, { allow_redisplay: 'always', type: 'card', limit: 2 })) alwaysIds.push(pm.id);
      assert.deepEqual(alwaysIds, always);
      const sepaPage = await stripe.customers.listPaymentMethods(cus.id, { type: 'sepa_debit' });
      assert.equal(sepaPage.data.length, 3);

      const one = await stripe.customers.retrievePaymentMethod(cus.id, mine[0].id);
      validate('payment_method', one);
      assert.equal(one.id, mine[0].id);
      const theirs = (await stripe.customers.listPaymentMethods(other.id)).data[0];
      await assert.rejects(stripe.customers.retrievePaymentMethod(cus.id, theirs.id), (err) => err.statusCode === 404);
      await assert.rejects(stripe.customers.listPaymentMethods('cus_missing'), (err) => err.statusCode === 404);
    });

    it('lets a publishable key create, and only create', async () => {
      await fresh();
      const browser = server.client(keys.publishableKey);
      const pm = await browser.paymentMethods.create({ type: 'card', card: card() });
      validate('payment_method', pm);
      const cus = await stripe.customers.create();
      for (const call of [
        () => browser.paymentMethods.retrieve(pm.id),
        () => browser.paymentMethods.list({ customer: cus.id }),
        () => browser.paymentMethods.attach(pm.id, { customer: cus.id }),
        () => browser.customers.listPaymentMethods(cus.id),
      ]) {
        await assert.rejects(call(), (err) => err.type === 'StripePermissionError' && err.statusCode === 403);
      }
    });

    it('attaches the payment method a customer is created with', async () => {
      await fresh();
      const cus = await stripe.customers.create({ payment_method: 'pm_card_visa', invoice_settings: { default_payment_method: 'pm_card_visa' } });
      validate('customer', cus);
      const [saved] = (await stripe.customers.listPaymentMethods(cus.id)).data;
      assert.equal(cus.invoice_settings.default_payment_method, saved.id);
      assert.equal((await eventsFor(stripe, 'payment_method.attached', saved.id)).length, 1);
      assert.equal((await eventsFor(stripe, 'customer.created', cus.id)).length, 1);
      await assert.rejects(stripe.customers.create({ payment_method: 'pm_nope' }), (err) => err.statusCode === 400 && err.param === 'payment_method');
      assert.equal((await stripe.customers.list()).data.length, 1);
    });
  });
}
