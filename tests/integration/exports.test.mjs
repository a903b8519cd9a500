// Audience exports (docs/audiences.md, "Exports"): full and delta exports
// to files and to a webhook, their fields (identifier values, traits,
// computed traits, SHA-256 match keys where the privacy policy keeps
// them), the request errors, a webhook receiver that fails a few times
// first and one that refuses, delta cursors per destination, and jobs
// killed with SIGKILL midway that resume without loss or double sends.
//
// One PostgreSQL and one Weft (checkpoints every 300 ms, so entries and
// exits reach audience_changes quickly; webhook retries from 100 ms) serve
// the file. Tests run in order and build on each other's profiles.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { useWeft, show, sql, ev, eventually, sleep } from './harness.mjs';

const weft = useWeft('exports', {
	env: { WEFT_CHECKPOINT_INTERVAL: '300', WEFT_EXPORT_RETRY_BASE_MS: '100' },
});
const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}`;
const user = (i) => `ex-${RUN}-${i}`;
const email = (i) => `Person.${i}.${RUN}@Example.com`;
const N = 24;

function admin(method, p, body) {
	return weft.request(method, p, { key: weft.keys.admin, body });
}

const read = (p) => weft.get(p, { key: weft.keys.read });
const sha256 = (s) => crypto.createHash('sha256').update(s).digest('hex');

async function members(key) {
	const out = [];
	let cursor = '';
	for (;;) {
		const res = await read(`/v1/audiences/${key}/members?limit=100${cursor ? `&cursor=${cursor}` : ''}`);
		assert.equal(res.status, 200, show(res));
		out.push(...res.json.members.map((m) => m.profile_id));
		if (!res.json.next) return out.sort();
		cursor = res.json.next;
	}
}

async function startExport(key, body) {
	const res = await admin('POST', `/v1/audiences/${key}/exports`, body);
	assert.equal(res.status, 202, `POST exports: ${show(res)}`);
	assert.match(res.json.id, /^exp_\d+$/);
	assert.equal(res.headers.get('location'), `/v1/exports/${res.json.id}`);
	return res.json.id;
}

async function finished(id, ms = 20_000) {
	const res = await eventually(() => read(`/v1/exports/${id}`),
		(r) => r.status === 200 && ['done', 'failed'].includes(r.json.status), ms);
	assert.equal(res.status, 200, show(res));
	assert.ok(['done', 'failed'].includes(res.json.status), `export ${id} did not finish: ${show(res)}`);
	return res.json;
}

async function fileOf(id) {
	const res = await read(`/v1/exports/${id}/file`);
	assert.equal(res.status, 200, show(res));
	return res;
}

// RFC 4180 CSV into rows of cells.
function parseCsv(text) {
	const rows = [];
	let row = [], cell = '', quoted = false;
	for (let i = 0; i < text.length; i++) {
		const c = text[i];
		if (quoted) {
			if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
			else if (c === '"') quoted = false;
			else cell += c;
		} else if (c === '"') quoted = true;
		else if (c === ',') { row.push(cell); cell = ''; }
		else if (c === '\n') { row.push(cell); rows.push(row); row = []; cell = ''; }
		else cell += c;
	}
	assert.equal(cell + row.join(''), '', 'the CSV does not end with a newline');
	return rows;
}

// The changes the engine has saved for an audience (they reach the table at checkpoints).
async function changesSaved(key, n) {
	const rows = await eventually(() => weft.query(sql`SELECT c.change_id FROM audience_changes c
		JOIN audiences a USING (workspace_id, audience_id) WHERE a.key = ${key}`), (r) => r.length >= n, 10_000);
	assert.ok(rows.length >= n, `audience_changes holds ${rows.length} rows of ${key}, want ${n}`);
}

// A webhook receiver: fails the first `failFirst` requests with failStatus,
// then answers 200 (or always `status`); keeps every batch it accepted.
function receiver({ failFirst = 0, failStatus = 503, status = 200, holdMs = 0 } = {}) {
	const r = { requests: 0, batches: [], messages: [], status };
	r.server = http.createServer((req, res) => {
		let body = '';
		req.on('data', (d) => { body += d; });
		req.on('end', async () => {
			r.requests++;
			if (r.requests <= failFirst || r.status !== 200) {
				res.writeHead(r.requests <= failFirst ? failStatus : r.status, { 'content-type': 'application/json' });
				res.end('{"error":"not now"}');
				return;
			}
			if (holdMs) await sleep(holdMs);
			const json = JSON.parse(body);
			r.batches.push(json);
			r.messages.push(...json.batch);
			r.contentType = req.headers['content-type'];
			res.writeHead(200, { 'content-type': 'application/json' });
			res.end('{"success":true}');
		});
	});
	return new Promise((resolve) => r.server.listen(0, '127.0.0.1', () => {
		r.url = `http://127.0.0.1:${r.server.address().port}/hook`;
		resolve(r);
	}));
}

