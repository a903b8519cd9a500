// `weft audiences recompute` (docs/cli.md): a full recompute from the log
// gives what the engine kept incrementally, event by event.
//
// Audiences and computed traits of every kind of condition are defined,
// some before a few hundred random events (seeded: identifies with traits,
// orders and page views with properties, aliases and identifies that merge
// profiles) and some after them (so they are backfilled), and more events
// follow. With the server stopped, `recompute --check` must find every
// audience and computed trait the same. A definition changed in the
// database behind the API's back is no difference (loading the state
// evaluates it, as a server's start does). Then the check is shown to
// fail: the log is changed behind the engine's back, --check reports the
// difference and saves nothing, a recompute saves the recomputed state, and
// the restarted server serves it, with the entries and exits recorded as
// cause 'recompute'. While a server runs, the command refuses.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useWeft, show, sql, ev } from './harness.mjs';

const weft = useWeft('recompute');
const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}`;
const DAY_MS = 86_400_000;

// ---------------------------------------------------------------------------
// Helpers

function admin(method, path, body) {
	return weft.request(method, path, { key: weft.keys.admin, body });
}

function read(path) {
	return weft.get(path, { key: weft.keys.read });
}

async function createTrait(body) {
	const res = await admin('POST', '/v1/computed-traits', body);
	assert.equal(res.status, 201, `POST computed trait ${body.key}: ${show(res)}`);
}

async function createAudience(key, definition) {
	const res = await admin('POST', '/v1/audiences', { key, name: key, definition });
	assert.equal(res.status, 201, `POST audience ${key}: ${show(res)}`);
}

// Every member of an audience as the endpoint gives them ({profile_id, traits}, ascending).
async function memberRows(key) {
	const out = [];
	let cursor = null;
	for (;;) {
		const qs = new URLSearchParams({ limit: '1000', ...(cursor ? { cursor } : {}) });
		const res = await read(`/v1/audiences/${key}/members?${qs}`);
		assert.equal(res.status, 200, `members of ${key}: ${show(res)}`);
		out.push(...res.json.members);
		if (res.json.next === null) return out;
		cursor = res.json.next;
	}
}

// Every member's profile id.
async function members(key) {
	return (await memberRows(key)).map((m) => m.profile_id);
}

// A small PRNG (mulberry32): the same seed, the same traffic.
function prng(seed) {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

const rand = prng(20260601);
const pick = (list) => list[Math.floor(rand() * list.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const user = (i) => `u${i}-${RUN}`;
const anon = (i) => `a${i}-${RUN}`;
const CATEGORIES = ['books', 'games', 'garden', 'music', 'tools', 'toys'];

// One random event: who sends it (a user, or an anonymous visitor), what,
// and when (up to 40 days ago, so windows of 14 and 30 days cut through).
function randomEvent() {
	const when = new Date(Date.now() - int(60, 40 * 24 * 60) * 60_000).toISOString();
	const who = rand() < 0.6 ? { userId: user(int(0, 29)) } : { anonymousId: anon(int(0, 49)) };
	const r = rand();
	if (r < 0.14) {
		return ev('identify', {
			userId: user(int(0, 29)),
			...(rand() < 0.4 ? { anonymousId: anon(int(0, 49)) } : {}),
			traits: { plan: pick(['free', 'pro', 'team']), age: int(16, 70) },
			timestamp: when,
		});
	}
	if (r < 0.2) return ev('alias', { previousId: anon(int(0, 49)), userId: user(int(0, 29)), timestamp: when });
	if (r < 0.55) {
		return ev('track', {
			...who,
			event: 'Order Completed',
			properties: { total: 5 * int(1, 60), category: pick(CATEGORIES) },
			timestamp: when,
		});
	}
	if (r < 0.88) {
		return ev('track', { ...who, event: 'Product Viewed', properties: { category: pick(CATEGORIES) }, timestamp: when });
	}
	return ev('track', { ...who, event: 'Signed Up', timestamp: when });
}

// Runs `weft audiences recompute ARGS` and parses its lines:
// { code, stdout, stderr, audiences: {key: {size, recomputed, rest}}, traits: {key: {profiles, rest}} }.
async function recompute(args = []) {
	const res = await weft.cli(['audiences', 'recompute', ...args], { allowFailure: true, timeoutMs: 120_000 });
	const audiences = {};
	const traits = {};
	for (const line of res.stdout.split('\n')) {
		let m = /^audience (\S+): (\d+) members, recomputed (\d+): (.*)$/.exec(line);
		if (m) {
			audiences[m[1]] = { size: Number(m[2]), recomputed: Number(m[3]), rest: m[4] };
			continue;
		}
		m = /^computed trait (\S+): (\d+) profiles: (.*)$/.exec(line);
		if (m) traits[m[1]] = { profiles: Number(m[2]), rest: m[3] };
	}
	return { ...res, audiences, traits };
}

const what = (res) => `exit ${res.code}\nstdout:\n${res.stdout}\nstderr:\n${res.stderr.split('\n').slice(-15).join('\n')}`;

async function checkpoint() {
	const [row] = await weft.query('SELECT seq, saved_at FROM engine_checkpoint');
	return row;
}

async function recomputeChanges() {
	return weft.query(sql`SELECT audience_id, profile_id, entered FROM audience_changes
		WHERE workspace_id = ${weft.workspaceId} AND cause = 'recompute' ORDER BY change_id`);
}

// ---------------------------------------------------------------------------
// The definitions: computed traits of several kinds, audiences on traits,
// event counts with where() and within(), sums and averages, computed(...),
// audience(...) and not; some defined before any event, some after.

const TRAITS_BEFORE = [
	{ key: 'orders', kind: 'count', event: 'Order Completed' },
	{ key: 'spend', kind: 'sum', event: 'Order Completed', property: 'total' },
	{ key: 'avg_total_30d', kind: 'avg', event: 'Order Completed', property: 'total', window: '30 days' },
];
const AUDIENCES_BEFORE = [
	['pro', "trait('plan') = 'pro'"],
	['buyers', "event('Order Completed').where(property('total') > 50).within(30 days).count() >= 2"],
	['vip', "computed('spend') > 400 and audience('buyers')"],
	// Redefined after the traffic to read an audience created after it.
	['early', "trait('plan') = 'free'"],
];
const TRAITS_AFTER = [
	{ key: 'last_category', kind: 'last', event: 'Product Viewed', property: 'category' },
	{ key: 'categories_14d', kind: 'unique_count', event: 'Product Viewed', property: 'category', window: '14 days' },
	{ key: 'max_total', kind: 'max', event: 'Order Completed', property: 'total' },
	{ key: 'big_orders', kind: 'count', event: 'Order Completed', where: "property('total') >= 200" },
];
const AUDIENCES_AFTER = [
	['viewers_not_pro', "not trait('plan') = 'pro' and event('Product Viewed').count() >= 3"],
	['big_avg', "event('Order Completed').avg(property('total')) >= 150"],
	['spenders', "event('Order Completed').sum(property('total')) > 300 or computed('big_orders') >= 2"],
	['vip_or_young', "audience('vip') or trait('age') < 25"],
	['late', "event('Signed Up').exists() and trait('age') >= 30"],
];
const ALL_AUDIENCES = [...AUDIENCES_BEFORE, ...AUDIENCES_AFTER].map(([k]) => k);
const ALL_TRAITS = [...TRAITS_BEFORE, ...TRAITS_AFTER].map((t) => t.key);

// ---------------------------------------------------------------------------

test('definitions, random traffic, definitions backfilled from it, more traffic', async () => {
	for (const t of TRAITS_BEFORE) await createTrait(t);
	for (const [key, def] of AUDIENCES_BEFORE) await createAudience(key, def);

	await weft.sendBatches(Array.from({ length: 300 }, randomEvent), weft.keys.write, 100);
	await weft.settle();

	for (const t of TRAITS_AFTER) await createTrait(t);
	for (const [key, def] of AUDIENCES_AFTER) await createAudience(key, def);
	const put = await admin('PUT', '/v1/audiences/early', {
		definition: "audience('late') or trait('plan') = 'free'",
	});
	assert.equal(put.status, 200, `PUT early: ${show(put)}`);

	await weft.sendBatches(Array.from({ length: 150 }, randomEvent), weft.keys.write, 50);
	await weft.settle();
	// The traffic is rich enough that the comparison compares something.
	for (const key of ['pro', 'buyers', 'vip', 'early', 'viewers_not_pro', 'spenders', 'vip_or_young', 'late']) {
		assert.ok((await members(key)).length > 0, `audience ${key} has no members: the traffic proves nothing`);
	}
	assert.ok((await weft.metrics()).weft_identity_merges > 0, 'the traffic merged no profiles');
});

test('recompute --check finds every audience and computed trait the same', async () => {
	const stopped = await weft.stop();
	assert.deepEqual(stopped, { code: 0, signal: null }, `weft exited ${JSON.stringify(stopped)} on SIGTERM`);
	const before = await checkpoint();

	const res = await recompute(['--check']);
	assert.equal(res.code, 0, what(res));
	assert.deepEqual(Object.keys(res.audiences).sort(), [...ALL_AUDIENCES].sort(), what(res));
	assert.deepEqual(Object.keys(res.traits).sort(), [...ALL_TRAITS].sort(), what(res));
	for (const [key, a] of Object.entries(res.audiences)) {
		assert.equal(a.rest, 'same', `audience ${key}: ${what(res)}`);
		assert.equal(a.size, a.recomputed, `audience ${key}: ${what(res)}`);
	}
	for (const [key, t] of Object.entries(res.traits)) {
		assert.equal(t.rest, 'same', `computed trait ${key}: ${what(res)}`);
		assert.ok(t.profiles > 0, `computed trait ${key}: ${what(res)}`);
	}
	assert.match(res.stdout, /all the same, nothing saved/, what(res));

	// Without --check, agreeing, it saves nothing either.
	const again = await recompute();
	assert.equal(again.code, 0, what(again));
	assert.match(again.stdout, /all the same, nothing saved/, what(again));
	assert.deepEqual(await checkpoint(), before, 'a recompute that found nothing saved the state');
	assert.deepEqual(await recomputeChanges(), [], 'changes with cause recompute were recorded');

	// --workspace picks one; an unknown one is an error, a bad flag a usage error.
	const one = await recompute(['--check', '--workspace', weft.workspace]);
	assert.equal(one.code, 0, what(one));
	assert.deepEqual(Object.keys(one.audiences).sort(), [...ALL_AUDIENCES].sort(), what(one));
	const none = await recompute(['--check', '--workspace', `nope-${RUN}`]);
	assert.equal(none.code, 1, what(none));
	assert.match(none.stderr, /no workspace called/, what(none));
	const usage = await recompute(['--frobnicate']);
	assert.equal(usage.code, 2, what(usage));
	const help = await weft.cli(['audiences', '--help']);
	assert.match(help.stdout, /weft audiences recompute/, help.stdout);
});

// A definition changed in the database while the server is stopped does not
// make the kept state differ: loading the state evaluates every audience
// whose definition is not the one its saved members were computed for, as a
// server's start does, so both sides read the new definition.
test('a definition changed in the database is evaluated by both sides', async () => {
	await weft.exec(sql`UPDATE audiences SET definition = ${"trait('plan') = 'team'"}
		WHERE workspace_id = ${weft.workspaceId} AND key = 'pro'`);
	const res = await recompute(['--check']);
	assert.equal(res.code, 0, what(res));
	for (const [key, a] of Object.entries(res.audiences)) assert.equal(a.rest, 'same', `audience ${key}: ${what(res)}`);

	await weft.start();
	await weft.settle();
	const rows = await memberRows('pro');
	assert.ok(rows.length > 0, 'no profile has the plan team');
	assert.equal(rows.length, res.audiences.pro.size, what(res));
	for (const m of rows) assert.equal(m.traits.plan, 'team', `a member of the redefined 'pro': ${JSON.stringify(m)}`);
});

test('recompute refuses while a server holds the engine state', async () => {
	for (const args of [['--check'], []]) {
		const res = await recompute(args);
		assert.equal(res.code, 1, what(res));
		assert.match(res.stderr, /a server .*holds the engine state of this database; stop it first/, what(res));
	}
});

test('when the log changed behind the engine, --check reports it and a recompute repairs it', async () => {
	const kept = {};
	for (const key of ALL_AUDIENCES) kept[key] = await members(key);
	const ids = Object.fromEntries((await weft.query(sql`SELECT key, audience_id FROM audiences
		WHERE workspace_id = ${weft.workspaceId}`)).map((r) => [r.key, r.audience_id]));
	const stopped = await weft.stop();
	assert.deepEqual(stopped, { code: 0, signal: null }, `weft exited ${JSON.stringify(stopped)} on SIGTERM`);

	// Every order's total becomes 1: the saved state was built from other totals.
	await weft.exec(sql`UPDATE events SET payload = jsonb_set(payload, '{properties,total}', '1')
		WHERE workspace_id = ${weft.workspaceId} AND event = 'Order Completed'`);
	const before = await checkpoint();

	const check = await recompute(['--check']);
	assert.equal(check.code, 3, what(check));
	assert.match(check.stdout, /differ, nothing saved \(--check\)/, what(check));
	// Nothing reads totals in these: they agree still.
	for (const key of ['pro', 'viewers_not_pro', 'late', 'early']) {
		assert.equal(check.audiences[key]?.rest, 'same', `audience ${key}: ${what(check)}`);
	}
	for (const key of ['orders', 'last_category', 'categories_14d']) {
		assert.equal(check.traits[key]?.rest, 'same', `computed trait ${key}: ${what(check)}`);
	}
	// These read totals: every member leaves (no total is above 50 now).
	for (const key of ['buyers', 'vip', 'big_avg', 'spenders']) {
		const a = check.audiences[key];
		assert.ok(a, `no line for audience ${key}: ${what(check)}`);
		assert.equal(a.size, kept[key].length, `audience ${key}: ${what(check)}`);
		assert.equal(a.recomputed, 0, `audience ${key}: ${what(check)}`);
		if (kept[key].length) {
			assert.match(a.rest, new RegExp(`^${kept[key].length} only incremental \\(prf_\\d+`), `audience ${key}: ${what(check)}`);
		}
	}
	assert.ok(kept.buyers.length > 0 && kept.spenders.length > 0, 'no buyers to lose');
	for (const key of ['spend', 'avg_total_30d', 'max_total', 'big_orders']) {
		assert.match(check.traits[key]?.rest ?? '', /^\d+ differ \(prf_\d+/, `computed trait ${key}: ${what(check)}`);
	}
	// --check saved nothing: a second one finds the same, the checkpoint did not move.
	const check2 = await recompute(['--check']);
	assert.equal(check2.code, 3, what(check2));
	assert.deepEqual(check2.audiences, check.audiences);
	assert.deepEqual(await checkpoint(), before, '--check saved the state');
	assert.deepEqual(await recomputeChanges(), [], '--check recorded changes');

	const fix = await recompute();
	assert.equal(fix.code, 0, what(fix));
	assert.match(fix.stdout, /differed, the recomputed state is saved/, what(fix));
	assert.deepEqual(fix.audiences, check.audiences, 'the recompute found another difference than the check');
	const after = await recompute(['--check']);
	assert.equal(after.code, 0, what(after));
	for (const [key, a] of Object.entries(after.audiences)) assert.equal(a.rest, 'same', `audience ${key}: ${what(after)}`);
	for (const [key, t] of Object.entries(after.traits)) assert.equal(t.rest, 'same', `computed trait ${key}: ${what(after)}`);

	// Each entry and exit the recompute implied is recorded with cause recompute:
	// the members kept, less those exits, plus those entries, are the members now.
	const changes = await recomputeChanges();
	assert.ok(changes.length > 0, 'no change with cause recompute');
	const expected = {};
	for (const key of ALL_AUDIENCES) {
		const mine = changes.filter((c) => Number(c.audience_id) === Number(ids[key]));
		const left = mine.filter((c) => !c.entered).map((c) => `prf_${c.profile_id}`);
		const entered = mine.filter((c) => c.entered).map((c) => `prf_${c.profile_id}`);
		const [, onlyRec = 0] = /^(\d+) only recomputed/.exec(check.audiences[key].rest) ?? [];
		const [, onlyInc = 0] = /(\d+) only incremental/.exec(check.audiences[key].rest) ?? [];
		assert.equal(left.length, Number(onlyInc), `exits of ${key}: ${JSON.stringify(mine)}`);
		assert.equal(entered.length, Number(onlyRec), `entries of ${key}: ${JSON.stringify(mine)}`);
		expected[key] = [...kept[key].filter((p) => !left.includes(p)), ...entered]
			.sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
	}
	for (const key of ['buyers', 'vip', 'big_avg', 'spenders']) {
		assert.deepEqual(expected[key], [], `${key} keeps members`);
	}

	// The restarted server serves the recomputed state.
	await weft.start();
	await weft.settle();
	for (const key of ALL_AUDIENCES) {
		const now = await members(key);
		assert.equal(now.length, fix.audiences[key].recomputed, `members of ${key} after the restart`);
		assert.deepEqual(now, expected[key], `members of ${key} after the restart`);
	}
	const aud = await read('/v1/audiences/buyers');
	assert.equal(aud.status, 200, show(aud));
	assert.equal(aud.json.size, 0, show(aud));
	await weft.assertCleanExit();
});
