// Identity resolution over HTTP (docs/identity.md): which identifiers end
// up on one profile under Segment Unify's rules, how a profile is found by
// any of its identifiers and why it is what it is (its identity history),
// the workspace's rules, blocking a value after the fact (which splits the
// profile it held together), and that all of it survives a restart, a
// kill -9 and a rebuild from the log.
//
// One PostgreSQL and one Weft serve the whole file, with four workspaces
// so that rule changes and blocks stay apart: 'it' (the harness's; default
// rules, never a block), 'rules', 'unmerge' and 'stream'. The tests run in
// order and some build on the state earlier ones left.
//
// Events are applied to the graph a few milliseconds after their 200:
// weft.settle() waits until weft_engine_applied_seq reaches the log's last seq.
// Where a test needs the engine to be slow to load its saved state after a
// restart (as a large state makes it), a psql transaction holds the
// engine_checkpoint table locked meanwhile (holdEngineLoad()).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import {
	useWeft, assertError, assertSuccess, messageId, psqlBin, show, sleep, sql, TIMEOUT_SCALE,
	mapLimit, eventually, ev,
} from './harness.mjs';

const weft = useWeft('identity', { workspaces: ['rules', 'unmerge', 'stream'] });
const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}`;

// Each workspace as { name, workspaceId, keys: { write, read, admin } }, once the harness has set up.
const ws = {
	get it() {
		return { name: weft.workspace, workspaceId: weft.workspaceId, keys: weft.keys };
	},
	get rules() {
		return weft.workspaces.rules;
	},
	get unmerge() {
		return weft.workspaces.unmerge;
	},
	get stream() {
		return weft.workspaces.stream;
	},
};

// ---------------------------------------------------------------------------
// Helpers

async function maxSeq() {
	const [row] = await weft.query('SELECT coalesce(max(seq), 0)::bigint AS seq FROM events');
	return Number(row.seq);
}

// Sends events as /v1/batch requests of `chunk` events each.
async function sendBatches(events, key, chunk = 500) {
	for (let i = 0; i < events.length; i += chunk) {
		const res = await weft.post('/v1/batch', { batch: events.slice(i, i + chunk) }, { key });
		assertSuccess(res, `batch of events ${i}..${Math.min(i + chunk, events.length) - 1}`);
		assert.equal(res.json.rejected, undefined, `events were rejected: ${show(res)}`);
	}
}

function identPath(ident) {
	const i = ident.indexOf(':');
	return `/v1/profiles/${ident.slice(0, i + 1)}${encodeURIComponent(ident.slice(i + 1))}/identity-history`;
}

// GET .../identity-history for "type:value" (the value is percent-encoded).
function history(ident, key = ws.it.keys.read) {
	return weft.get(identPath(ident), { key });
}

// The profile id "type:value" resolves to, or null on a 404.
async function profileOf(ident, key = ws.it.keys.read) {
	const res = await history(ident, key);
	if (res.status === 404) {
		assertError(res, 404, 'not_found', ident);
		return null;
	}
	assert.equal(res.status, 200, `${ident}: ${show(res)}`);
	assert.match(res.json.profile_id, /^prf_\d+$/, `${ident}: ${show(res)}`);
	return res.json.profile_id;
}

// The history records of "type:value" (asserting a 200).
async function recordsOf(ident, key = ws.it.keys.read) {
	const res = await history(ident, key);
	assert.equal(res.status, 200, `${ident}: ${show(res)}`);
	assert.ok(Array.isArray(res.json.history), `${ident}: ${show(res)}`);
	return res.json;
}

const num = (prf) => Number(prf.slice(4));

// Holds up the engine's loading of its saved state, as a large state would:
// a transaction keeps engine_checkpoint locked until release() (ingest
// never reads that table). Resolves once the lock is held.
async function holdEngineLoad() {
	const locker = spawn(psqlBin, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', weft.dbUrl], { stdio: ['pipe', 'ignore', 'pipe'] });
	const done = new Promise((resolve) => locker.on('close', resolve));
	locker.stdin.write('BEGIN;\nLOCK TABLE engine_checkpoint IN ACCESS EXCLUSIVE MODE;\n');
	const release = async () => {
		locker.stdin.end('COMMIT;\n');
		await done;
	};
	const locked = await eventually(() => weft.query(`SELECT count(*)::int AS n FROM pg_locks l
		JOIN pg_class c ON c.oid = l.relation
		WHERE c.relname = 'engine_checkpoint' AND l.mode = 'AccessExclusiveLock' AND l.granted`), (r) => r[0].n === 1);
	if (locked[0].n !== 1) {
		await release();
		assert.fail('could not lock engine_checkpoint');
	}
	return { release };
}

// `weft identity digest|rebuild`: { lines: { workspaceId: {digest, identifiers, profiles, merges} }, checkpointSeq }.
function parseDigest(stdout) {
	const lines = {};
	let checkpointSeq = null;
	for (const line of stdout.split('\n')) {
		let m = /^workspace_id=(\d+) digest=([0-9a-f]{32}) identifiers=(\d+) profiles=(\d+) merges=(\d+)$/.exec(line);
		if (m) {
			lines[m[1]] = { digest: m[2], identifiers: Number(m[3]), profiles: Number(m[4]), merges: Number(m[5]) };
			continue;
		}
		m = /^checkpoint_seq=(\d+)$/.exec(line);
		if (m) checkpointSeq = Number(m[1]);
		else if (line.trim() !== '') assert.fail(`unexpected line from weft identity: ${JSON.stringify(line)}\n${stdout}`);
	}
	return { lines, checkpointSeq };
}

const DEFAULT_RULES = {
	types: {
		user_id: { priority: 1, limit: 1, window_days: 0 },
		email: { priority: 2, limit: 5, window_days: 0 },
		phone: { priority: 3, limit: 5, window_days: 0 },
		'ios.id': { priority: 4, limit: 5, window_days: 0 },
		'android.id': { priority: 5, limit: 5, window_days: 0 },
		'ios.idfa': { priority: 6, limit: 5, window_days: 0 },
		'android.idfa': { priority: 7, limit: 5, window_days: 0 },
		'ios.push_token': { priority: 8, limit: 5, window_days: 0 },
		'android.push_token': { priority: 9, limit: 5, window_days: 0 },
		anonymous_id: { priority: 10, limit: 5, window_days: 0 },
	},
	max_merges: 100,
	max_identifiers: 1000,
};

// ---------------------------------------------------------------------------
// Segment's worked examples

test('user_id limit 1: a second userId with the same email makes a second profile', async () => {
	assertSuccess(await weft.post('/v1/identify', {
		userId: 'abc123', messageId: messageId('seg-a1'), traits: { email: 'jane@example1.com' },
	}));
	const second = messageId('seg-a2');
	assertSuccess(await weft.post('/v1/identify', {
		userId: 'abc456', messageId: second, traits: { email: 'jane@example1.com' },
	}));
	await weft.settle();

	const p123 = await profileOf('user_id:abc123');
	const p456 = await profileOf('user_id:abc456');
	assert.ok(p123 && p456, `abc123 -> ${p123}, abc456 -> ${p456}`);
	assert.notEqual(p123, p456, 'two user_ids share a profile despite user_id limit 1');
	assert.equal(await profileOf('email:jane@example1.com'), p123, 'the email left the first profile');

	const h123 = await recordsOf('user_id:abc123');
	const h456 = await recordsOf('user_id:abc456');
	const all = [...h123.history, ...h456.history];
	assert.deepEqual(all.filter((r) => r.kind === 'merge'), [],
		`a merge was recorded: ${JSON.stringify(all)}`);
	// The refusal is filed under one of the two profiles and names the rule.
	const refusals = all.filter((r) => r.kind === 'merge_refused' || r.kind === 'dropped');
	assert.equal(refusals.length, 1, `expected one refused merge or dropped identifier: ${JSON.stringify(all)}`);
	const [r] = refusals;
	assert.equal(r.reason, 'limit', JSON.stringify(r));
	assert.deepEqual(r.rule, { type: 'user_id', limit: 1 }, JSON.stringify(r));
	assert.equal(r.message_id, second, `the record does not name the second identify: ${JSON.stringify(r)}`);
	assert.equal(r.identifier.type, 'email', JSON.stringify(r));
	if (r.kind === 'merge_refused') {
		assert.deepEqual([r.profile_id, r.other_profile_id].sort(), [p123, p456].sort(), JSON.stringify(r));
	}
});

test('one anonymousId used by two userIds in turn never joins the two users', async () => {
	const anon = `shared-device-${RUN}`;
	await sendBatches([
		ev('track', { anonymousId: anon, event: 'Visited' }),
		ev('identify', { anonymousId: anon, userId: `alice-${RUN}` }),
		ev('track', { anonymousId: anon, userId: `alice-${RUN}`, event: 'Logged Out' }),
		ev('identify', { anonymousId: anon, userId: `bob-${RUN}` }),
		ev('track', { anonymousId: anon, userId: `bob-${RUN}`, event: 'Bought' }),
	], ws.it.keys.write);
	await weft.settle();
	const alice = await profileOf(`user_id:alice-${RUN}`);
	const bob = await profileOf(`user_id:bob-${RUN}`);
	assert.ok(alice && bob, `alice -> ${alice}, bob -> ${bob}`);
	assert.notEqual(alice, bob, 'two users of one device were merged');
	assert.equal(await profileOf(`anonymous_id:${anon}`), alice, 'the device left its first user');
	const refused = (await recordsOf(`user_id:bob-${RUN}`)).history.concat((await recordsOf(`user_id:alice-${RUN}`)).history)
		.filter((r) => r.reason === 'limit');
	assert.ok(refused.length >= 1 && refused.every((r) => r.rule?.type === 'user_id'),
		`no refusal naming user_id's limit: ${JSON.stringify(refused)}`);
});