const servers = [];
after(() => Promise.all(servers.map((s) => new Promise((r) => s.server.close(r)))));
async function newReceiver(opts) {
	const r = await receiver(opts);
	servers.push(r);
	return r;
}

// ---------------------------------------------------------------------------

test('setup: profiles, a policy that keeps emails as SHA-256, an audience and a computed trait', async () => {
	let res = await admin('PUT', '/v1/admin/privacy-policy',
		{ rules: [{ path: 'traits.email', action: 'sha256' }], include_default: true });
	assert.equal(res.status, 200, show(res));
	res = await admin('POST', '/v1/computed-traits',
		{ key: 'ex_orders', kind: 'count', event: 'Order Completed' });
	assert.equal(res.status, 201, show(res));
	res = await admin('POST', '/v1/audiences', { key: 'ex_pro', name: 'Pro', definition: "trait('plan') = 'pro'" });
	assert.equal(res.status, 201, show(res));
	// The policy is read by the ingest path within a refresh (2 s).
	await sleep(2500);
	const events = [];
	for (let i = 0; i < N; i++) {
		events.push(ev('identify', {
			userId: user(i), anonymousId: `anon-${RUN}-${i}`,
			traits: { plan: i % 3 ? 'pro' : 'free', age: 20 + i, email: email(i), note: i === 1 ? 'a, "quoted"\nline' : 'x' },
		}));
		for (let k = 0; k < i % 4; k++) events.push(ev('track', { userId: user(i), event: 'Order Completed', properties: { total: 10 } }));
	}
	await weft.sendBatches(events);
	await weft.settle();
	assert.equal((await members('ex_pro')).length, N - Math.ceil(N / 3));
});

test('request errors are clear JSON', async () => {
	const bad = [
		[{ format: 'xml' }, /'format' is csv or ndjson/],
		[{ mode: 'sometimes' }, /'mode' is full or delta/],
		[{ fields: ['trait'] }, /a field is identifier:<type>/],
		[{ fields: ['match_key:name'] }, /match keys exist for email and phone/],
		[{ fields: ['trait:email', 'trait:email'] }, /two fields would be written as 'email'/],
		[{ fields: ['trait:profile_id'] }, /every row has 'profile_id'/],
		[{ destination: { type: 'file', path: '/etc/passwd' } }, /named by Weft/],
		[{ destination: { type: 'webhook', url: 'ftp://x' } }, /needs a 'url'/],
		[{ destination: { type: 'webhook', url: 'http://x', batch_size: 0 } }, /batch_size/],
		[{ destination: { type: 's3' } }, /unknown/],
		[{ limit: 3 }, /unknown member 'limit'/],
	];
	for (const [body, re] of bad) {
		const res = await admin('POST', '/v1/audiences/ex_pro/exports', body);
		assert.equal(res.status, 400, `${JSON.stringify(body)}: ${show(res)}`);
		assert.equal(res.json.error.code, 'invalid_export');
		assert.match(res.json.error.message, re, JSON.stringify(body));
	}
	let res = await admin('POST', '/v1/audiences/nope/exports', {});
	assert.equal(res.status, 404, show(res));
	res = await weft.request('POST', '/v1/audiences/ex_pro/exports', { key: weft.keys.read, body: {} });
	assert.equal(res.status, 403, show(res));
	res = await read('/v1/exports/exp_999999');
	assert.equal(res.status, 404, show(res));
	res = await read('/v1/exports/../../etc/passwd');
	assert.equal(res.status, 404, show(res));
	res = await weft.get('/v1/exports/exp_1');
	assert.equal(res.status, 401, show(res));
});

