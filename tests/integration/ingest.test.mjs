// The ingestion contract over HTTP: each endpoint stores its event type,
// a batch with some invalid items keeps the valid ones and reports the
// others, and a messageId is stored once however often it arrives, also
// across a restart of Weft.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useWeft, assertSuccess, messageId, show, sql } from './harness.mjs';

const weft = useWeft('ingest');

async function storedRows(id) {
	return weft.query(sql`SELECT type, event, payload, identifiers, key_id FROM events WHERE message_id = ${id}`);
}

test('health, readiness and metrics answer', async () => {
	const health = await weft.get('/healthz');
	assert.equal(health.status, 200, show(health));
	assert.deepEqual(health.json, { status: 'ok' }, show(health));
	const ready = await weft.get('/readyz');
	assert.equal(ready.status, 200, show(ready));
	const metrics = await weft.get('/metrics');
	assert.equal(metrics.status, 200, show(metrics));
	assert.match(metrics.text, /^# (HELP|TYPE) /m, 'no Prometheus text in /metrics');
});

const single = {
	track: { event: 'Order Completed', properties: { total: 42.5 } },
	identify: { traits: { plan: 'pro' } },
	page: { name: 'Home', properties: { path: '/' } },
	screen: { name: 'Settings' },
	group: { groupId: 'g-1', traits: { employees: 12 } },
	alias: { previousId: 'anon-prev-1' },
};

for (const [type, fields] of Object.entries(single)) {
	test(`POST /v1/${type} stores one ${type} event`, async () => {
		const id = messageId(type);
		const res = await weft.post(`/v1/${type}`, { userId: `u-${type}`, messageId: id, ...fields });
		assertSuccess(res, `/v1/${type}`);
		const rows = await storedRows(id);
		assert.equal(rows.length, 1, `messageId ${id} stored ${rows.length} times`);
		assert.equal(rows[0].type, type);
		assert.equal(rows[0].payload.userId, `u-${type}`);
		if (type === 'track') assert.equal(rows[0].event, 'Order Completed');
		assert.ok(rows[0].key_id !== null, 'key_id not recorded');
		assert.ok(rows[0].identifiers.some((i) => i.type === 'user_id'),
			`no user_id in identifiers ${JSON.stringify(rows[0].identifiers)}`);
	});
}

test('POST /v1/import takes a batch like /v1/batch', async () => {
	const ids = [messageId('imp'), messageId('imp')];
	const res = await weft.post('/v1/import', {
		batch: [
			{ type: 'track', userId: 'u-imp', event: 'Imported', messageId: ids[0], timestamp: '2021-03-04T05:06:07Z' },
			{ type: 'identify', userId: 'u-imp', traits: { plan: 'free' }, messageId: ids[1] },
		],
	});
	assertSuccess(res, '/v1/import');
	const rows = await weft.query(sql`SELECT message_id, type, "timestamp" FROM events
		WHERE message_id = ANY(${ids}) ORDER BY message_id`);
	assert.equal(rows.length, 2, JSON.stringify(rows));
	const tracked = rows.find((r) => r.message_id === ids[0]);
	assert.equal(new Date(tracked.timestamp).toISOString(), '2021-03-04T05:06:07.000Z');
});

test('a batch keeps its valid items and reports the invalid one', async () => {
	const ids = [messageId('b0'), messageId('b1'), messageId('b2')];
	const before = await weft.counts();
	const res = await weft.post('/v1/batch', {
		batch: [
			{ type: 'track', userId: 'u-batch', event: 'First', messageId: ids[0] },
			{ type: 'track', event: 'Nobody', messageId: ids[1] },
			{ type: 'identify', anonymousId: 'a-batch', traits: { plan: 'pro' }, messageId: ids[2] },
		],
	});
	assertSuccess(res, 'partial batch');
	assert.ok(Array.isArray(res.json.rejected), `no rejected list: ${show(res)}`);
	assert.equal(res.json.rejected.length, 1, show(res));
	assert.equal(res.json.rejected[0].index, 1, show(res));
	assert.equal(res.json.rejected[0].code, 'missing_identity', show(res));
	assert.equal(typeof res.json.rejected[0].message, 'string', show(res));

	const after = await weft.counts();
	assert.equal(after.events, before.events + 2, 'expected 2 new rows in events');
	assert.equal(after.rejected, before.rejected + 1, 'expected 1 new row in rejected_events');
	const stored = await weft.query(sql`SELECT message_id FROM events WHERE message_id = ANY(${ids}) ORDER BY message_id`);
	assert.deepEqual(stored.map((r) => r.message_id).sort(), [ids[0], ids[2]].sort());
	const rejected = await weft.query(sql`SELECT batch_index, code, message_id FROM rejected_events
		WHERE message_id = ${ids[1]}`);
	assert.equal(rejected.length, 1, `rejected_events for ${ids[1]}: ${JSON.stringify(rejected)}`);
	assert.equal(rejected[0].batch_index, 1);
	assert.equal(rejected[0].code, 'missing_identity');
});

test('the same messageId twice is stored once', async () => {
	const ev = { userId: 'u-dup', event: 'Twice', messageId: messageId('dup') };
	assertSuccess(await weft.post('/v1/track', ev), 'first send');
	assertSuccess(await weft.post('/v1/track', ev), 'second send');
	assert.equal((await storedRows(ev.messageId)).length, 1);
});

test('the same messageId twice in one batch is stored once', async () => {
	const ev = { type: 'track', userId: 'u-dup', event: 'Twice In Batch', messageId: messageId('dupb') };
	const res = await weft.post('/v1/batch', { batch: [ev, ev] });
	assertSuccess(res, 'batch with a duplicate');
	assert.equal((await storedRows(ev.messageId)).length, 1);
});

test('the same messageId is stored once across a restart of weft', async () => {
	const ev = { userId: 'u-dup', event: 'Across Restart', messageId: messageId('dupr') };
	assertSuccess(await weft.post('/v1/track', ev), 'before the restart');
	await weft.restart();
	assertSuccess(await weft.post('/v1/track', ev), 'after the restart');
	const rows = await storedRows(ev.messageId);
	assert.equal(rows.length, 1);
	assert.equal(rows[0].event, 'Across Restart');
});

test('weft exits 0 on SIGTERM with no sanitizer report', () => weft.assertCleanExit());