test('two anonymous sessions identified with the same email become one profile', async () => {
	const [s1, s2] = [`session-1-${RUN}`, `session-2-${RUN}`];
	const email = `sam.${RUN}@example.org`;
	await sendBatches([
		ev('page', { anonymousId: s1, name: 'Home' }),
		ev('page', { anonymousId: s2, name: 'Pricing' }),
	], ws.it.keys.write);
	await weft.settle();
	const [p1, p2] = [await profileOf(`anonymous_id:${s1}`), await profileOf(`anonymous_id:${s2}`)];
	assert.ok(p1 && p2 && p1 !== p2, `before identify: ${p1}, ${p2}`);
	const second = ev('identify', { anonymousId: s2, traits: { email } });
	const identify2 = second.messageId;
	await sendBatches([ev('identify', { anonymousId: s1, traits: { email } }), second], ws.it.keys.write);
	await weft.settle();
	const after = [await profileOf(`anonymous_id:${s1}`), await profileOf(`anonymous_id:${s2}`), await profileOf(`email:${email}`)];
	assert.deepEqual(after, [p1, p1, p1], 'the sessions were not merged into the older profile');
	const h = await recordsOf(`anonymous_id:${s2}`);
	const merges = h.history.filter((r) => r.kind === 'merge');
	assert.equal(merges.length, 1, JSON.stringify(h));
	assert.equal(merges[0].reason, 'shared_identifier', JSON.stringify(merges[0]));
	assert.deepEqual([merges[0].profile_id, merges[0].other_profile_id], [p1, p2], JSON.stringify(merges[0]));
	// The record names the event and one of its identifiers (the engine files it under the
	// identifier that reached the absorbed profile).
	assert.equal(merges[0].message_id, identify2, JSON.stringify(merges[0]));
	assert.ok(merges[0].event_identifiers.some((i) => i.type === merges[0].identifier.type && i.value === merges[0].identifier.value),
		`the merge names an identifier its event did not carry: ${JSON.stringify(merges[0])}`);
	assert.equal(await profileOf(`profile_id:${p2}`), p1, 'the absorbed profile id does not resolve to the survivor');
});

