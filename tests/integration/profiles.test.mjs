// Profiles over HTTP (docs/profiles.md): Segment's Profile API
// (GET /v1/spaces/{workspace}/collections/users/profiles/{type}:{value}/
// traits|external_ids|events|metadata|links) and Weft's own
// GET /v1/profiles/{type}:{value}. Lookups by every identifier type before
// and after a merge, the response shapes field by field, trait semantics
// end to end, paging a long history, keys and workspaces, and a shared
// email unmerged after the fact with each visitor's events and traits.
//
// One PostgreSQL and one Weft serve the file, with workspaces 'it' (the
// harness's), 'other' (to check workspaces stay apart) and 'shared' (its
// rules let one email glue visitors together). Events are applied by the
// engine shortly after their 200: weft.settle() polls /metrics until
// weft_engine_applied_seq reaches weft_log_last_seq.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
	useWeft, assertError, assertSuccess, messageId, show, sleep, sql, TIMEOUT_SCALE,
	ev, identSegment,
} from './harness.mjs';

const weft = useWeft('profiles', { workspaces: ['other', 'shared'] });
const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}`;

// ---------------------------------------------------------------------------
// Helpers

function segPath(ident, endpoint, { space = weft.workspace, query = {} } = {}) {
	const qs = new URLSearchParams(query).toString();
	return `/v1/spaces/${space}/collections/users/profiles/${identSegment(ident)}/${endpoint}${qs ? `?${qs}` : ''}`;
}

// GET of a Segment Profile API endpoint.
function seg(ident, endpoint, { key = weft.keys.read, ...opts } = {}) {
	return weft.get(segPath(ident, endpoint, opts), { key });
}

// GET /v1/profiles/{type}:{value}.
function native(ident, key = weft.keys.read) {
	return weft.get(`/v1/profiles/${identSegment(ident)}`, { key });
}

// The whole profile of "type:value" (asserting a 200).
async function profile(ident, key = weft.keys.read) {
	const res = await native(ident, key);
	assert.equal(res.status, 200, `${ident}: ${show(res)}`);
	return res.json;
}

async function profileId(ident, key = weft.keys.read) {
	const res = await native(ident, key);
	if (res.status === 404) return null;
	assert.equal(res.status, 200, `${ident}: ${show(res)}`);
	return res.json.profile_id;
}

// Every page of .../events with query, following next; resolves the events and the pages.
async function allEvents(ident, query, { key = weft.keys.read, space, maxPages = 1000 } = {}) {
	const events = [];
	const pages = [];
	let next = null;
	for (let page = 0; page < maxPages; page++) {
		const res = await seg(ident, 'events', { key, space, query: next ? { ...query, next } : query });
		assert.equal(res.status, 200, `${ident} events page ${page}: ${show(res)}`);
		pages.push(res.json);
		events.push(...res.json.data);
		if (!res.json.cursor.has_more) {
			assert.equal(res.json.cursor.next, '', `a last page with a next cursor: ${show(res)}`);
			return { events, pages };
		}
		assert.ok(res.json.cursor.next, `has_more without next: ${show(res)}`);
		next = res.json.cursor.next;
	}
	assert.fail(`more than ${maxPages} pages`);
}

const iso = (t) => new Date(t).toISOString();
const T0 = Date.parse('2026-03-01T10:00:00.000Z');
const at = (seconds) => iso(T0 + seconds * 1000);
const sortedKeys = (o) => Object.keys(o).sort();

async function keyIdOf(msgId) {
	const rows = await weft.query(sql`SELECT key_id FROM events WHERE message_id = ${msgId}`);
	assert.equal(rows.length, 1, `event ${msgId} not stored`);
	return String(rows[0].key_id);
}

async function displayedValue(msgId, type) {
	const [row] = await weft.query(sql`SELECT identifiers FROM events WHERE message_id = ${msgId}`);
	return row.identifiers.find((i) => i.type === type)?.value;
}

// ---------------------------------------------------------------------------
// Finding a profile

test('a profile is found by every identifier type, before and after a merge', async () => {
	const user = `lookup-${RUN}`;
	const email = `Mixed.Case.${RUN}@Example.COM`;
	const digits = String(Date.now() % 10_000_000).padStart(7, '0');
	const phone = `+1 (555) ${digits.slice(0, 3)}-${digits.slice(3)}`;
	const ids = {
		anon1: `anon-one-${RUN}`, anon2: `anon-two-${RUN}`, ios: `IOS-${RUN}`, idfa: `IDFA-${RUN}`,
		push: `push-${RUN}`, droid: `droid-${RUN}`, crm: `cust-${RUN}`,
	};
	await weft.sendBatches([
		ev('identify', {
			userId: user, anonymousId: ids.anon1, traits: { email, phone, name: 'Ann' },
			context: {
				device: { type: 'ios', id: ids.ios, advertisingId: ids.idfa, adTrackingEnabled: true, token: ids.push },
				externalIds: [{ id: ids.crm, type: 'CRM_ID', collection: 'users', encoding: 'none' }],
			},
		}),
		ev('track', { anonymousId: ids.anon2, event: 'Opened', context: { device: { type: 'android', id: ids.droid } } }),
	]);
	await weft.settle();

	const main = await profileId(`user_id:${user}`);
	const droid = await profileId(`android.id:${ids.droid}`);
	assert.match(main ?? '', /^prf_\d+$/);
	assert.match(droid ?? '', /^prf_\d+$/);
	assert.notEqual(main, droid, 'two people share a profile before any link');

	const mainIdents = [
		`user_id:${user}`, `anonymous_id:${ids.anon1}`,
		`email:${email}`, `email:${email.toLowerCase()}`, `email:${email.toUpperCase()}`, `email: ${email}\t`,
		`phone:${phone}`, `phone:+1555${digits}`, `phone:+1 555 ${digits}`,
		`ios.id:${ids.ios}`, `ios.idfa:${ids.idfa}`, `ios.push_token:${ids.push}`,
		`crm_id:${ids.crm}`, `profile_id:${main}`,
	];
	const droidIdents = [`android.id:${ids.droid}`, `anonymous_id:${ids.anon2}`, `profile_id:${droid}`];
	const lookAll = async (idents, want, when) => {
		for (const ident of idents) {
			assert.equal(await profileId(ident), want, `${when}: ${ident} (native)`);
			const t = await seg(ident, 'traits');
			assert.equal(t.status, 200, `${when}: ${ident} (Segment): ${show(t)}`);
		}
	};
	await lookAll(mainIdents, main, 'before the merge');
	await lookAll(droidIdents, droid, 'before the merge');
	assert.equal((await seg(`user_id:${user}`, 'traits')).json.traits.name, 'Ann');
	assert.deepEqual((await profile(`user_id:${user}`)).absorbed_ids, []);

	// The user logs in on the android device: the newer profile joins the older.
	assertSuccess(await weft.post('/v1/identify', { userId: user, anonymousId: ids.anon2, messageId: messageId('link') }));
	await weft.settle();
	await lookAll([...mainIdents, ...droidIdents], main, 'after the merge');
	const merged = await profile(`profile_id:${droid}`);
	assert.equal(merged.profile_id, main);
	assert.deepEqual(merged.absorbed_ids, [droid], 'absorbed ids after the merge');
	const types = merged.identifiers.map((i) => i.type).sort();
	assert.deepEqual(types, ['android.id', 'anonymous_id', 'anonymous_id', 'crm_id', 'email', 'ios.id',
		'ios.idfa', 'ios.push_token', 'phone', 'user_id']);
	// The absorbed id works on every Segment endpoint too.
	const ext = await seg(`profile_id:${droid}`, 'external_ids', { query: { limit: 100 } });
	assert.equal(ext.status, 200, show(ext));
	assert.deepEqual(ext.json.data.map((d) => d.type).sort(), types);
	const shownEmail = ext.json.data.find((d) => d.type === 'email').id;
	assert.match(shownEmail, /^m\*\*\*@example\.com$/i, 'the email is shown as the privacy policy displays it');
	assert.equal(ext.json.data.find((d) => d.type === 'crm_id').id, ids.crm);
	assert.equal((await seg(`profile_id:${droid}`, 'traits')).json.traits.name, 'Ann');
});

// ---------------------------------------------------------------------------
// Segment's shapes, field by field

const SHAPE = {
	user: `shape-${RUN}`,
	anon: `shape-anon-${RUN}`,
	groups: [`acme-${RUN}`, `globex-${RUN}`],
	traits: Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`t${String(i + 1).padStart(2, '0')}`, i + 1])),
	events: null,
	keyId: null,
};

test('Segment shapes: traits, external_ids, events, metadata, links and the native profile', async () => {
	const { user, anon, groups } = SHAPE;
	const events = [
		ev('identify', { userId: user, anonymousId: anon, traits: { ...SHAPE.traits, nested: { a: [1, 'x'] } }, timestamp: at(0) }),
		ev('track', { userId: user, event: 'Order Completed', properties: { total: 42.5 }, context: { page: { path: '/cart' } }, timestamp: at(10) }),
		ev('page', { userId: user, name: 'Home', properties: { path: '/' }, timestamp: at(20) }),
		ev('group', { userId: user, groupId: groups[0], traits: { name: 'Acme', plan: 'gold' }, timestamp: at(30) }),
		ev('group', { userId: user, groupId: groups[1], timestamp: at(40) }),
	];
	SHAPE.events = events;
	await weft.sendBatches(events);
	await weft.settle();
	const keyId = await keyIdOf(events[0].messageId);
	SHAPE.keyId = keyId;
	const pid = await profileId(`user_id:${user}`);
	const ident = `user_id:${user}`;
	const names = Object.keys(SHAPE.traits).concat('nested').sort();

	// traits: 10 by default, sorted by name, cursor = the next name.
	const t1 = await seg(ident, 'traits');
	assert.equal(t1.status, 200, show(t1));
	assert.equal(t1.headers.get('content-type'), 'application/json');
	assert.ok(t1.headers.get('request-id'), 'no Request-Id header');
	assert.deepEqual(sortedKeys(t1.json), ['cursor', 'traits']);
	assert.deepEqual(Object.keys(t1.json.traits), names.slice(0, 10));
	assert.equal(t1.json.traits.t01, 1);
	assert.deepEqual(t1.json.cursor, { url: segPath(ident, 'traits'), has_more: true, next: names[10], limit: 10 });
	const t2 = await seg(ident, 'traits', { query: { next: t1.json.cursor.next } });
	assert.deepEqual(Object.keys(t2.json.traits), names.slice(10));
	assert.deepEqual(t2.json.cursor, { url: segPath(ident, 'traits'), has_more: false, next: '', limit: 10 });
	assert.deepEqual(t1.json.traits.nested, { a: [1, 'x'] }, 'a nested object comes back as it was sent');
	const all = await seg(ident, 'traits', { query: { limit: 200 } });
	assert.deepEqual(Object.keys(all.json.traits), names);
	assert.equal(all.json.cursor.has_more, false);
	const some = await seg(ident, 'traits', { query: { include: 't03,t12,missing' } });
	assert.deepEqual(some.json.traits, { t03: 3, t12: 12 });
	const verbose = await seg(ident, 'traits', { query: { include: 't05', verbose: 'true' } });
	assert.deepEqual(verbose.json.traits, { t05: { value: 5, source_id: null, updated_at: at(0) } });
	for (const klass of ['audience', 'computed_trait']) {
		const c = await seg(ident, 'traits', { query: { class: klass } });
		assert.equal(c.status, 200, show(c));
		assert.deepEqual(c.json, { traits: {}, cursor: { url: segPath(ident, 'traits'), has_more: false, next: '', limit: 10 } });
	}

	// external_ids: one entry per identifier, from the first event that carried it.
	const x = await seg(ident, 'external_ids');
	assert.equal(x.status, 200, show(x));
	assert.deepEqual(sortedKeys(x.json), ['cursor', 'data']);
	assert.deepEqual(x.json.cursor, { url: segPath(ident, 'external_ids'), has_more: false, next: '', limit: 25 });
	const byType = Object.fromEntries(x.json.data.map((d) => [d.type, d]));
	assert.deepEqual(sortedKeys(byType), ['anonymous_id', 'user_id']);
	for (const [type, id] of [['user_id', user], ['anonymous_id', anon]]) {
		assert.deepEqual(byType[type], {
			id, type, source_id: keyId, collection: 'users', created_at: at(0), encoding: 'none',
			first_message_id: events[0].messageId,
		}, type);
	}
	const x1 = await seg(ident, 'external_ids', { query: { limit: 1 } });
	assert.equal(x1.json.data.length, 1);
	assert.equal(x1.json.cursor.has_more, true);
	const x2 = await seg(ident, 'external_ids', { query: { limit: 1, next: x1.json.cursor.next } });
	assert.equal(x2.json.data.length, 1);
	assert.equal(x2.json.cursor.has_more, false);
	assert.deepEqual([x1.json.data[0].type, x2.json.data[0].type].sort(), ['anonymous_id', 'user_id']);
	const xa = await seg(ident, 'external_ids', { query: { include: 'anonymous_id' } });
	assert.deepEqual(xa.json.data.map((d) => d.id), [anon]);

	// events: newest first, each in Segment's shape.
	const e = await seg(ident, 'events');
	assert.equal(e.status, 200, show(e));
	assert.deepEqual(sortedKeys(e.json), ['cursor', 'data']);
	assert.deepEqual(e.json.cursor, { url: segPath(ident, 'events'), has_more: false, next: '', limit: 10 });
	assert.deepEqual(e.json.data.map((d) => d.message_id), events.map((v) => v.messageId).reverse());
	const byId = Object.fromEntries(e.json.data.map((d) => [d.message_id, d]));
	const userIds = [{ collection: 'users', type: 'user_id', id: user, encoding: 'none' }];
	const common = (i) => ({ type: events[i].type, message_id: events[i].messageId, source_id: keyId, timestamp: at(i * 10), related: { users: pid } });
	const identify = byId[events[0].messageId];
	assert.deepEqual(identify, {
		...common(0), external_ids: [...userIds, { collection: 'users', type: 'anonymous_id', id: anon, encoding: 'none' }],
		context: identify.context, properties: {}, traits: { ...SHAPE.traits, nested: { a: [1, 'x'] } },
	});
	const track = byId[events[1].messageId];
	assert.deepEqual(track, {
		...common(1), external_ids: userIds, context: track.context, properties: { total: 42.5 }, event: 'Order Completed',
	});
	assert.equal(track.context.page.path, '/cart');
	const page = byId[events[2].messageId];
	assert.deepEqual(page, { ...common(2), external_ids: userIds, context: page.context, properties: { path: '/' }, name: 'Home' });
	const group = byId[events[3].messageId];
	assert.deepEqual(group, {
		...common(3), external_ids: [...userIds, { collection: 'accounts', type: 'group_id', id: groups[0], encoding: 'none' }],
		context: group.context, properties: {}, traits: { name: 'Acme', plan: 'gold' }, group_id: groups[0],
	});
	for (const d of e.json.data) assert.equal(typeof d.context, 'object', JSON.stringify(d));

	// metadata: first and last seen, first and last event.
	const m = await seg(ident, 'metadata');
	assert.equal(m.status, 200, show(m));
	assert.deepEqual(m.json, {
		metadata: {
			created_at: at(0), updated_at: at(40), expires_at: null,
			first_message_id: events[0].messageId, first_source_id: keyId,
			last_message_id: events[4].messageId, last_source_id: keyId,
		},
	});

	// links: the accounts of the group calls.
	const l = await seg(ident, 'links');
	assert.equal(l.status, 200, show(l));
	assert.deepEqual(sortedKeys(l.json), ['cursor', 'data']);
	const links = [...l.json.data].sort((a, b) => a.external_ids[0].id.localeCompare(b.external_ids[0].id));
	assert.deepEqual(links, groups.map((g, i) => ({
		to_collection: 'accounts',
		external_ids: [{ id: g, type: 'group_id', source_id: keyId, collection: 'accounts', created_at: at(30 + 10 * i), encoding: 'none' }],
	})).sort((a, b) => a.external_ids[0].id.localeCompare(b.external_ids[0].id)));
	const l1 = await seg(ident, 'links', { query: { limit: 1 } });
	const l2 = await seg(ident, 'links', { query: { limit: 1, next: l1.json.cursor.next } });
	assert.equal(l1.json.cursor.has_more, true);
	assert.equal(l2.json.cursor.has_more, false);
	assert.deepEqual([l1.json.data[0], l2.json.data[0]].map((d) => d.external_ids[0].id).sort(), [...groups].sort());

	// The native profile: everything at once.
	const p = await profile(ident);
	assert.deepEqual(sortedKeys(p), ['absorbed_ids', 'accounts', 'audiences', 'computed_traits', 'counters',
		'identifiers', 'profile_id', 'traits']);
	assert.equal(p.profile_id, pid);
	assert.deepEqual(p.absorbed_ids, []);
	assert.deepEqual(p.traits, { ...SHAPE.traits, nested: { a: [1, 'x'] } });
	assert.deepEqual(p.counters, {
		events: 5, first_seen: at(0), last_seen: at(40),
		by_event: { group: 2, identify: 1, 'Order Completed': 1, page: 1 },
	});
	assert.deepEqual(p.computed_traits, {});
	assert.deepEqual(p.audiences, []);
	const pIds = Object.fromEntries(p.identifiers.map((i) => [i.type, i]));
	for (const [type, value] of [['user_id', user], ['anonymous_id', anon]]) {
		assert.deepEqual(sortedKeys(pIds[type]), ['first_message_id', 'first_seen', 'key', 'last_seen', 'source_id', 'type', 'value']);
		assert.equal(pIds[type].value, value);
		assert.match(pIds[type].key, /^[0-9a-f]{32}$/);
		assert.equal(pIds[type].first_seen, at(0));
		assert.equal(pIds[type].source_id, keyId);
		assert.equal(pIds[type].first_message_id, events[0].messageId);
	}
	assert.equal(pIds.user_id.last_seen, at(40), 'the user id was on every event');
	assert.equal(pIds.anonymous_id.last_seen, at(0));
	const accounts = [...p.accounts].sort((a, b) => a.group_id.localeCompare(b.group_id));
	assert.deepEqual(accounts.map((a) => ({ group_id: a.group_id, traits: a.traits })),
		[{ group_id: groups[0], traits: { name: 'Acme', plan: 'gold' } }, { group_id: groups[1], traits: {} }]
			.sort((a, b) => a.group_id.localeCompare(b.group_id)));
});

// ---------------------------------------------------------------------------
// Traits, end to end

test('traits: last write wins by timestamp, null removes, "" keeps, objects are replaced, a merge takes the newest', async () => {
	const user = `traits-${RUN}`;
	// The older event arrives after the newer one: the newer value stays.
	await weft.sendBatches([
		ev('identify', { userId: user, traits: { plan: 'pro', color: 'red', nested: { a: 1, b: 2 }, keep: 'x', gone: 'y' }, timestamp: at(0) }),
		ev('identify', { userId: user, traits: { plan: 'enterprise' }, timestamp: at(200) }),
	]);
	await weft.sendBatches([ev('identify', { userId: user, traits: { plan: 'basic', color: 'blue' }, timestamp: at(100) })]);
	await weft.sendBatches([
		ev('identify', { userId: user, traits: { gone: null, keep: '', nested: { c: 3 } }, timestamp: at(300) }),
		// context.traits of any call count too.
		ev('track', { userId: user, event: 'Tapped', context: { traits: { via_context: true } }, timestamp: at(310) }),
	]);
	await weft.settle();
	const traits = async (ident) => (await seg(ident, 'traits', { query: { limit: 200 } })).json.traits;
	assert.deepEqual(await traits(`user_id:${user}`),
		{ color: 'blue', keep: '', nested: { c: 3 }, plan: 'enterprise', via_context: true });
	assert.deepEqual((await profile(`user_id:${user}`)).traits,
		{ color: 'blue', keep: '', nested: { c: 3 }, plan: 'enterprise', via_context: true });

	// Two profiles, each newest on some trait, merged: each trait keeps the newest value of either.
	const [a, b] = [`merge-a-${RUN}`, `merge-b-${RUN}`];
	await weft.sendBatches([
		ev('identify', { anonymousId: a, traits: { shared: 'a-old', mine: 'a-new', onlyA: 1 }, timestamp: at(10) }),
		ev('identify', { anonymousId: a, traits: { mine: 'a-newest' }, timestamp: at(500) }),
		ev('identify', { anonymousId: b, traits: { shared: 'b-new', mine: 'b-old', onlyB: 2 }, timestamp: at(400) }),
	]);
	await weft.settle();
	const [pa, pb] = [await profileId(`anonymous_id:${a}`), await profileId(`anonymous_id:${b}`)];
	assert.ok(pa && pb && pa !== pb, `${pa} / ${pb}`);
	const email = `merge.${RUN}@example.org`;
	await weft.sendBatches([
		ev('identify', { anonymousId: a, traits: { email }, timestamp: at(20) }),
		ev('identify', { anonymousId: b, traits: { email }, timestamp: at(30) }),
	]);
	await weft.settle();
	const after = await profile(`anonymous_id:${b}`);
	assert.equal(after.profile_id, pa, 'the older profile survives');
	assert.deepEqual(after.absorbed_ids, [pb]);
	const { email: shownEmail, ...rest } = after.traits;
	assert.equal(typeof shownEmail, 'string');
	assert.deepEqual(rest, { mine: 'a-newest', onlyA: 1, onlyB: 2, shared: 'b-new' });
	assert.deepEqual(await traits(`anonymous_id:${a}`), after.traits);
	assert.equal(after.counters.events, 5);
});

// ---------------------------------------------------------------------------
// Paging a long history

test('events: 1,000 events paged with limit and next, both orders, include, exclude, start and end', { timeout: 120_000 * TIMEOUT_SCALE }, async () => {
	const user = `pager-${RUN}`;
	const names = ['View', 'Click', 'Buy'];
	const events = Array.from({ length: 1000 }, (_, i) => ev('track', { userId: user, event: names[i % 3], timestamp: at(i) }));
	await weft.sendBatches(events);
	await weft.settle();
	const ident = `user_id:${user}`;
	const ids = events.map((e) => e.messageId);
	const got = (r) => r.events.map((e) => e.message_id);

	const desc = await allEvents(ident, { limit: 100 });
	assert.equal(desc.pages.length, 10);
	assert.ok(desc.pages.every((p) => p.data.length === 100));
	assert.equal(new Set(got(desc)).size, 1000, 'repeated events');
	assert.deepEqual(got(desc), [...ids].reverse(), 'newest first, no gap');

	const asc = await allEvents(ident, { limit: 37, sort: 'asc' });
	assert.equal(asc.pages.length, 28);
	assert.deepEqual(got(asc), ids, 'oldest first, no gap');
	assert.deepEqual(asc.events.map((e) => e.timestamp), events.map((e) => e.timestamp));

	const first = await seg(ident, 'events');
	assert.equal(first.json.data.length, 10, 'the default limit is 10');
	const max = await seg(ident, 'events', { query: { limit: 100 } });
	assert.equal(max.json.data.length, 100);

	const buys = ids.filter((_, i) => i % 3 === 2);
	const inc = await allEvents(ident, { limit: 50, include: 'Buy' });
	assert.deepEqual(got(inc), [...buys].reverse());
	const exc = await allEvents(ident, { limit: 100, exclude: 'View,Click', sort: 'asc' });
	assert.deepEqual(got(exc), buys);
	const two = await allEvents(ident, { limit: 100, include: 'View,Buy' });
	assert.deepEqual(got(two), ids.filter((_, i) => i % 3 !== 1).reverse());
	const none = await seg(ident, 'events', { query: { include: 'Nothing' } });
	assert.deepEqual(none.json, { data: [], cursor: { url: segPath(ident, 'events'), has_more: false, next: '', limit: 10 } });

	// start is inclusive, end exclusive.
	const window = await allEvents(ident, { limit: 30, start: at(100), end: at(200) });
	assert.deepEqual(got(window), ids.slice(100, 200).reverse());
	const windowAsc = await allEvents(ident, { limit: 30, start: at(100), end: at(200), sort: 'asc', include: 'Click' });
	assert.deepEqual(got(windowAsc), ids.slice(100, 200).filter((_, i) => (100 + i) % 3 === 1));
	const day = await seg(ident, 'events', { query: { start: '2026-03-01', end: '2026-03-02', limit: 1 } });
	assert.equal(day.json.data.length, 1);

	// A cursor belongs to its sort order; bad parameters are refused.
	const badRequests = [
		[{ next: desc.pages[0].cursor.next, sort: 'asc' }, /next/],
		[{ next: 'not-a-cursor!' }, /next/],
		[{ limit: 0 }, /limit/], [{ limit: 101 }, /limit/], [{ limit: 'ten' }, /limit/],
		[{ sort: 'up' }, /sort/], [{ start: 'yesterday' }, /start/], [{ end: '2026-13-01' }, /end/],
		[{ verbose: 'yes' }, /verbose/],
	];
	for (const [query, message] of badRequests) {
		const res = await seg(ident, 'events', { query });
		assertError(res, 400, 'invalid_request_error', JSON.stringify(query));
		assert.match(res.json.error.message, message, show(res));
	}
	assertError(await seg(ident, 'traits', { query: { limit: 201 } }), 400, 'invalid_request_error', 'traits limit 201');
	assertError(await seg(ident, 'traits', { query: { class: 'segment' } }), 400, 'invalid_request_error', 'traits class');
	assertError(await seg(ident, 'external_ids', { query: { limit: 101 } }), 400, 'invalid_request_error', 'external_ids limit');
	assertError(await seg(ident, 'external_ids', { query: { next: desc.pages[0].cursor.next } }), 400, 'invalid_request_error', 'an events cursor on external_ids');
	assertError(await seg(ident, 'links', { query: { limit: 21 } }), 400, 'invalid_request_error', 'links limit');

	// The counters and the native profile agree with the log.
	const p = await profile(ident);
	assert.deepEqual(p.counters, { events: 1000, first_seen: at(0), last_seen: at(999), by_event: { Buy: 333, Click: 333, View: 334 } });
	const m = await seg(ident, 'metadata');
	assert.equal(m.json.metadata.first_message_id, ids[0]);
	assert.equal(m.json.metadata.last_message_id, ids[999]);
});

// ---------------------------------------------------------------------------
// Keys, workspaces and errors

test('keys, workspaces and errors: 401, 403, 404, 400, 405', async () => {
	const ident = `user_id:${SHAPE.user}`;
	const endpoints = ['traits', 'external_ids', 'events', 'metadata', 'links'];
	const notFound = { error: { code: 'not_found', message: 'Profile was not found.' } };
	for (const endpoint of endpoints) {
		assertError(await seg(ident, endpoint, { key: null }), 401, 'unauthorized', `${endpoint} without a key`);
		assertError(await seg(ident, endpoint, { key: 'no-such-key' }), 401, 'unauthorized', `${endpoint} unknown key`);
		assertError(await seg(ident, endpoint, { key: weft.keys.write }), 403, 'forbidden', `${endpoint} write key`);
		assert.equal((await seg(ident, endpoint, { key: weft.keys.admin })).status, 200, `${endpoint} with the admin key`);
		for (const [what, res] of [
			['unknown profile', await seg(`user_id:nobody-${RUN}`, endpoint)],
			['unknown type', await seg(`never_seen_type:${RUN}`, endpoint)],
			["another workspace's name", await seg(ident, endpoint, { space: 'other' })],
			["another workspace's key", await seg(ident, endpoint, { key: weft.workspaces.other.keys.read })],
			['no such workspace', await seg(ident, endpoint, { space: `nowhere-${RUN}` })],
			['a name no workspace can have', await seg(ident, endpoint, { space: '%2Fetc' })],
		]) {
			assert.equal(res.status, 404, `${endpoint}, ${what}: ${show(res)}`);
			assert.deepEqual(res.json, notFound, `${endpoint}, ${what}`);
		}
		const bad = await weft.get(`/v1/spaces/${weft.workspace}/collections/users/profiles/no-colon/${endpoint}`, { key: weft.keys.read });
		assertError(bad, 400, 'validation_error', `${endpoint} malformed identifier`);
		const post = await weft.request('POST', segPath(ident, endpoint), { key: weft.keys.read, body: {} });
		assertError(post, 405, 'method_not_allowed', `${endpoint} POST`);
		assert.equal(post.headers.get('allow'), 'GET');
	}
	// The other workspace's name works with its own key, for its own profiles.
	const otherUser = `other-${RUN}`;
	assertSuccess(await weft.post('/v1/identify', { userId: otherUser, traits: { side: 'other' }, messageId: messageId('oth') },
		{ key: weft.workspaces.other.keys.write }));
	await weft.settle();
	const mine = await seg(`user_id:${otherUser}`, 'traits', { space: 'other', key: weft.workspaces.other.keys.read });
	assert.equal(mine.status, 200, show(mine));
	assert.deepEqual(mine.json.traits, { side: 'other' });
	assert.equal((await seg(`user_id:${otherUser}`, 'traits')).status, 404, 'a profile of another workspace');

	for (const path of [
		`/v1/spaces/${weft.workspace}/collections/users/profiles/${identSegment(ident)}/nope`,
		`/v1/spaces/${weft.workspace}/collections/accounts/profiles/group_id:x/traits`,
		`/v1/spaces/${weft.workspace}/collections/users/profiles/${identSegment(ident)}/traits/more`,
		`/v1/spaces/${weft.workspace}`,
	]) assertError(await weft.get(path, { key: weft.keys.read }), 404, 'not_found', path);

	// The native endpoint.
	assertError(await native(ident, null), 401, 'unauthorized', 'native without a key');
	assertError(await native(ident, weft.keys.write), 403, 'forbidden', 'native with a write key');
	const nf = await native(`user_id:nobody-${RUN}`);
	assert.equal(nf.status, 404, show(nf));
	assert.deepEqual(nf.json, notFound);
	assertError(await native(ident, weft.workspaces.other.keys.read), 404, 'not_found', 'native, another workspace');
	assertError(await weft.get('/v1/profiles/no-colon', { key: weft.keys.read }), 400, 'invalid_identifier', 'native malformed');
	assertError(await weft.get('/v1/profiles/profile_id:12', { key: weft.keys.read }), 400, 'invalid_identifier', 'native bad profile id');
	const put = await weft.request('PUT', `/v1/profiles/${identSegment(ident)}`, { key: weft.keys.read, body: {} });
	assertError(put, 405, 'method_not_allowed', 'native PUT');
	// The identity history next to it still answers.
	const h = await weft.get(`/v1/profiles/${identSegment(ident)}/identity-history`, { key: weft.keys.read });
	assert.equal(h.status, 200, show(h));
	assert.equal(h.json.profile_id, (await profile(ident)).profile_id);
});

// ---------------------------------------------------------------------------
// Unmerge: events and traits follow each visitor back to its own profile

test('50 visitors glued by one email get their own events and traits back when it is blocked', { timeout: 120_000 * TIMEOUT_SCALE }, async () => {
	const { keys } = weft.workspaces.shared;
	const space = 'shared';
	const rules = await weft.request('PUT', '/v1/admin/identity-rules', {
		key: keys.admin, body: { types: { anonymous_id: { limit: 0 }, email: { limit: 0 } } },
	});
	assert.equal(rules.status, 200, show(rules));
	const N = 50;
	const email = `family.inbox.${RUN}@example.com`;
	const visitors = Array.from({ length: N }, (_, i) => ({
		anon: `visitor-${i}-${RUN}`,
		own: [
			ev('page', { anonymousId: `visitor-${i}-${RUN}`, name: 'Landing', timestamp: at(1000 + i) }),
			ev('track', { anonymousId: `visitor-${i}-${RUN}`, event: 'Signed Up', timestamp: at(2000 + i) }),
			ev('identify', { anonymousId: `visitor-${i}-${RUN}`, traits: { visitor: i }, timestamp: at(3000 + i) }),
		],
		glue: ev('identify', { anonymousId: `visitor-${i}-${RUN}`, traits: { email }, timestamp: at(4000 + i) }),
	}));
	// Two more visitors, glued the same way, who also share an id of their
	// own, seen only once the email had already made them one profile: the
	// split keeps them together, and the younger profile id stays absorbed
	// without any merge record naming it in the elder's history.
	const pair = ['x', 'y'].map((s, i) => ({
		anon: `pair-${s}-${RUN}`,
		own: [ev('page', { anonymousId: `pair-${s}-${RUN}`, name: 'Landing', timestamp: at(5000 + i) })],
		glue: ev('identify', { anonymousId: `pair-${s}-${RUN}`, traits: { email }, timestamp: at(5100 + i) }),
		link: ev('track', {
			anonymousId: `pair-${s}-${RUN}`, event: 'Paired', timestamp: at(5200 + i),
			context: { externalIds: [{ id: `pair-${RUN}`, type: 'pair_id', collection: 'users', encoding: 'none' }] },
		}),
	}));
	await weft.sendBatches([...visitors, ...pair].flatMap((v) => v.own), keys.write);
	await weft.settle();
	const before = [];
	for (const v of visitors) before.push(await profileId(`anonymous_id:${v.anon}`, keys.read));
	const pairBefore = [];
	for (const v of pair) pairBefore.push(await profileId(`anonymous_id:${v.anon}`, keys.read));
	assert.equal(new Set([...before, ...pairBefore]).size, N + 2, 'each visitor has a profile of its own');

	await weft.sendBatches([...visitors, ...pair].map((v) => v.glue), keys.write);
	await weft.sendBatches(pair.map((v) => v.link), keys.write);
	// A group call made while merged is recorded under the merged profile,
	// not under the visitor's own: after the split, its link is found from
	// the visitor's events.
	const group = `team-${RUN}`;
	visitors[3].late = ev('group', { anonymousId: visitors[3].anon, groupId: group, traits: { seats: 5 }, timestamp: at(6000) });
	await weft.sendBatches([visitors[3].late], keys.write);
	await weft.settle();
	const survivor = before[0];
	const byNumber = (a, b) => Number(a.slice(4)) - Number(b.slice(4));
	const merged = await profile(`email:${email}`, keys.read);
	assert.equal(merged.profile_id, survivor);
	assert.deepEqual(merged.absorbed_ids, [...before.slice(1), ...pairBefore].sort(byNumber));
	assert.equal(merged.counters.events, 4 * N + 1 + 3 * 2);
	assert.equal(merged.traits.visitor, N - 1, 'the newest visitor trait wins while merged');
	const mergedEvents = await allEvents(`anonymous_id:${visitors[7].anon}`, { limit: 100 }, { key: keys.read, space });
	assert.equal(mergedEvents.events.length, 4 * N + 1 + 3 * 2);

	const block = await weft.post('/v1/admin/identity/blocked', { type: 'email', value: email }, { key: keys.admin });
	assert.equal(block.status, 200, show(block));
	assert.deepEqual(block.json.split, { profile_id: survivor, parts: N + 1, new_profiles: 0 }, show(block));
	await weft.settle();

	const wrong = [];
	for (const [i, v] of visitors.entries()) {
		const ident = `anonymous_id:${v.anon}`;
		const p = await profile(ident, keys.read);
		const own = [...v.own, v.glue, ...(v.late ? [v.late] : [])].map((e) => e.messageId);
		const { events } = await allEvents(ident, { limit: 100, sort: 'asc' }, { key: keys.read, space });
		const t = await seg(ident, 'traits', { key: keys.read, space, query: { include: 'visitor' } });
		const problems = [];
		if (p.profile_id !== before[i]) problems.push(`profile ${p.profile_id}, was ${before[i]}`);
		if (JSON.stringify(p.absorbed_ids) !== '[]') problems.push(`absorbed ${JSON.stringify(p.absorbed_ids)}`);
		if (JSON.stringify(events.map((e) => e.message_id)) !== JSON.stringify(own)) {
			problems.push(`events ${events.length}: ${events.map((e) => e.message_id).slice(0, 6).join(',')}`);
		}
		if (p.counters.events !== own.length) problems.push(`counters.events ${p.counters.events}`);
		if (p.accounts.length !== (v.late ? 1 : 0)) problems.push(`accounts ${JSON.stringify(p.accounts)}`);
		if (p.traits.visitor !== i) problems.push(`native visitor trait ${p.traits.visitor}`);
		if (t.json?.traits?.visitor !== i) problems.push(`Segment visitor trait ${show(t)}`);
		if (problems.length) wrong.push(`visitor ${i}: ${problems.join('; ')}`);
	}
	assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} of ${N} visitors are not themselves again`);
	const links = await seg(`anonymous_id:${visitors[3].anon}`, 'links', { key: keys.read, space });
	assert.equal(links.status, 200, show(links));
	assert.deepEqual(links.json.data, [{
		to_collection: 'accounts',
		external_ids: [{
			id: group, type: 'group_id', source_id: await keyIdOf(visitors[3].late.messageId), collection: 'accounts',
			created_at: at(6000), encoding: 'none',
		}],
	}]);
	const p3 = await profile(`anonymous_id:${visitors[3].anon}`, keys.read);
	assert.deepEqual(p3.accounts.map((a) => [a.group_id, a.traits]), [[group, { seats: 5 }]]);

	// The pair is one profile under the elder id, the younger absorbed into it.
	const [px, py] = [await profile(`anonymous_id:${pair[0].anon}`, keys.read), await profile(`pair_id:pair-${RUN}`, keys.read)];
	assert.equal(px.profile_id, pairBefore[0]);
	assert.equal(py.profile_id, pairBefore[0]);
	assert.deepEqual(px.absorbed_ids, [pairBefore[1]], 'the younger of the pair is absorbed into the elder');
	assert.equal(await profileId(`profile_id:${pairBefore[1]}`, keys.read), pairBefore[0]);
	const pairEvents = await allEvents(`anonymous_id:${pair[1].anon}`, { limit: 100, sort: 'asc' }, { key: keys.read, space });
	assert.deepEqual(pairEvents.events.map((e) => e.message_id).sort(),
		pair.flatMap((v) => [...v.own, v.glue, v.link]).map((e) => e.messageId).sort());
	assert.equal((await native(`email:${email}`, keys.read)).status, 404, 'the blocked email still finds a profile');
	await weft.assertCleanExit();
});
