// The operator's side of Weft: the subcommands (pii-key, migrate, keys),
// configuration by flag and environment, and what happens to readiness
// and ingestion while PostgreSQL is down and after it comes back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import {
	useWeft, run, weftBin, repoRoot, freePort, sleep, within, sql, messageId, assertSuccess, assertError, show,
	TIMEOUT_SCALE,
} from './harness.mjs';

const weft = useWeft('cli');
const pgScript = path.join(repoRoot, 'scripts', 'pg');

// Polls fn until it returns true or ms have passed; resolves the last value.
async function eventually(fn, ms) {
	const deadline = Date.now() + ms * TIMEOUT_SCALE;
	let last;
	do {
		last = await fn();
		if (last === true) return true;
		await sleep(200);
	} while (Date.now() < deadline);
	return last;
}

test('pii-key create writes 32 bytes with mode 0600 and never overwrites', async () => {
	const file = path.join(weft.tmp, 'second.key');
	await weft.cli(['pii-key', 'create', file]);
	const st = fs.statSync(file);
	assert.equal(st.size, 32);
	assert.equal(st.mode & 0o777, 0o600, `mode ${(st.mode & 0o777).toString(8)}`);
	const before = fs.readFileSync(file);
	const again = await weft.cli(['pii-key', 'create', file], { allowFailure: true });
	assert.notEqual(again.code, 0, 'a second pii-key create on the same file succeeded');
	assert.deepEqual(fs.readFileSync(file), before, 'the key file changed');
});

test('migrate a second time changes nothing and succeeds', async () => {
	const tables = 'SELECT tablename FROM pg_tables WHERE schemaname = \'public\' ORDER BY 1';
	const before = await weft.query(tables);
	await weft.cli(['migrate']);
	assert.deepEqual(await weft.query(tables), before);
	const ready = await weft.get('/readyz');
	assert.equal(ready.status, 200, show(ready));
});

test('serve refuses to start without the PII key file', async () => {
	const port = await freePort();
	const res = await run(weftBin, ['serve', '--listen', `127.0.0.1:${port}`], {
		env: weft.env({ WEFT_PII_KEY_FILE: path.join(weft.tmp, 'no-such.key') }),
		allowFailure: true,
		timeoutMs: 20_000,
	});
	assert.equal(res.signal, null, `weft serve did not exit by itself: ${res.stderr}`);
	assert.notEqual(res.code, 0, 'weft serve started without its PII key');
});

test('--listen wins over WEFT_LISTEN', async () => {
	const [flagPort, envPort] = [await freePort(), await freePort()];
	const proc = spawn(weftBin, ['serve', '--listen', `127.0.0.1:${flagPort}`], {
		env: weft.env({ WEFT_LISTEN: `127.0.0.1:${envPort}` }),
		stdio: ['ignore', 'ignore', 'pipe'],
	});
	let stderr = '';
	proc.stderr.on('data', (c) => { stderr += c; });
	const exited = new Promise((r) => proc.on('exit', (code, signal) => r({ code, signal })));
	try {
		const up = await eventually(async () => {
			const res = await fetch(`http://127.0.0.1:${flagPort}/healthz`).catch(() => null);
			return res?.status === 200;
		}, 15_000);
		assert.equal(up, true, `no /healthz on the --listen port\n${stderr}`);
		const other = await fetch(`http://127.0.0.1:${envPort}/healthz`).catch(() => null);
		assert.equal(other, null, 'weft also answered on the WEFT_LISTEN port');
	} finally {
		proc.kill('SIGTERM');
		const res = await within(exited, 20_000 * TIMEOUT_SCALE);
		if (!res) proc.kill('SIGKILL');
		assert.deepEqual(res, { code: 0, signal: null }, `second weft on SIGTERM\n${stderr}`);
	}
});

test('a key from keys create works, is listed by prefix only, and stops working once revoked', async () => {
	const key = await weft.createKey('second-ws', 'write');
	assert.match(key, /^\S{16,}$/, 'the key looks too short');
	const list = await weft.cli(['keys', 'list', '--workspace', 'second-ws']);
	assert.ok(!list.stdout.includes(key), 'keys list printed a whole key');
	const [row] = await weft.query(sql`SELECT key_id FROM api_keys WHERE key_hash = sha256(convert_to(${key}, 'UTF8'))`);
	assert.ok(row, 'the key is not stored as its SHA-256');
	assert.match(list.stdout, new RegExp(`^\\s*${row.key_id}\\s`, 'm'), `key ${row.key_id} not in:\n${list.stdout}`);

	// Keys reach the server within a few seconds (it refreshes its keyring).
	const ev = () => ({ userId: 'u-key', event: 'Key Probe', messageId: messageId('key') });
	const accepted = await eventually(async () => (await weft.post('/v1/track', ev(), { key })).status === 200, 10_000);
	assert.equal(accepted, true, 'a new write key was not accepted within 10 s');

	await weft.cli(['keys', 'revoke', String(row.key_id)]);
	let last;
	const refused = await eventually(async () => {
		last = await weft.post('/v1/track', ev(), { key });
		return last.status === 401;
	}, 10_000);
	assert.equal(refused, true, `a revoked key still works after 10 s: ${show(last)}`);
	assertError(last, 401, 'unauthorized', 'revoked key');
});

test('while PostgreSQL is down: /readyz 503, ingest 503, /healthz 200; both recover after', async () => {
	const id = messageId('pgdown');
	const ev = { userId: 'u-pg', event: 'During Outage', messageId: id };
	await run(pgScript, ['stop', weft.pgDir]);
	try {
		let ready;
		const notReady = await eventually(async () => {
			ready = await weft.get('/readyz');
			return ready.status === 503;
		}, 15_000);
		assert.equal(notReady, true, `/readyz with PostgreSQL down: ${show(ready)}`);
		const res = await weft.post('/v1/track', ev);
		assert.equal(res.status, 503, `ingest with PostgreSQL down: ${show(res)}`);
		assert.equal(typeof res.json?.error?.code, 'string', show(res));
		await weft.assertHealthy('PostgreSQL going down');
	} finally {
		// Same folder, same port: the URL Weft has is good again.
		await run(pgScript, ['start', weft.pgDir], { timeoutMs: 120_000 });
	}
	let ready;
	const back = await eventually(async () => {
		ready = await weft.get('/readyz');
		return ready.status === 200;
	}, 30_000);
	assert.equal(back, true, `/readyz after PostgreSQL came back: ${show(ready)}`);
	let res;
	const stored = await eventually(async () => {
		res = await weft.post('/v1/track', ev);
		return res.status === 200;
	}, 30_000);
	assert.equal(stored, true, `ingest after PostgreSQL came back: ${show(res)}`);
	assertSuccess(res, 'after the outage');
	const rows = await weft.query(sql`SELECT count(*)::int AS n FROM events WHERE message_id = ${id}`);
	assert.deepEqual(rows, [{ n: 1 }]);
});

test('weft exits 0 on SIGTERM with no sanitizer report', () => weft.assertCleanExit());