test('placeholder userIds ("-1", "null", "000-0") are stored but never become identifiers', async () => {
	for (const userId of ['-1', 'null', '000-0']) {
		const anon = `placeholder-${userId}-${RUN}`;
		const id = messageId('blk');
		assertSuccess(await weft.post('/v1/track', { userId, anonymousId: anon, event: 'Placeholder', messageId: id }), userId);
		const rows = await weft.query(sql`SELECT payload, identifiers FROM events WHERE message_id = ${id}`);
		assert.equal(rows.length, 1, `event with userId ${userId} stored ${rows.length} times`);
		assert.equal(rows[0].payload.userId, userId, 'the payload lost its userId');
		await weft.settle();
		assert.equal(await profileOf(`user_id:${userId}`), null, `user_id:${userId} resolves to a profile`);
		const h = await recordsOf(`anonymous_id:${anon}`);
		const blocked = h.history.filter((r) => r.kind === 'blocked');
		assert.equal(blocked.length, 1, `no blocked record for userId ${userId}: ${JSON.stringify(h)}`);
		assert.equal(blocked[0].reason, 'blocked_value', JSON.stringify(blocked[0]));
		assert.equal(blocked[0].identifier.type, 'user_id', JSON.stringify(blocked[0]));
		assert.equal(blocked[0].message_id, id, JSON.stringify(blocked[0]));
	}
	// Many events with "-1" from different people still make no blob.
	const anons = [`minus-one-a-${RUN}`, `minus-one-b-${RUN}`];
	await sendBatches(anons.map((a) => ev('identify', { userId: '-1', anonymousId: a })), ws.it.keys.write);
	await weft.settle();
	const [pa, pb] = [await profileOf(`anonymous_id:${anons[0]}`), await profileOf(`anonymous_id:${anons[1]}`)];
	assert.ok(pa && pb && pa !== pb, `two visitors with userId "-1" share ${pa} / ${pb}`);
});

// ---------------------------------------------------------------------------
// Finding a profile

test('a profile is found by each of its identifiers, and an absorbed profile id by its survivor', async () => {
	const user = `lookup-${RUN}`;
	const email = `Lookup.Person.${RUN}@Example.COM`;
	await sendBatches([
		ev('identify', {
			userId: user,
			traits: { email, phone: '+1 (555) 010-2000' },
			context: {
				device: { type: 'ios', id: `IOS-${RUN}` },
				externalIds: [{ id: `cust-${RUN}`, type: 'CRM_ID', collection: 'users', encoding: 'none' }],
			},
		}),
		ev('track', { anonymousId: `droid-anon-${RUN}`, event: 'Opened', context: { device: { type: 'android', id: `droid-${RUN}` } } }),
	], ws.it.keys.write);
	await weft.settle();
	const main = await profileOf(`user_id:${user}`);
	const droid = await profileOf(`android.id:droid-${RUN}`);
	assert.ok(main && droid && main !== droid, `${main} / ${droid}`);
	// The android profile is newer: linking them keeps the older id.
	assertSuccess(await weft.post('/v1/identify', { userId: user, anonymousId: `droid-anon-${RUN}`, messageId: messageId('link') }));
	await weft.settle();

	const lower = email.toLowerCase();
	const cases = [
		`email:${lower}`,
		`email:${email}`,
		`email:${email.toUpperCase()}`,
		`email:  ${email}\t`,
		'phone:+15550102000',
		'phone:+1 555 010 2000',
		`ios.id:IOS-${RUN}`,
		`android.id:droid-${RUN}`,
		`anonymous_id:droid-anon-${RUN}`,
		`crm_id:cust-${RUN}`,
		`profile_id:${main}`,
		`profile_id:${droid}`,
	];
	for (const ident of cases) assert.equal(await profileOf(ident), main, `${ident} does not find ${main}`);
	// Percent-encoding by hand: '@' as %40 and '+' as %2B decode before hashing.
	for (const p of [`email:${lower.replace('@', '%40')}`, 'phone:%2B15550102000']) {
		const res = await weft.get(`/v1/profiles/${p}/identity-history`, { key: ws.it.keys.read });
		assert.equal(res.json?.profile_id, main, `${p}: ${show(res)}`);
	}
	// The admin key may read too.
	assert.equal(await profileOf(`user_id:${user}`, ws.it.keys.admin), main);

	const notFound = [`user_id:nobody-${RUN}`, `email:nobody.${RUN}@example.com`, `crm_id:cust-${RUN}-x`,
		`never_seen_type:${RUN}`, 'profile_id:prf_987654321'];
	for (const ident of notFound) {
		const r = await history(ident);
		assertError(r, 404, 'not_found', ident);
		assert.deepEqual(r.json, { error: { code: 'not_found', message: 'Profile was not found.' } }, ident);
	}
	// Workspaces are apart: another workspace's read key does not see this profile.
	assertError(await history(`user_id:${user}`, ws.rules.keys.read), 404, 'not_found', 'other workspace');

	const malformed = ['no-colon', ':value', 'profile_id:12', 'profile_id:prf_', 'profile_id:prf_x1',
		'Bad Type:1', 'user_id:bad%zzescape', 'user_id:nul%00byte'];
	for (const raw of malformed) {
		const p = `/v1/profiles/${raw.replace(/ /g, '%20')}/identity-history`;
		assertError(await weft.get(p, { key: ws.it.keys.read }), 400, 'invalid_identifier', raw);
	}

	assertError(await history(`user_id:${user}`, null), 401, 'unauthorized', 'no key');
	assertError(await history(`user_id:${user}`, 'not-a-key-at-all'), 401, 'unauthorized', 'unknown key');
	assertError(await history(`user_id:${user}`, ws.it.keys.write), 403, 'forbidden', 'write key');
});

// ---------------------------------------------------------------------------
// Rules

const RULES = '/v1/admin/identity-rules';

function putRules(body, key = ws.rules.keys.admin) {
	return weft.request('PUT', RULES, { key, body });
}