test('a full CSV export to a file holds every member with its fields', async () => {
	const id = await startExport('ex_pro', {
		format: 'csv',
		fields: ['identifier:user_id', 'trait:plan', 'trait:age', 'trait:note', 'computed:ex_orders', 'match_key:email'],
	});
	const job = await finished(id);
	const want = await members('ex_pro');
	assert.equal(job.status, 'done', JSON.stringify(job));
	assert.equal(job.rows_done, want.length);
	assert.equal(job.rows_total, want.length);
	assert.equal(job.file.name, `${id}.csv`);
	const res = await fileOf(id);
	assert.match(res.headers.get('content-type'), /^text\/csv/);
	assert.equal(Number(res.headers.get('content-length')), job.file.bytes);
	const rows = parseCsv(res.text);
	assert.deepEqual(rows[0], ['profile_id', 'user_id', 'plan', 'age', 'note', 'ex_orders', 'email_sha256']);
	assert.deepEqual(rows.slice(1).map((r) => r[0]).sort(), want);
	for (const r of rows.slice(1)) {
		const i = Number(r[1].split('-').pop());
		assert.equal(r[1], user(i));
		assert.equal(r[2], 'pro');
		assert.equal(r[3], String(20 + i));
		assert.equal(r[4], i === 1 ? 'a, "quoted"\nline' : 'x');
		assert.equal(r[5], String(i % 4));
		// The policy stored the email as its SHA-256 (of the normalised value).
		assert.equal(r[6], sha256(email(i).toLowerCase()));
	}
	// In the data folder under its own name; nothing half-written left beside it.
	const dir = path.join(weft.dataDir, 'exports');
	assert.ok(fs.readdirSync(dir).includes(`${id}.csv`));
	assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.part')), []);
});

test('NDJSON rows carry JSON values; unknown traits are null', async () => {
	const id = await startExport('ex_pro', { format: 'ndjson', fields: ['trait:age', 'trait:missing', 'identifier:anonymous_id'] });
	const job = await finished(id);
	assert.equal(job.status, 'done', JSON.stringify(job));
	const res = await fileOf(id);
	assert.match(res.headers.get('content-type'), /ndjson/);
	const lines = res.text.trim().split('\n').map((l) => JSON.parse(l));
	assert.equal(lines.length, job.rows_done);
	for (const l of lines) {
		assert.deepEqual(Object.keys(l), ['profile_id', 'age', 'missing', 'anonymous_id']);
		assert.equal(typeof l.age, 'number');
		assert.equal(l.missing, null);
		assert.match(l.anonymous_id, new RegExp(`^anon-${RUN}-\\d+$`));
	}
});

test('delta exports to a file send what changed since the last one', async () => {
	await changesSaved('ex_pro', (await members('ex_pro')).length);
	const first = await startExport('ex_pro', { mode: 'delta', fields: ['identifier:user_id'] });
	const job1 = await finished(first);
	assert.equal(job1.status, 'done', JSON.stringify(job1));
	const rows1 = parseCsv((await fileOf(first)).text);
	assert.deepEqual(rows1[0], ['profile_id', 'change', 'at', 'cause', 'user_id']);
	assert.deepEqual(rows1.slice(1).map((r) => r[0]).sort(), await members('ex_pro'));
	assert.ok(rows1.slice(1).every((r) => r[1] === 'entered' && r[3] === 'event'));

	// Two leave, one joins.
	const before = await weft.query(sql`SELECT count(*)::int AS n FROM audience_changes`);
	await weft.sendBatches([
		ev('identify', { userId: user(1), traits: { plan: 'free' } }),
		ev('identify', { userId: user(2), traits: { plan: 'free' } }),
		ev('identify', { userId: user(3), traits: { plan: 'pro' } }),
	]);
	await weft.settle();
	await eventually(() => weft.query(sql`SELECT count(*)::int AS n FROM audience_changes`), (r) => r[0].n >= before[0].n + 3, 10_000);
	const second = await startExport('ex_pro', { mode: 'delta', fields: ['identifier:user_id'] });
	const job2 = await finished(second);
	assert.equal(job2.rows_done, 3, JSON.stringify(job2));
	assert.equal(job2.changes.after, job1.changes.up_to);
	const rows2 = parseCsv((await fileOf(second)).text).slice(1);
	assert.deepEqual(rows2.map((r) => `${r[4]} ${r[1]}`).sort(),
		[`${user(1)} exited`, `${user(2)} exited`, `${user(3)} entered`].sort());

	// Nothing changed since: an empty delta (the header alone).
	const third = await startExport('ex_pro', { mode: 'delta' });
	const job3 = await finished(third);
	assert.equal(job3.rows_done, 0);
	assert.equal((await fileOf(third)).text, 'profile_id,change,at,cause\n');
});

