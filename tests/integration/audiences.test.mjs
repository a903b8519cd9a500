// Audiences and computed traits over HTTP (docs/audiences.md, docs/api.md
// "Audiences"): the definitions' CRUD and errors, membership kept up to date
// as events arrive, backfill of definitions written after the events,
// computed trait values on the profile lookups, sliding windows moved by the
// test clock, merges, member paging, previews, a restart, and the
// audience_changes rows the engine writes at its checkpoints.
//
// One PostgreSQL and one Weft (with WEFT_TEST_CLOCK=1, so PUT /v1/admin/clock
// exists) serve the whole file, in the harness's workspace 'it'. The tests
// run in order and some build on earlier ones (the 'rt_buyers' audience of
// the real-time test is reused by the merge test). Each test uses its own
// trait names and event names so that audiences stay apart.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useWeft, assertError, show, sql, ev, eventually, identSegment } from './harness.mjs';

const weft = useWeft('audiences', { env: { WEFT_TEST_CLOCK: '1' } });
const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}`;
const uid = (name) => `${name}-${RUN}`;

// ---------------------------------------------------------------------------
// Helpers

function admin(method, path, body) {
	return weft.request(method, path, { key: weft.keys.admin, body });
}

function read(path) {
	return weft.get(path, { key: weft.keys.read });
}

async function createAudience(key, definition, name = key) {
	const res = await admin('POST', '/v1/audiences', { key, name, definition });
	assert.equal(res.status, 201, `POST audience ${key}: ${show(res)}`);
	return res.json;
}

async function createTrait(body) {
	const res = await admin('POST', '/v1/computed-traits', body);
	assert.equal(res.status, 201, `POST computed trait ${body.key}: ${show(res)}`);
	return res.json;
}

// The profile id userId resolves to (asserting a 200).
async function pidOf(ident) {
	const res = await read(`/v1/profiles/${identSegment(ident)}`);
	assert.equal(res.status, 200, `${ident}: ${show(res)}`);
	assert.match(res.json.profile_id, /^prf_\d+$/, `${ident}: ${show(res)}`);
	return res.json.profile_id;
}

async function profileOf(ident) {
	const res = await read(`/v1/profiles/${identSegment(ident)}`);
	assert.equal(res.status, 200, `${ident}: ${show(res)}`);
	return res.json;
}

const num = (prf) => Number(prf.slice(4));
const sortPids = (list) => [...list].sort((a, b) => num(a) - num(b));

// Every member of an audience, following next; asserts the paging rules on the way.
async function allMembers(key, limit = 1000) {
	const out = [];
	const pages = [];
	let cursor = null;
	for (let page = 0; page < 10_000; page++) {
		const qs = new URLSearchParams({ limit: String(limit), ...(cursor ? { cursor } : {}) });
		const res = await read(`/v1/audiences/${key}/members?${qs}`);
		assert.equal(res.status, 200, `members of ${key}, page ${page}: ${show(res)}`);
		assert.ok(Array.isArray(res.json.members), show(res));
		assert.ok(res.json.members.length <= limit, `a page longer than limit ${limit}: ${show(res)}`);
		for (const m of res.json.members) {
			assert.match(m.profile_id, /^prf_\d+$/, show(res));
			assert.equal(typeof m.traits, 'object', show(res));
		}
		out.push(...res.json.members.map((m) => m.profile_id));
		pages.push(res.json);
		if (res.json.next === null) return { members: out, pages };
		assert.equal(res.json.next, res.json.members.at(-1)?.profile_id,
			`next is not the last member of the page: ${show(res)}`);
		cursor = res.json.next;
	}
	assert.fail('too many pages');
}

// Waits until the members of an audience are exactly `expected` (any order);
// resolves the last list seen.
async function membersBecome(key, expected, ms = 5000) {
	const want = JSON.stringify(sortPids(expected));
	const got = await eventually(async () => (await allMembers(key)).members,
		(m) => JSON.stringify(sortPids(m)) === want, ms);
	assert.deepEqual(sortPids(got), sortPids(expected), `members of ${key}`);
	return got;
}

async function getAudience(key) {
	const res = await read(`/v1/audiences/${key}`);
	assert.equal(res.status, 200, `GET audience ${key}: ${show(res)}`);
	return res.json;
}

const SEG_TRAITS = (ident, klass) =>
	`/v1/spaces/${weft.workspace}/collections/users/profiles/${identSegment(ident)}/traits?class=${klass}`;

// ---------------------------------------------------------------------------
// 1. CRUD

test('computed traits: create, list, get, replace, errors', async () => {
	const created = await createTrait({
		key: 'crud_orders', name: 'Orders', kind: 'count', event: 'Crud Order', window: '30 days',
	});
	assert.equal(created.key, 'crud_orders', show({ status: 201, text: JSON.stringify(created) }));
	assert.equal(created.kind, 'count');
	assert.equal(created.event, 'Crud Order');
	assert.equal(typeof created.id, 'number', JSON.stringify(created));
	assert.equal(typeof created.profiles, 'number', JSON.stringify(created));

	const list = await read('/v1/computed-traits');
	assert.equal(list.status, 200, show(list));
	assert.deepEqual(list.json.computed_traits.map((c) => c.key), ['crud_orders'], show(list));

	const one = await read('/v1/computed-traits/crud_orders');
	assert.equal(one.status, 200, show(one));
	assert.deepEqual(one.json, list.json.computed_traits[0]);

	const put = await admin('PUT', '/v1/computed-traits/crud_orders', {
		kind: 'sum', event: 'Crud Order', property: 'total',
	});
	assert.equal(put.status, 200, `PUT: ${show(put)}`);
	assert.equal(put.json.kind, 'sum', show(put));
	assert.equal(put.json.property, 'total', show(put));
	assert.equal(put.json.id, created.id, `the id changed on PUT: ${show(put)}`);
	assert.equal((await read('/v1/computed-traits/crud_orders')).json.kind, 'sum');

	assertError(await admin('POST', '/v1/computed-traits', { key: 'crud_orders', kind: 'count', event: 'X' }),
		409, 'exists', 'duplicate computed trait');
	assertError(await admin('POST', '/v1/computed-traits', { key: 'crud_bad', kind: 'sum', event: 'X' }),
		400, 'invalid_definition', 'sum without property');
	assertError(await admin('POST', '/v1/computed-traits', { key: 'crud_bad', kind: 'median', event: 'X', property: 'p' }),
		400, 'invalid_definition', 'unknown kind');
	assertError(await admin('POST', '/v1/computed-traits', { key: 'crud_bad', kind: 'count', event: 'X', window: 'forever' }),
		400, 'invalid_definition', 'bad window');
	assertError(await admin('POST', '/v1/computed-traits', { key: 'crud_bad', kind: 'count', event: 'X', where: "property('a') == 1" }),
		400, 'invalid_definition', 'bad where');
	assertError(await read('/v1/computed-traits/nope'), 404, 'not_found', 'GET missing computed trait');
	assertError(await admin('DELETE', '/v1/computed-traits/nope'), 404, 'not_found', 'DELETE missing computed trait');
	assertError(await weft.request('POST', '/v1/computed-traits', {
		key: weft.keys.read, body: { key: 'crud_ro', kind: 'count', event: 'X' },
	}), 403, 'forbidden', 'read key POST');
	assertError(await weft.request('POST', '/v1/computed-traits', {
		key: weft.keys.write, body: { key: 'crud_wo', kind: 'count', event: 'X' },
	}), 403, 'forbidden', 'write key POST');
	assertError(await weft.request('GET', '/v1/computed-traits', {}), 401, 'unauthorized', 'no key');
	assert.deepEqual((await read('/v1/computed-traits')).json.computed_traits.map((c) => c.key), ['crud_orders'],
		'a refused request created a computed trait');
});

test('audiences: create, canonical form, get, replace, errors, in_use, delete', async () => {
	const a = await createAudience('crud_pro', "not( trait ('crud_plan')='free' ) and\n  computed('crud_orders') >= 2", 'CRUD pro');
	assert.equal(typeof a.id, 'number', JSON.stringify(a));
	assert.equal(a.key, 'crud_pro');
	assert.equal(a.name, 'CRUD pro');
	assert.equal(a.definition, "not trait('crud_plan') = 'free' and computed('crud_orders') >= 2", JSON.stringify(a));
	assert.equal(a.size, 0, JSON.stringify(a));
	assert.ok(['live', 'computing'].includes(a.status), JSON.stringify(a));
	assert.ok('computed_at' in a, JSON.stringify(a));

	const list = await read('/v1/audiences');
	assert.equal(list.status, 200, show(list));
	assert.deepEqual(list.json.audiences.map((x) => x.key), ['crud_pro'], show(list));
	const one = await getAudience('crud_pro');
	assert.equal(one.definition, a.definition);
	assert.equal(one.id, a.id);

	const put = await admin('PUT', '/v1/audiences/crud_pro', { name: 'Renamed', definition: "trait('crud_plan') = 'pro'" });
	assert.equal(put.status, 200, show(put));
	assert.equal(put.json.name, 'Renamed', show(put));
	assert.equal(put.json.definition, "trait('crud_plan') = 'pro'", show(put));
	assert.equal(put.json.id, a.id, show(put));

	assertError(await admin('POST', '/v1/audiences', { key: 'crud_pro', name: 'x', definition: "trait('a') = 1" }),
		409, 'exists', 'duplicate audience');

	const bad = await admin('POST', '/v1/audiences', { key: 'crud_bad', name: 'x', definition: "trait('a') == 1" });
	assertError(bad, 400, 'invalid_definition', 'syntax error');
	assert.match(bad.json.error.message, /line 1, column 12/, show(bad));
	const typeErr = await admin('POST', '/v1/audiences', { key: 'crud_bad', name: 'x', definition: "event('X').count()" });
	assertError(typeErr, 400, 'invalid_definition', 'type error');
	assert.match(typeErr.json.error.message, /line 1, column 19/, show(typeErr));
	const line2 = await admin('POST', '/v1/audiences', { key: 'crud_bad', name: 'x', definition: "trait('a') = 1 and\ntrait('b') = " });
	assertError(line2, 400, 'invalid_definition', 'error on line 2');
	assert.match(line2.json.error.message, /line 2, column \d+/, show(line2));

	assertError(await admin('POST', '/v1/audiences', { key: 'crud_bad', name: 'x', definition: "computed('nope') >= 1" }),
		400, 'invalid_definition', 'missing computed trait');
	assertError(await admin('POST', '/v1/audiences', { key: 'crud_bad', name: 'x', definition: "audience('nope')" }),
		400, 'invalid_definition', 'missing audience');
	assertError(await admin('POST', '/v1/audiences', { key: 'crud_self', name: 'x', definition: "audience('crud_self')" }),
		400, 'invalid_definition', 'self reference');
	assertError(await read('/v1/audiences/nope'), 404, 'not_found', 'GET missing audience');
	assertError(await read('/v1/audiences/nope/members'), 404, 'not_found', 'members of missing audience');
	assertError(await admin('DELETE', '/v1/audiences/nope'), 404, 'not_found', 'DELETE missing audience');
	assertError(await weft.request('POST', '/v1/audiences', {
		key: weft.keys.read, body: { key: 'crud_ro', name: 'x', definition: "trait('a') = 1" },
	}), 403, 'forbidden', 'read key POST');
	assertError(await weft.request('DELETE', '/v1/audiences/crud_pro', { key: weft.keys.read }),
		403, 'forbidden', 'read key DELETE');

	// An audience that uses the computed trait keeps it from being deleted.
	await createAudience('crud_uses_ct', "computed('crud_orders') > 10");
	assertError(await admin('DELETE', '/v1/computed-traits/crud_orders'), 409, 'in_use', 'delete a used computed trait');
	assert.equal((await read('/v1/computed-traits/crud_orders')).status, 200, 'the used computed trait is gone');
	// And an audience used by another one.
	await createAudience('crud_uses_aud', "audience('crud_pro') or audience('crud_uses_ct')");
	assertError(await admin('DELETE', '/v1/audiences/crud_pro'), 409, 'in_use', 'delete a used audience');

	assert.deepEqual((await read('/v1/audiences')).json.audiences.map((x) => x.key).sort(),
		['crud_pro', 'crud_uses_aud', 'crud_uses_ct'], 'a refused request created an audience');

	for (const key of ['crud_uses_aud', 'crud_uses_ct', 'crud_pro']) {
		const del = await admin('DELETE', `/v1/audiences/${key}`);
		assert.equal(del.status, 204, `DELETE ${key}: ${show(del)}`);
		assertError(await read(`/v1/audiences/${key}`), 404, 'not_found', `GET after DELETE ${key}`);
	}
	const delCt = await admin('DELETE', '/v1/computed-traits/crud_orders');
	assert.equal(delCt.status, 204, show(delCt));
	assertError(await read('/v1/computed-traits/crud_orders'), 404, 'not_found', 'GET after DELETE');
	assert.deepEqual((await read('/v1/audiences')).json.audiences, []);
	assert.deepEqual((await read('/v1/computed-traits')).json.computed_traits, []);
});

// ---------------------------------------------------------------------------
// 2. Real time

test('real-time membership follows identify and track events', async () => {
	await createAudience('rt_pro', "trait('rt_plan') = 'pro'");
	await createAudience('rt_buyers', "event('Order Completed').where(property('total') > 100).count() >= 2");

	const [a, b, c, d] = ['rt-a', 'rt-b', 'rt-c', 'rt-d'].map(uid);
	await weft.sendBatches([
		ev('identify', { userId: a, traits: { rt_plan: 'pro' } }),
		ev('track', { userId: a, event: 'Order Completed', properties: { total: 150 } }),
		ev('track', { userId: a, event: 'Order Completed', properties: { total: 101 } }),
		ev('identify', { userId: b, traits: { rt_plan: 'free' } }),
		ev('track', { userId: b, event: 'Order Completed', properties: { total: 150 } }),
		ev('track', { userId: b, event: 'Order Completed', properties: { total: 50 } }),
		ev('track', { userId: b, event: 'Order Started', properties: { total: 500 } }),
		ev('identify', { userId: c, traits: { rt_plan: 'pro' } }),
		ev('track', { userId: d, event: 'Order Completed', properties: { total: 200 } }),
		ev('track', { userId: d, event: 'Order Completed', properties: { total: 300 } }),
	]);
	await weft.settle();
	const [pa, pb, pc, pd] = await Promise.all([a, b, c, d].map((u) => pidOf(`user_id:${u}`)));
	assert.equal(new Set([pa, pb, pc, pd]).size, 4);

	await membersBecome('rt_pro', [pa, pc]);
	await membersBecome('rt_buyers', [pa, pd]);
	assert.equal((await getAudience('rt_pro')).size, 2);
	assert.equal((await getAudience('rt_buyers')).size, 2);

	const prof = await profileOf(`user_id:${a}`);
	assert.deepEqual([...prof.audiences].sort(), ['rt_buyers', 'rt_pro'], JSON.stringify(prof));
	assert.deepEqual((await profileOf(`user_id:${b}`)).audiences, []);
	const cls = await read(SEG_TRAITS(`user_id:${a}`, 'audience'));
	assert.equal(cls.status, 200, show(cls));
	assert.deepEqual(cls.json.traits, { rt_buyers: true, rt_pro: true }, show(cls));

	// Member traits come with the members.
	const page = await read('/v1/audiences/rt_pro/members');
	const ma = page.json.members.find((m) => m.profile_id === pa);
	assert.equal(ma?.traits?.rt_plan, 'pro', show(page));

	// A plan change takes a out; b's third big order puts b in.
	await weft.sendBatches([
		ev('identify', { userId: a, traits: { rt_plan: 'team' } }),
		ev('track', { userId: b, event: 'Order Completed', properties: { total: 100.5 } }),
	]);
	await membersBecome('rt_pro', [pc]);
	await membersBecome('rt_buyers', [pa, pb, pd]);
	assert.deepEqual((await profileOf(`user_id:${a}`)).audiences, ['rt_buyers']);
});

// ---------------------------------------------------------------------------
// 3 and 4. Backfill and computed traits

test('a definition written after the events includes them (backfill)', async () => {
	const [u1, u2] = ['bf-1', 'bf-2'].map(uid);
	await weft.sendBatches([
		ev('track', { userId: u1, event: 'Bf Purchase', properties: { amount: 10, category: 'shoes' } }),
		ev('track', { userId: u1, event: 'Bf Purchase', properties: { amount: 20, category: 'hats' } }),
		ev('track', { userId: u1, event: 'Bf Purchase', properties: { amount: 30, category: 'shoes' } }),
		ev('track', { userId: u2, event: 'Bf Purchase', properties: { amount: 5, category: 'socks' } }),
	]);
	await weft.settle();
	const p1 = await pidOf(`user_id:${u1}`);

	const a = await createAudience('bf_repeat', "event('Bf Purchase').count() >= 2");
	if (a.status === 'live') assert.equal(a.size, 1, `live but size ${a.size}: ${JSON.stringify(a)}`);
	const done = await eventually(() => getAudience('bf_repeat'), (x) => x.status === 'live' && x.size === 1);
	assert.equal(done.status, 'live', JSON.stringify(done));
	assert.equal(done.size, 1, JSON.stringify(done));
	assert.ok(done.computed_at, JSON.stringify(done));
	await membersBecome('bf_repeat', [p1]);
});

test('computed traits: count, sum, most_frequent, unique_list on the profile lookups', async () => {
	const [u1, u2] = ['bf-1', 'bf-2'].map(uid);
	const cnt = await createTrait({ key: 'bf_count', kind: 'count', event: 'Bf Purchase' });
	assert.equal(cnt.profiles, 2, `profiles of a backfilled count: ${JSON.stringify(cnt)}`);
	await createTrait({ key: 'bf_sum', kind: 'sum', event: 'Bf Purchase', property: 'amount' });
	await createTrait({ key: 'bf_top', kind: 'most_frequent', event: 'Bf Purchase', property: 'category' });
	await createTrait({ key: 'bf_cats', kind: 'unique_list', event: 'Bf Purchase', property: 'category' });
	await createTrait({ key: 'bf_big', kind: 'count', event: 'Bf Purchase', where: "property('amount') > 15" });

	const want1 = { bf_count: 3, bf_sum: 60, bf_top: 'shoes', bf_cats: ['hats', 'shoes'], bf_big: 2 };
	const got1 = await eventually(async () => (await profileOf(`user_id:${u1}`)).computed_traits,
		(c) => JSON.stringify(c && Object.fromEntries(Object.entries(c).sort())) ===
			JSON.stringify(Object.fromEntries(Object.entries(want1).sort())));
	assert.deepEqual(got1, want1, 'computed_traits of bf-1');

	const seg = await read(SEG_TRAITS(`user_id:${u1}`, 'computed_trait'));
	assert.equal(seg.status, 200, show(seg));
	assert.deepEqual(seg.json.traits, want1, show(seg));
	const segAud = await read(SEG_TRAITS(`user_id:${u1}`, 'audience'));
	assert.deepEqual(segAud.json.traits, { bf_repeat: true }, show(segAud));

	const p2 = await profileOf(`user_id:${u2}`);
	assert.equal(p2.computed_traits.bf_count, 1, JSON.stringify(p2));
	assert.equal(p2.computed_traits.bf_sum, 5, JSON.stringify(p2));
	assert.equal(p2.computed_traits.bf_top, 'socks', JSON.stringify(p2));
	assert.deepEqual(p2.computed_traits.bf_cats, ['socks'], JSON.stringify(p2));

	// New events move the values and an audience on a computed trait.
	await createAudience('bf_spenders', "computed('bf_sum') >= 50");
	await membersBecome('bf_spenders', [await pidOf(`user_id:${u1}`)]);
	await weft.sendBatches([
		ev('track', { userId: u2, event: 'Bf Purchase', properties: { amount: 45, category: 'hats' } }),
		ev('track', { userId: u2, event: 'Bf Purchase', properties: { amount: 1, category: 'hats' } }),
	]);
	const want2 = { bf_count: 3, bf_sum: 51, bf_top: 'hats', bf_cats: ['hats', 'socks'], bf_big: 1 };
	const got2 = await eventually(async () => (await profileOf(`user_id:${u2}`)).computed_traits,
		(c) => c?.bf_count === 3 && c?.bf_sum === 51);
	assert.deepEqual(got2, want2, 'computed_traits of bf-2 after two more events');
	await membersBecome('bf_spenders', [await pidOf(`user_id:${u1}`), await pidOf(`user_id:${u2}`)]);
	await membersBecome('bf_repeat', [await pidOf(`user_id:${u1}`), await pidOf(`user_id:${u2}`)]);
});

// ---------------------------------------------------------------------------
// 6. Merge

test('a merge of two anonymous profiles brings the merged profile into a count audience', async () => {
	const [m1, m2] = ['anon-m1', 'anon-m2'].map(uid);
	const user = uid('merge-user');
	const before = (await allMembers('rt_buyers')).members;
	await weft.sendBatches([
		ev('track', { anonymousId: m1, event: 'Order Completed', properties: { total: 150 } }),
		ev('track', { anonymousId: m2, event: 'Order Completed', properties: { total: 150 } }),
	]);
	await weft.settle();
	const [q1, q2] = await Promise.all([pidOf(`anonymous_id:${m1}`), pidOf(`anonymous_id:${m2}`)]);
	assert.notEqual(q1, q2);
	assert.deepEqual(sortPids((await allMembers('rt_buyers')).members), sortPids(before),
		'an anonymous profile with one order entered the count >= 2 audience');

	await weft.sendBatches([
		ev('identify', { anonymousId: m1, userId: user }),
		ev('identify', { anonymousId: m2, userId: user }),
	]);
	await weft.settle();
	const merged = await pidOf(`user_id:${user}`);
	assert.equal(await pidOf(`anonymous_id:${m1}`), merged, 'anon-m1 not on the user');
	assert.equal(await pidOf(`anonymous_id:${m2}`), merged, 'anon-m2 not on the user');
	await membersBecome('rt_buyers', [...before, merged]);
	assert.ok((await profileOf(`user_id:${user}`)).audiences.includes('rt_buyers'));
});

// ---------------------------------------------------------------------------
// 7 and 8. Paging and preview

const PAGE_USERS = 12;

test('members paging with limit=2 yields every member once, in ascending order', async () => {
	const users = Array.from({ length: PAGE_USERS }, (_, i) => uid(`pg-${i}`));
	await weft.sendBatches([
		...users.map((u) => ev('identify', { userId: u, traits: { pg_group: 'g1' } })),
		ev('identify', { userId: uid('pg-other'), traits: { pg_group: 'g2' } }),
	]);
	await weft.settle();
	const pids = await Promise.all(users.map((u) => pidOf(`user_id:${u}`)));
	await createAudience('pg_g1', "trait('pg_group') = 'g1'");
	await membersBecome('pg_g1', pids);

	const { members, pages } = await allMembers('pg_g1', 2);
	assert.equal(pages.length, PAGE_USERS / 2, `pages: ${JSON.stringify(pages)}`);
	assert.equal(new Set(members).size, members.length, `a member twice: ${members}`);
	assert.deepEqual(members, sortPids(pids), 'members not ascending or not all of them');
	for (const p of pages) assert.equal(p.members.length, 2, JSON.stringify(p));

	assertError(await read('/v1/audiences/pg_g1/members?limit=0'), 400, 'invalid_parameter', 'limit=0');
	assertError(await read('/v1/audiences/pg_g1/members?limit=1001'), 400, 'invalid_parameter', 'limit=1001');
	assertError(await read('/v1/audiences/pg_g1/members?cursor=xyz'), 400, 'invalid_parameter', 'bad cursor');
});

test('preview gives size and sample and saves nothing', async () => {
	const before = await read('/v1/audiences');
	const pids = await Promise.all(Array.from({ length: PAGE_USERS }, (_, i) => pidOf(`user_id:${uid(`pg-${i}`)}`)));

	const res = await weft.request('POST', '/v1/audiences/preview', {
		key: weft.keys.read, body: { definition: "trait('pg_group') = 'g1'" },
	});
	assert.equal(res.status, 200, show(res));
	assert.equal(res.json.size, PAGE_USERS, show(res));
	assert.equal(res.json.sample.length, 10, show(res));
	for (const p of res.json.sample) assert.ok(pids.includes(p), `${p} is not a member: ${show(res)}`);
	assert.equal(new Set(res.json.sample).size, 10, show(res));

	const small = await weft.request('POST', '/v1/audiences/preview', {
		key: weft.keys.admin, body: { definition: "trait('pg_group') = 'g2'" },
	});
	assert.equal(small.status, 200, show(small));
	assert.deepEqual(small.json, { size: 1, sample: [await pidOf(`user_id:${uid('pg-other')}`)] }, show(small));

	const none = await weft.request('POST', '/v1/audiences/preview', {
		key: weft.keys.read, body: { definition: "trait('pg_group') = 'nobody'" },
	});
	assert.deepEqual(none.json, { size: 0, sample: [] }, show(none));

	const bad = await weft.request('POST', '/v1/audiences/preview', {
		key: weft.keys.read, body: { definition: "trait('a') == 1" },
	});
	assertError(bad, 400, 'invalid_definition', 'bad preview');
	assert.match(bad.json.error.message, /line 1, column 12/, show(bad));

	const after = await read('/v1/audiences');
	assert.deepEqual(after.json, before.json, 'preview changed the audience list');
});

// ---------------------------------------------------------------------------
// 5. Windows and the test clock

test('a within() window slides out when the test clock moves, with no new event', async () => {
	const user = uid('win');
	const nowS = Math.floor(Date.now() / 1000);
	await weft.sendBatches([
		ev('track', { userId: user, event: 'Visit', timestamp: new Date(nowS * 1000).toISOString() }),
	]);
	await weft.settle();
	const p = await pidOf(`user_id:${user}`);
	await createAudience('win_visit', "event('Visit').within(2 days).exists()");
	await createTrait({ key: 'win_visits', kind: 'count', event: 'Visit', window: '2 days' });
	await membersBecome('win_visit', [p]);
	assert.equal((await profileOf(`user_id:${user}`)).computed_traits.win_visits, 1);

	// One day on: still inside the window.
	const one = await admin('PUT', '/v1/admin/clock', { now: nowS + 86400 });
	assert.equal(one.status, 200, show(one));
	assert.deepEqual((await allMembers('win_visit')).members, [p], 'left the window after one day');

	// Three days on: out, at once (the reply comes after the slide).
	const three = await admin('PUT', '/v1/admin/clock', { now: nowS + 3 * 86400 });
	assert.equal(three.status, 200, show(three));
	assert.deepEqual((await allMembers('win_visit')).members, [], 'still a member 3 days later');
	assert.equal((await getAudience('win_visit')).size, 0);
	const prof = await profileOf(`user_id:${user}`);
	assert.ok(!prof.audiences.includes('win_visit'), JSON.stringify(prof));
	assert.equal(prof.computed_traits.win_visits, 0, JSON.stringify(prof.computed_traits));

	// The exit is written to audience_changes at a checkpoint (every 10 s at most).
	const exits = await eventually(() => weft.query(sql`SELECT entered, cause, at FROM audience_changes
		WHERE workspace_id = ${weft.workspaceId} AND profile_id = ${num(p)} ORDER BY change_id`),
	(r) => r.some((x) => !x.entered), 15_000);
	assert.ok(exits.some((r) => !r.entered && r.cause === 'window'),
		`no exit with cause 'window' in audience_changes for ${p} after the clock moved 3 days: ${JSON.stringify(exits)}`);

	assertError(await weft.request('PUT', '/v1/admin/clock', { key: weft.keys.admin, body: { now: 'soon' } }),
		400, 'invalid_parameter', 'clock with a string');
	assertError(await weft.request('PUT', '/v1/admin/clock', { key: weft.keys.read, body: { now: nowS } }),
		403, 'forbidden', 'clock with a read key');
	// Back to the real time for what follows.
	assert.equal((await admin('PUT', '/v1/admin/clock', { now: Date.now() / 1000 })).status, 200);
});

// ---------------------------------------------------------------------------
// 9 and 10. Restart and audience_changes

const KEPT = ['rt_pro', 'rt_buyers', 'bf_repeat', 'bf_spenders', 'pg_g1'];

test('audiences, computed traits and memberships survive a restart', async () => {
	await weft.settle();
	const audiences = (await read('/v1/audiences')).json.audiences;
	const traits = (await read('/v1/computed-traits')).json.computed_traits;
	const members = {};
	for (const key of KEPT) members[key] = (await allMembers(key)).members;
	const u1 = await profileOf(`user_id:${uid('bf-1')}`);

	await weft.restart();
	await weft.settle();

	const strip = (list) => list.filter((x) => x.key !== 'win_visit' && x.key !== 'win_visits')
		.map(({ computed_at, status, ...rest }) => rest);
	const after = (await read('/v1/audiences')).json.audiences;
	assert.deepEqual(strip(after), strip(audiences), 'the audiences changed over a restart');
	const afterCt = (await read('/v1/computed-traits')).json.computed_traits;
	assert.deepEqual(strip(afterCt), strip(traits), 'the computed traits changed over a restart');
	for (const key of KEPT) {
		assert.deepEqual((await allMembers(key)).members, members[key], `members of ${key} after the restart`);
	}
	const u1After = await profileOf(`user_id:${uid('bf-1')}`);
	const { win_visits: _w1, ...ct1 } = u1.computed_traits;
	const { win_visits: _w2, ...ct2 } = u1After.computed_traits;
	assert.deepEqual(ct2, ct1, 'computed traits of bf-1 after the restart');
	assert.deepEqual([...u1After.audiences].sort(), [...u1.audiences].sort());
});

test('audience_changes holds the entries and exits with their causes', async () => {
	// The restart's SIGTERM wrote a checkpoint; wait for one more in case the
	// changes are written asynchronously.
	const rows = await eventually(
		() => weft.query(sql`SELECT cause, entered, profile_id, audience_id FROM audience_changes
			WHERE workspace_id = ${weft.workspaceId} ORDER BY change_id`),
		(r) => new Set(r.map((x) => x.cause)).has('event') && new Set(r.map((x) => x.cause)).has('definition'),
		15_000);
	const causes = new Set(rows.map((r) => r.cause));
	for (const c of causes) {
		assert.ok(['event', 'merge', 'split', 'window', 'definition', 'recompute'].includes(c), `unknown cause ${c}`);
	}
	assert.ok(causes.has('event'), `no 'event' change: ${JSON.stringify([...causes])}`);
	assert.ok(causes.has('definition'), `no 'definition' change: ${JSON.stringify([...causes])}`);

	// rt_pro: rt-a entered on an event, then left on an event.
	const { id: rtPro } = await getAudience('rt_pro');
	const pa = num(await pidOf(`user_id:${uid('rt-a')}`));
	const aRows = await weft.query(sql`SELECT entered, cause FROM audience_changes
		WHERE workspace_id = ${weft.workspaceId} AND audience_id = ${rtPro} AND profile_id = ${pa} ORDER BY change_id`);
	assert.deepEqual(aRows, [{ entered: true, cause: 'event' }, { entered: false, cause: 'event' }],
		`rt_pro changes of rt-a`);

	// bf_repeat: bf-1 entered by the definition (backfill).
	const { id: bfRepeat } = await getAudience('bf_repeat');
	const p1 = num(await pidOf(`user_id:${uid('bf-1')}`));
	const bRows = await weft.query(sql`SELECT entered, cause FROM audience_changes
		WHERE workspace_id = ${weft.workspaceId} AND audience_id = ${bfRepeat} AND profile_id = ${p1} ORDER BY change_id`);
	assert.deepEqual(bRows, [{ entered: true, cause: 'definition' }], 'bf_repeat changes of bf-1');

	// The window audience: an exit caused by the window.
	const winRows = await weft.query(sql`SELECT c.audience_id, c.entered, c.cause, c.at, c.seq FROM audience_changes c
		WHERE c.workspace_id = ${weft.workspaceId} AND c.profile_id = ${num(await pidOf(`user_id:${uid('win')}`))}
		ORDER BY c.change_id`);
	assert.ok(winRows.some((r) => !r.entered && r.cause === 'window'),
		`no exit with cause 'window' for the Visit profile; its changes: ${JSON.stringify(winRows)}`);

	// The merged profile entered rt_buyers by the merge.
	const merged = num(await pidOf(`user_id:${uid('merge-user')}`));
	const { id: rtBuyers } = await getAudience('rt_buyers');
	const mRows = await weft.query(sql`SELECT entered, cause FROM audience_changes
		WHERE workspace_id = ${weft.workspaceId} AND audience_id = ${rtBuyers} AND profile_id = ${merged} ORDER BY change_id`);
	assert.deepEqual(mRows.filter((r) => r.entered), [{ entered: true, cause: 'merge' }], `rt_buyers changes of the merged profile: ${JSON.stringify(mRows)}`);
});

test('weft exits cleanly', async () => {
	await weft.assertCleanExit();
});