test('rules: defaults, a replacement shown back, bad documents refused naming the member', async () => {
	const key = ws.rules.keys.admin;
	const defaults = await weft.get(RULES, { key });
	assert.equal(defaults.status, 200, show(defaults));
	assert.deepEqual(defaults.json, DEFAULT_RULES);

	const put = await putRules({ types: { email: { limit: 2 } } });
	assert.equal(put.status, 200, show(put));
	const want = structuredClone(DEFAULT_RULES);
	want.types.email.limit = 2;
	assert.deepEqual(put.json, want, 'PUT did not answer the effective rules');
	assert.deepEqual((await weft.get(RULES, { key })).json, want, 'GET after PUT');

	const bad = [
		[{ types: { email: { limit: -1 } } }, /types\.email\.limit/],
		[{ types: { email: { limit: 'five' } } }, /types\.email\.limit/],
		[{ types: { email: { limit: 70000 } } }, /types\.email\.limit/],
		[{ types: { email: { priority: 0 } } }, /types\.email\.priority/],
		[{ types: { email: { limit: 0, window_days: 30 } } }, /types\.email\.window_days/],
		[{ types: { email: { max: 3 } } }, /types\.email\.max/],
		[{ types: { group_id: { limit: 1 } } }, /group_id/],
		[{ types: { 'Bad Name': { limit: 1 } } }, /Bad Name/],
		[{ types: [] }, /types/],
		[{ colour: 'blue' }, /colour/],
		[{ max_merges: 0 }, /max_merges/],
		[[], /object/],
		['{"types": {', /JSON/],
	];
	for (const [body, message] of bad) {
		const res = await putRules(body);
		assertError(res, 400, 'invalid_rules', JSON.stringify(body));
		assert.match(res.json.error.message, message, `${JSON.stringify(body)}: ${show(res)}`);
	}
	assert.deepEqual((await weft.get(RULES, { key })).json, want, 'a refused PUT changed the rules');

	assertError(await weft.get(RULES), 401, 'unauthorized', 'GET without a key');
	assertError(await putRules({}, null), 401, 'unauthorized', 'PUT without a key');
	assertError(await weft.get(RULES, { key: ws.rules.keys.read }), 403, 'forbidden', 'GET with a read key');
	assertError(await weft.get(RULES, { key: ws.rules.keys.write }), 403, 'forbidden', 'GET with a write key');
	assertError(await putRules({}, ws.rules.keys.write), 403, 'forbidden', 'PUT with a write key');
	assertError(await putRules({}, ws.rules.keys.read), 403, 'forbidden', 'PUT with a read key');
	// Each workspace has its own rules.
	const other = await weft.get(RULES, { key: ws.it.keys.admin });
	assert.equal(other.json?.types?.email?.limit, 5, `rules leaked to another workspace: ${show(other)}`);
});

test('rules: a tightened email limit drops the extra email of new events', async () => {
	// The previous test left email limit 2 in 'rules'.
	const user = `two-emails-${RUN}`;
	const emails = [1, 2, 3].map((i) => `e${i}.${RUN}@example.net`);
	await sendBatches(emails.map((email) => ev('identify', { userId: user, traits: { email } })), ws.rules.keys.write);
	await weft.settle();
	const key = ws.rules.keys.read;
	const p = await profileOf(`user_id:${user}`, key);
	assert.equal(await profileOf(`email:${emails[0]}`, key), p);
	assert.equal(await profileOf(`email:${emails[1]}`, key), p);
	assert.equal(await profileOf(`email:${emails[2]}`, key), null, 'a third email was kept under email limit 2');
	const dropped = (await recordsOf(`user_id:${user}`, key)).history.filter((r) => r.reason === 'limit');
	assert.equal(dropped.length, 1, JSON.stringify(dropped));
	assert.deepEqual(dropped[0].rule, { type: 'email', limit: 2 }, JSON.stringify(dropped[0]));
});

test('rules: raising the anonymous_id limit lets a merge happen that the old limit refused', async () => {
	const key = ws.rules.keys.read;
	const w = ws.rules.keys.write;
	// Two visitors, each with three anonymous ids and an email.
	const ea = `visitor.a.${RUN}@example.net`;
	const eb = `visitor.b.${RUN}@example.net`;
	const a = [1, 2, 3].map((i) => `anon-a${i}-${RUN}`);
	const b = [1, 2, 3].map((i) => `anon-b${i}-${RUN}`);
	await sendBatches([
		...a.map((anonymousId) => ev('identify', { anonymousId, traits: { email: ea } })),
		...b.map((anonymousId) => ev('identify', { anonymousId, traits: { email: eb } })),
	], w);
	await weft.settle();
	const pa = await profileOf(`email:${ea}`, key);
	const pb = await profileOf(`email:${eb}`, key);
	assert.ok(pa && pb && pa !== pb, `${pa} / ${pb}`);

	// Linking them would make six anonymous ids: over the default limit of 5.
	await putRules({ types: {} }); // back to the defaults
	const refusedId = messageId('refused');
	assertSuccess(await weft.post('/v1/identify', { anonymousId: b[0], traits: { email: ea }, messageId: refusedId }, { key: w }));
	await weft.settle();
	assert.equal(await profileOf(`anonymous_id:${b[0]}`, key), pb, 'merged past anonymous_id limit 5');
	assert.equal(await profileOf(`anonymous_id:${a[0]}`, key), pa);
	const refusal = (await recordsOf(`email:${ea}`, key)).history.concat((await recordsOf(`email:${eb}`, key)).history)
		.find((r) => r.message_id === refusedId);
	assert.ok(refusal, 'the refused merge left no record');
	assert.equal(refusal.reason, 'limit', JSON.stringify(refusal));
	assert.deepEqual(refusal.rule, { type: 'anonymous_id', limit: 5 }, JSON.stringify(refusal));

	// No limit on anonymous ids: the same kind of event now merges them.
	const put = await putRules({ types: { anonymous_id: { limit: 0 } } });
	assert.equal(put.status, 200, show(put));
	assert.equal(put.json.types.anonymous_id.limit, 0, show(put));
	assert.equal(put.json.types.email.limit, 5, 'PUT did not replace the earlier rules');
	const mergeId = messageId('merged');
	assertSuccess(await weft.post('/v1/identify', { anonymousId: b[1], traits: { email: ea }, messageId: mergeId }, { key: w }));
	await weft.settle();
	const survivor = num(pa) < num(pb) ? pa : pb;
	for (const ident of [...a, ...b].map((x) => `anonymous_id:${x}`).concat(`email:${ea}`, `email:${eb}`)) {
		assert.equal(await profileOf(ident, key), survivor, `${ident} after the rule change`);
	}
	const merge = (await recordsOf(`email:${ea}`, key)).history.find((r) => r.message_id === mergeId);
	assert.equal(merge?.kind, 'merge', JSON.stringify(merge));
	assert.equal(merge.reason, 'shared_identifier', JSON.stringify(merge));
});