test('a webhook that fails a few times first gets every member once, as Segment identify calls', async () => {
	const hook = await newReceiver({ failFirst: 3 });
	const id = await startExport('ex_pro', {
		mode: 'full', fields: ['trait:plan', 'match_key:email'],
		destination: { type: 'webhook', url: hook.url, batch_size: 4 },
	});
	const job = await finished(id, 30_000);
	assert.equal(job.status, 'done', JSON.stringify(job));
	const want = await members('ex_pro');
	assert.equal(hook.requests, 3 + Math.ceil(want.length / 4));
	assert.equal(hook.contentType, 'application/json');
	assert.ok(hook.batches.every((b) => b.batch.length <= 4 && typeof b.sentAt === 'string'));
	const ids = hook.messages.map((m) => m.messageId);
	assert.equal(new Set(ids).size, ids.length, 'a messageId was sent twice');
	assert.deepEqual(hook.messages.map((m) => m.traits.profile_id).sort(), want);
	for (const m of hook.messages) {
		assert.equal(m.type, 'identify');
		assert.equal(m.traits.ex_pro, true);
		assert.equal(m.traits.plan, 'pro');
		const i = Number(m.userId.split('-').pop());
		assert.equal(m.userId, user(i));
		assert.equal(m.anonymousId, `anon-${RUN}-${i}`);
		assert.equal(m.traits.email_sha256, sha256(email(i).toLowerCase()));
		assert.deepEqual(m.context.personas, { computation_class: 'audience', computation_key: 'ex_pro', computation_id: m.context.personas.computation_id });
	}
});

test('delta to a webhook as track calls: entries and exits, with stable messageIds', async () => {
	const hook = await newReceiver();
	const body = { mode: 'delta', destination: { type: 'webhook', url: hook.url, event: 'track' } };
	const job = await finished(await startExport('ex_pro', body));
	assert.equal(job.status, 'done', JSON.stringify(job));
	const exits = hook.messages.filter((m) => m.event === 'Audience Exited');
	const entries = hook.messages.filter((m) => m.event === 'Audience Entered');
	assert.equal(exits.length, 2);
	assert.ok(entries.length >= (await members('ex_pro')).length);
	for (const m of hook.messages) {
		assert.equal(m.type, 'track');
		assert.equal(m.properties.audience_key, 'ex_pro');
		assert.equal(m.properties.ex_pro, m.event === 'Audience Entered');
	}
	// This destination's cursor is where the job ended: the next delta sends nothing.
	const again = await finished(await startExport('ex_pro', body));
	assert.equal(again.rows_done, 0);
	assert.equal(hook.messages.length, job.rows_done);
});

test('a webhook that refuses a batch fails the job with its answer; the next delta resends', async () => {
	const hook = await newReceiver({ status: 400 });
	const body = { mode: 'delta', destination: { type: 'webhook', url: hook.url } };
	const job = await finished(await startExport('ex_pro', body));
	assert.equal(job.status, 'failed');
	assert.match(job.error, /answered 400/);
	assert.equal(hook.requests, 1, 'a 400 is not retried');
	// The cursor did not move: a later delta to the same url (now healthy) sends them all.
	hook.status = 200;
	const next = await finished(await startExport('ex_pro', body));
	assert.equal(next.status, 'done', JSON.stringify(next));
	assert.equal(next.rows_total, job.rows_total);
	assert.ok(next.rows_done > 0 && hook.messages.length === next.rows_done);
});