// ---------------------------------------------------------------------------
// Unmerge: a shared email glued 1,000 visitors together; blocking it
//    gives each visitor its own profile back.

const VISITORS = 1000;
const visitors = Array.from({ length: VISITORS }, (_, i) => `visitor-${i}-${RUN}`);
const SHARED_EMAIL = `shared.inbox.${RUN}@example.com`;
const before1000 = new Map(); // anonymous id -> profile id after its first events

test('1,000 visitors merged by one email are split back apart when it is blocked', { timeout: 60_000 * TIMEOUT_SCALE }, async (t) => {
	const { keys } = ws.unmerge;
	const put = await putRules({ types: { anonymous_id: { limit: 0 }, email: { limit: 100 } }, max_merges: 5000, max_identifiers: 5000 }, keys.admin);
	assert.equal(put.status, 200, show(put));

	const tracks = [];
	for (const anonymousId of visitors) {
		tracks.push(ev('page', { anonymousId, name: 'Landing' }));
		tracks.push(ev('track', { anonymousId, event: 'Signed Up' }));
	}
	let t0 = Date.now();
	const m0 = await weft.settle();
	await sendBatches(tracks, keys.write);
	const mTracked = await weft.settle();
	assert.equal(mTracked.weft_identity_profiles - m0.weft_identity_profiles, VISITORS, 'profiles made by the visits');
	const first = await mapLimit(visitors, 16, (v) => profileOf(`anonymous_id:${v}`, keys.read));
	visitors.forEach((v, i) => before1000.set(v, first[i]));
	assert.equal(new Set(first).size, VISITORS, `${VISITORS} visitors have ${new Set(first).size} distinct profiles before the identify`);
	assert.ok(first.every(Boolean), 'a visitor has no profile');
	t.diagnostic(`tracks and lookups: ${Date.now() - t0} ms`);

	t0 = Date.now();
	await sendBatches(visitors.map((anonymousId) => ev('identify', { anonymousId, traits: { email: SHARED_EMAIL } })), keys.write);
	const mMerged = await weft.settle();
	// Every visitor is on the oldest profile: nothing else happens meanwhile, so
	// 999 merges and 999 profiles fewer over the whole server say it for all
	// of them. A lookup of the merged profile returns its whole history (1,000
	// records, ~400 kB, ~30 ms), so only a sample is looked up one by one.
	const survivor = before1000.get(visitors[0]);
	assert.equal(mMerged.weft_identity_merges - mTracked.weft_identity_merges, VISITORS - 1, 'merges made by the identify');
	assert.equal(mTracked.weft_identity_profiles - mMerged.weft_identity_profiles, VISITORS - 1, 'profiles absorbed by the identify');
	assert.equal(mMerged.weft_identity_identifiers - mTracked.weft_identity_identifiers, 1, 'identifiers added: the email');
	const sample = visitors.filter((_, i) => i % 50 === 0 || i === VISITORS - 1);
	const merged = await mapLimit(sample, 4, (v) => profileOf(`anonymous_id:${v}`, keys.read));
	assert.deepEqual(merged, sample.map(() => survivor), `visitors are not all on ${survivor} after the identify`);
	assert.equal(await profileOf(`email:${SHARED_EMAIL}`, keys.read), survivor);
	t.diagnostic(`identify and lookups: ${Date.now() - t0} ms`);

	t0 = Date.now();
	const block = await weft.post('/v1/admin/identity/blocked', { type: 'email', value: `  ${SHARED_EMAIL.toUpperCase()} ` }, { key: keys.admin });
	assert.equal(block.status, 200, show(block));
	assert.equal(block.json.type, 'email', show(block));
	assert.match(block.json.key, /^[0-9a-f]{32}$/, show(block));
	assert.equal(block.json.blocked, true, show(block));
	assert.deepEqual(block.json.split, { profile_id: survivor, parts: VISITORS, new_profiles: 0 }, show(block));
	// The figures in /metrics are refreshed a moment after the block answers.
	const mSplit = await eventually(() => weft.metrics(), (m) => m.weft_identity_profiles === mTracked.weft_identity_profiles);
	assert.equal(mSplit.weft_identity_profiles, mTracked.weft_identity_profiles, 'profiles after the split');
	t.diagnostic(`block: ${Date.now() - t0} ms`);

	t0 = Date.now();
	const histories = await mapLimit(visitors, 16, (v) => recordsOf(`anonymous_id:${v}`, keys.read));
	const split = histories.map((h) => h.profile_id);
	const moved = visitors.filter((v, i) => split[i] !== before1000.get(v));
	assert.deepEqual(moved.slice(0, 5).map((v) => `${v}: ${before1000.get(v)} -> ${split[visitors.indexOf(v)]}`), [],
		`${moved.length} visitors did not get their own profile back`);
	assert.equal(new Set(split).size, VISITORS);
	assertError(await history(`email:${SHARED_EMAIL}`, keys.read), 404, 'not_found', 'the blocked email');

	const noSplit = [];
	for (const [i, h] of histories.entries()) {
		const s = h.history.filter((r) => r.kind === 'split');
		if (s.length !== 1 || s[0].identifier?.type !== 'email' || s[0].profile_id !== before1000.get(visitors[i]) ||
			s[0].other_profile_id !== survivor) {
			noSplit.push(`${visitors[i]} (${h.profile_id}, ${h.history.length} records${h.truncated ? ', truncated' : ''}): ` +
				JSON.stringify(s.length ? s : h.history.slice(-2)));
		}
	}
	assert.deepEqual(noSplit.slice(0, 3), [], `${noSplit.length} of ${VISITORS} histories have no split record for the block`);
	t.diagnostic(`lookups and histories after the split: ${Date.now() - t0} ms`);

	// Blocked from now on too: a new visitor with that email stays alone.
	const late = `visitor-late-${RUN}`;
	assertSuccess(await weft.post('/v1/identify', { anonymousId: late, traits: { email: SHARED_EMAIL }, messageId: messageId('late') }, { key: keys.write }));
	await weft.settle();
	const lp = await profileOf(`anonymous_id:${late}`, keys.read);
	assert.ok(lp && ![...before1000.values()].includes(lp), `the late visitor joined ${lp}`);
	const lh = await recordsOf(`anonymous_id:${late}`, keys.read);
	assert.ok(lh.history.some((r) => r.kind === 'blocked' && r.reason === 'blocked_key' && r.identifier.type === 'email'),
		`no blocked_key record: ${JSON.stringify(lh.history)}`);
	before1000.set(late, lp);
});

test('blocking: bad requests and keys are refused', async () => {
	const P = '/v1/admin/identity/blocked';
	const { keys } = ws.unmerge;
	assertError(await weft.post(P, { type: 'email' }, { key: keys.admin }), 400, 'invalid_request', 'no value');
	assertError(await weft.post(P, '{"type":', { key: keys.admin }), 400, 'invalid_request', 'bad JSON');
	assertError(await weft.post(P, { type: 'group_id', value: 'g1' }, { key: keys.admin }), 400, 'invalid_type', 'group_id');
	assertError(await weft.post(P, { type: 'Bad Type', value: 'x' }, { key: keys.admin }), 400, 'invalid_type', 'bad type');
	assertError(await weft.post(P, { type: 'email', value: '   ' }, { key: keys.admin }), 400, 'invalid_value', 'blank value');
	assertError(await weft.post(P, { type: 'email', value: 'x@example.com' }, { key: keys.write }), 403, 'forbidden', 'write key');
	assertError(await weft.post(P, { type: 'email', value: 'x@example.com' }, { key: keys.read }), 403, 'forbidden', 'read key');
	assertError(await weft.post(P, { type: 'email', value: 'x@example.com' }, { key: null }), 401, 'unauthorized', 'no key');
	// A value nobody holds: blocked, nothing to split.
	const res = await weft.post(P, { type: 'email', value: `nobody.${RUN}@example.com` }, { key: keys.admin });
	assert.equal(res.status, 200, show(res));
	assert.deepEqual(res.json.split, { profile_id: null, parts: 0, new_profiles: 0 }, show(res));
});

// ---------------------------------------------------------------------------
// Metrics

test('metrics: caught up, and the profile count follows what events create and merge', async () => {
	const m0 = await weft.settle();
	assert.equal(m0.weft_engine_caught_up, 1, 'weft_engine_caught_up is not 1');
	for (const name of ['weft_identity_profiles', 'weft_identity_identifiers', 'weft_identity_merges', 'weft_engine_events_applied_total']) {
		assert.equal(typeof m0[name], 'number', `no ${name} in /metrics`);
	}
	const v = Array.from({ length: 7 }, (_, i) => `metric-visitor-${i}-${RUN}`);
	await sendBatches(v.map((anonymousId) => ev('track', { anonymousId, event: 'Visited' })), ws.it.keys.write);
	const m1 = await weft.settle();
	assert.equal(m1.weft_identity_profiles - m0.weft_identity_profiles, 7, 'seven new visitors');
	assert.equal(m1.weft_identity_identifiers - m0.weft_identity_identifiers, 7, 'one identifier each');
	assert.equal(m1.weft_identity_merges - m0.weft_identity_merges, 0);
	assert.equal(m1.weft_engine_events_applied_total - m0.weft_engine_events_applied_total, 7);
	// 0 and 1 share an email: one merge. 2 and 3 log in as two users; joining
	// them (an alias, then an identify) is refused by user_id limit 1.
	const email = `metric.${RUN}@example.com`;
	await sendBatches([
		ev('identify', { anonymousId: v[0], traits: { email } }),
		ev('identify', { anonymousId: v[1], traits: { email } }),
		ev('alias', { userId: `metric-user-2-${RUN}`, previousId: v[2] }),
		ev('identify', { userId: `metric-user-3-${RUN}`, anonymousId: v[3] }),
		ev('identify', { userId: `metric-user-3-${RUN}`, anonymousId: v[2] }),
	], ws.it.keys.write);
	const m2 = await weft.settle();
	assert.equal(m2.weft_identity_profiles - m1.weft_identity_profiles, -1, `profiles: ${m1.weft_identity_profiles} -> ${m2.weft_identity_profiles}`);
	assert.equal(m2.weft_identity_merges - m1.weft_identity_merges, 1, 'merges');
	assert.equal(m2.weft_identity_identifiers - m1.weft_identity_identifiers, 3, 'the email and two user ids');
	assert.equal(m2.weft_engine_events_applied_total - m1.weft_engine_events_applied_total, 5);
	assert.equal(m2.weft_engine_caught_up, 1);
	assert.equal(await profileOf(`anonymous_id:${v[1]}`), await profileOf(`anonymous_id:${v[0]}`));
	assert.equal(await profileOf(`user_id:metric-user-2-${RUN}`), await profileOf(`anonymous_id:${v[2]}`));
	assert.notEqual(await profileOf(`user_id:metric-user-3-${RUN}`), await profileOf(`anonymous_id:${v[2]}`));
});

// ---------------------------------------------------------------------------
// Restarts and rebuilds

// Answers of a set of lookups: "ident" -> profile id or null.
async function snapshot(idents) {
	const out = {};
	const answers = await mapLimit(idents, 16, ([ident, key]) => profileOf(ident, key));
	idents.forEach(([ident], i) => { out[ident] = answers[i]; });
	return out;
}

function probes() {
	const it = ws.it.keys.read;
	const um = ws.unmerge.keys.read;
	const rl = ws.rules.keys.read;
	return [
		['user_id:abc123', it], ['user_id:abc456', it], ['email:jane@example1.com', it], ['user_id:-1', it],
		[`user_id:lookup-${RUN}`, it], [`android.id:droid-${RUN}`, it], [`crm_id:cust-${RUN}`, it],
		[`email:visitor.a.${RUN}@example.net`, rl], [`anonymous_id:anon-b3-${RUN}`, rl],
		[`email:${SHARED_EMAIL}`, um],
		...[...before1000.keys()].map((v) => [`anonymous_id:${v}`, um]),
	];
}