test('jobs killed midway (SIGKILL) resume: no row lost, none repeated beyond the batch in flight', async () => {
	const want = await members('ex_pro');
	const hook = await newReceiver();
	weft.extraEnv.WEFT_TEST_EXPORT_DELAY_MS = '300';
	await weft.restart();
	const web = await startExport('ex_pro', { mode: 'delta', destination: { type: 'webhook', url: hook.url, batch_size: 2 } });
	await eventually(() => hook.batches.length, (n) => n >= 2, 10_000);
	assert.ok(hook.batches.length < Math.ceil(want.length / 2), 'the job finished before it could be killed');
	await weft.stop({ signal: 'SIGKILL' });
	delete weft.extraEnv.WEFT_TEST_EXPORT_DELAY_MS;
	await weft.start();
	const job = await finished(web, 30_000);
	assert.equal(job.status, 'done', JSON.stringify(job));
	assert.ok(job.attempts >= 2, `attempts ${job.attempts}`);
	const ids = hook.messages.map((m) => m.messageId);
	const unique = new Set(ids);
	assert.equal(unique.size, job.rows_total, 'every change was delivered');
	assert.ok(ids.length - unique.size <= 2, `${ids.length - unique.size} messages sent twice (at most the batch in flight)`);
	// Replayed in order, the entries and exits leave the destination with the members.
	const state = new Map();
	for (const m of hook.messages) state.set(m.traits.profile_id, m.traits.ex_pro);
	assert.deepEqual([...state].filter(([, v]) => v).map(([p]) => p).sort(), want);

	// A file job killed midway starts its file again and ends complete.
	weft.extraEnv.WEFT_TEST_EXPORT_DELAY_MS = '1500';
	await weft.restart();
	const file = await startExport('ex_pro', { fields: ['identifier:user_id'] });
	await eventually(() => read(`/v1/exports/${file}`), (r) => r.json?.status === 'running', 10_000);
	await weft.stop({ signal: 'SIGKILL' });
	delete weft.extraEnv.WEFT_TEST_EXPORT_DELAY_MS;
	let res = await read(`/v1/exports/${file}/file`).catch(() => null);
	await weft.start();
	const fjob = await finished(file, 30_000);
	assert.equal(fjob.status, 'done', JSON.stringify(fjob));
	res = await fileOf(file);
	const rows = parseCsv(res.text).slice(1).map((r) => r[0]);
	assert.deepEqual(rows.sort(), want);
	assert.deepEqual(fs.readdirSync(path.join(weft.dataDir, 'exports')).filter((f) => f.endsWith('.part')), []);
});

test('weft export writes the same members from the command line, beside a running server', async () => {
	const want = await members('ex_pro');
	const out = path.join(weft.tmp, 'cli-export.csv');
	const res = await weft.cli(['export', '--workspace', weft.workspace, '--audience', 'ex_pro',
		'--fields', 'identifier:user_id,trait:plan,match_key:email', '--out', out]);
	assert.equal(res.code, 0, res.stderr);
	assert.match(res.stderr, new RegExp(`${want.length} rows, \\d+ bytes to `));
	const rows = parseCsv(fs.readFileSync(out, 'utf8'));
	assert.deepEqual(rows[0], ['profile_id', 'user_id', 'plan', 'email_sha256']);
	assert.deepEqual(rows.slice(1).map((r) => r[0]).sort(), want);
	for (const r of rows.slice(1)) assert.equal(r[3], sha256(email(Number(r[1].split('-').pop())).toLowerCase()));
	assert.ok(!fs.existsSync(`${out}.part`));

	let bad = await weft.cli(['export', '--workspace', weft.workspace, '--audience', 'nope', '--out', out], { allowFailure: true });
	assert.equal(bad.code, 1);
	assert.match(bad.stderr, /the audience 'nope' does not exist/);
	bad = await weft.cli(['export', '--workspace', weft.workspace, '--audience', 'ex_pro'], { allowFailure: true });
	assert.equal(bad.code, 2);
	assert.match(bad.stderr, /--out are needed/);
	bad = await weft.cli(['export', '--workspace', weft.workspace, '--audience', 'ex_pro', '--out', out, '--fields', 'bogus'], { allowFailure: true });
	assert.equal(bad.code, 2);
	assert.match(bad.stderr, /field 'bogus'/);
});

test('weft exits cleanly', async () => {
	await weft.assertCleanExit();
});