test('a restart keeps profiles, histories, rules and blocks without re-sending anything', async () => {
	await weft.settle();
	const idents = probes();
	const before = await snapshot(idents);
	const h456 = await recordsOf('user_id:abc456');
	const hVisitor = await recordsOf(`anonymous_id:${visitors[7]}`, ws.unmerge.keys.read);
	const rules = (await weft.get(RULES, { key: ws.unmerge.keys.admin })).json;
	const events = (await weft.counts()).events;

	await weft.restart();
	assert.equal((await weft.counts()).events, events, 'events were added by the restart');
	await weft.settle(); // the engine loads its saved state in the background
	assert.deepEqual(await snapshot(idents), before, 'lookups answer differently after a restart');
	assert.deepEqual(await recordsOf('user_id:abc456'), h456, 'a history changed across the restart');
	assert.deepEqual(await recordsOf(`anonymous_id:${visitors[7]}`, ws.unmerge.keys.read), hVisitor, 'a split history changed');
	assert.deepEqual((await weft.get(RULES, { key: ws.unmerge.keys.admin })).json, rules, 'the rules changed');

	// The block still holds for new events.
	const late = `visitor-after-restart-${RUN}`;
	assertSuccess(await weft.post('/v1/identify', { anonymousId: late, traits: { email: SHARED_EMAIL }, messageId: messageId('late2') },
		{ key: ws.unmerge.keys.write }));
	await weft.settle();
	assertError(await history(`email:${SHARED_EMAIL}`, ws.unmerge.keys.read), 404, 'not_found', 'the blocked email after a restart');
	const lp = await profileOf(`anonymous_id:${late}`, ws.unmerge.keys.read);
	assert.ok(lp && ![...before1000.values()].includes(lp), `a visitor joined ${lp} through the blocked email after a restart`);
});

test('while the engine is still loading after a restart, lookups and rules never give a wrong answer', async () => {
	const key = ws.unmerge.keys.read;
	const ident = `anonymous_id:${visitors[3]}`;
	const want = await profileOf(ident, key);
	const rules = (await weft.get(RULES, { key: ws.unmerge.keys.admin })).json;
	assert.ok(want, `${ident} has no profile`);
	assert.notDeepEqual(rules, DEFAULT_RULES);

	const res = await weft.stop();
	assert.deepEqual(res, { code: 0, signal: null }, `weft exited ${JSON.stringify(res)} on SIGTERM`);
	const hold = await holdEngineLoad();
	let lookup;
	let shown;
	try {
		await weft.start();
		// Either an answer saying "not yet" (503) or, once the state is there, the right one.
		lookup = weft.get(identPath(ident), { key, timeoutMs: 20_000 });
		shown = weft.get(RULES, { key: ws.unmerge.keys.admin, timeoutMs: 20_000 });
		await Promise.race([Promise.all([lookup, shown]), sleep(500)]);
	} finally {
		await hold.release();
	}
	lookup = await lookup;
	shown = await shown;
	if (lookup.status === 503) assertError(lookup, 503, 'loading', 'lookup while loading');
	else assert.equal(lookup.json?.profile_id, want, `lookup of an existing profile while the engine loads: ${show(lookup)}`);
	if (shown.status === 503) assertError(shown, 503, 'loading', 'rules while loading');
	else assert.deepEqual(shown.json, rules, `GET ${RULES} while the engine loads: ${show(shown)}`);
	await weft.settle();
	assert.equal(await profileOf(ident, key), want);
});

test('after a clean stop the saved state holds everything, and a rebuild from the log gives the same digest', async () => {
	const rebuildWhileUp = await weft.cli(['identity', 'rebuild', '--workspace', ws.it.name], { allowFailure: true });
	assert.equal(rebuildWhileUp.code, 1, `rebuild while a server runs: ${JSON.stringify(rebuildWhileUp)}`);
	assert.match(rebuildWhileUp.stderr, /stop it first|server/, rebuildWhileUp.stderr);

	const m = await weft.settle();
	const last = await maxSeq();
	const res = await weft.stop();
	assert.deepEqual(res, { code: 0, signal: null }, `weft exited ${JSON.stringify(res)} on SIGTERM\n${weft.logTail(40)}`);
	try {
		const saved = parseDigest((await weft.cli(['identity', 'digest'])).stdout);
		assert.equal(saved.checkpointSeq, last, 'the state saved on SIGTERM is not at the end of the log');
		for (const w of [ws.it, ws.rules, ws.unmerge]) assert.ok(saved.lines[w.workspaceId], `no digest for workspace '${w.name}'`);
		const sum = (f) => Object.values(saved.lines).reduce((n, l) => n + l[f], 0);
		assert.equal(sum('profiles'), m.weft_identity_profiles, 'saved profiles differ from /metrics');
		assert.equal(sum('identifiers'), m.weft_identity_identifiers, 'saved identifiers differ from /metrics');
		assert.equal(sum('merges'), m.weft_identity_merges, 'saved merges differ from /metrics');
		assert.equal(saved.lines[ws.unmerge.workspaceId].profiles, VISITORS + 2, 'unmerge workspace profiles');

		const rebuilt = await weft.cli(['identity', 'rebuild', '--workspace', ws.it.name]);
		const after = parseDigest(rebuilt.stdout);
		assert.deepEqual(after.lines[ws.it.workspaceId], saved.lines[ws.it.workspaceId],
			'rebuilding from the log gives another graph than the one the server built');
		assert.deepEqual(after.lines, saved.lines, 'a rebuild of one workspace changed another');
	} finally {
		await weft.start();
	}
	await weft.settle();
	assert.equal(await profileOf('user_id:abc123') !== null, true, 'lookups fail after a rebuild');
});

test('kill -9 in the middle of a stream of events: after a restart and the rest of the stream, the graph equals a rebuild', {
	timeout: 60_000 * TIMEOUT_SCALE,
}, async (t) => {
	const { keys, workspaceId } = ws.stream;
	// 240 people, each: two anonymous sessions, then a login, then an email; no limit is ever hit.
	const PEOPLE = 240;
	const people = Array.from({ length: PEOPLE }, (_, i) => ({
		user: `stream-user-${i}-${RUN}`, a1: `stream-a-${i}-${RUN}`, a2: `stream-b-${i}-${RUN}`, email: `stream.${i}.${RUN}@example.org`,
	}));
	const events = [];
	for (const p of people) {
		events.push(ev('track', { anonymousId: p.a1, event: 'Viewed' }));
		events.push(ev('page', { anonymousId: p.a2, name: 'Home' }));
	}
	for (const p of people) {
		events.push(ev('identify', { anonymousId: p.a1, userId: p.user }));
		events.push(ev('identify', { anonymousId: p.a2, traits: { email: p.email } }));
		events.push(ev('alias', { userId: p.user, previousId: p.a2 }));
	}
	const batches = [];
	for (let i = 0; i < events.length; i += 20) batches.push(events.slice(i, i + 20));

	// The first third, then a checkpoint (an admin change saves one at once),
	// so the restart loads a snapshot and replays the log after it.
	const third = Math.floor(batches.length / 3);
	await sendBatches(batches.slice(0, third).flat(), keys.write, 20);
	await weft.settle();
	const atCheckpoint = await maxSeq();
	assert.equal((await putRules({ types: {} }, ws.rules.keys.admin)).status, 200);
	const deadline = Date.now() + 10_000 * TIMEOUT_SCALE;
	while ((await weft.metrics()).weft_engine_checkpoint_seq < atCheckpoint && Date.now() < deadline) await sleep(50);
	assert.ok((await weft.metrics()).weft_engine_checkpoint_seq >= atCheckpoint, 'no checkpoint after the admin change');

	// The rest, four requests at a time, with a kill -9 once a few more are acknowledged.
	const acked = new Set();
	let next = third;
	let killed = null;
	const sender = async () => {
		while (next < batches.length && !killed) {
			const i = next++;
			try {
				const res = await weft.post('/v1/batch', { batch: batches[i] }, { key: keys.write, timeoutMs: 5000 });
				if (res.status === 200) acked.add(i);
			} catch {
				// killed under it: sent again below
			}
			if (!killed && acked.size >= 6) {
				killed = weft.stop({ signal: 'SIGKILL' });
			}
		}
	};
	await Promise.all([sender(), sender(), sender(), sender()]);
	const res = await killed;
	assert.equal(res?.signal, 'SIGKILL', `weft was not killed: ${JSON.stringify(res)}`);
	assert.ok(acked.size < batches.length - third, 'the kill came after the whole stream');
	const killedAt = await maxSeq();
	t.diagnostic(`killed with ${acked.size} of ${batches.length - third} batches acknowledged, log at seq ${killedAt}, checkpoint at ${atCheckpoint}`);

	// Start again and, like an SDK retrying, send what was not acknowledged
	// (same messageIds) as soon as the port answers, then the rest. Loading
	// the saved state is held up meanwhile (a transaction keeps
	// engine_checkpoint locked), as a large state would hold it up: the new
	// events reach the engine before it has replayed the log after its
	// checkpoint, and must not make it skip that part.
	const logBefore = fs.readFileSync(weft.logFile, 'utf8').length;
	const hold = await holdEngineLoad();
	try {
		await weft.start();
		for (let i = third; i < batches.length; i++) {
			if (acked.has(i)) continue;
			assertSuccess(await weft.post('/v1/batch', { batch: batches[i] }, { key: keys.write }), `batch ${i} after the restart`);
		}
	} finally {
		await hold.release();
	}
	const m = await weft.settle();
	assert.equal(m.weft_engine_caught_up, 1);
	const loaded = Number(/engine_state_loaded seq=(\d+)/.exec(fs.readFileSync(weft.logFile, 'utf8').slice(logBefore))?.[1]);
	assert.ok(Number.isInteger(loaded), 'no engine_state_loaded line in weft.log after the restart');
	const [{ gap }] = await weft.query(sql`SELECT count(*)::int AS gap FROM events WHERE seq > ${loaded} AND seq <= ${killedAt}`);
	t.diagnostic(`restart loaded the state at seq ${loaded}; ${gap} events after it were in the log before the restart`);
	// Events committed before the kill but after the saved state reach the
	// restarted engine only from the log.
	assert.ok(m.weft_engine_log_reads_total >= gap, `the restarted engine read ${m.weft_engine_log_reads_total} events ` +
		`from the log, but ${gap} committed before the kill (seq ${loaded + 1}..${killedAt}) were newer than its saved state`);
	const [{ n }] = await weft.query(sql`SELECT count(*)::int AS n FROM events WHERE workspace_id = ${workspaceId}`);
	assert.equal(n, events.length, 'the stream is not in the log exactly once');

	// Every person is one profile holding their four identifiers, nobody else's.
	const key = keys.read;
	const owners = await mapLimit(people, 16, async (p) => {
		const ids = [`user_id:${p.user}`, `anonymous_id:${p.a1}`, `anonymous_id:${p.a2}`, `email:${p.email}`];
		const got = [];
		for (const ident of ids) got.push(await profileOf(ident, key));
		return got;
	});
	const split = owners.filter((o) => !o[0] || o.some((x) => x !== o[0]));
	assert.deepEqual(split.slice(0, 3), [], `${split.length} people are not one profile`);
	assert.equal(new Set(owners.map((o) => o[0])).size, PEOPLE, 'people share profiles');

	const stop = await weft.stop();
	assert.deepEqual(stop, { code: 0, signal: null }, `weft exited ${JSON.stringify(stop)} on SIGTERM\n${weft.logTail(40)}`);
	try {
		const saved = parseDigest((await weft.cli(['identity', 'digest'])).stdout);
		const line = saved.lines[workspaceId];
		assert.deepEqual({ identifiers: line.identifiers, profiles: line.profiles }, { identifiers: 4 * PEOPLE, profiles: PEOPLE });
		const rebuilt = parseDigest((await weft.cli(['identity', 'rebuild', '--workspace', ws.stream.name])).stdout);
		assert.deepEqual(rebuilt.lines[workspaceId], line,
			'the graph built across a kill -9 differs from a rebuild of the same log');
		assert.deepEqual(rebuilt.lines, saved.lines, 'a rebuild of one workspace changed another');
	} finally {
		await weft.start();
	}
	const back = await weft.settle();
	assert.equal(back.weft_engine_caught_up, 1);
	assert.equal(await profileOf(`email:${people[0].email}`, key), owners[0][0], 'a lookup changed after the rebuild');
});

test('weft exits 0 on SIGTERM with no sanitizer report', () => weft.assertCleanExit());
