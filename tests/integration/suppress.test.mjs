// Suppressed identifiers at ingest: once an identifier key is in
// suppressed_keys (an erasure with suppress puts a person's keys there),
// the control worker's refresh loads it within a couple of seconds, and
// from then on events carrying it are acknowledged with 200 and dropped:
// no row in events, none in rejected_events, counted in
// weft_events_suppressed_total. Events with other identifiers, in the
// same batch too, are stored as usual. Refused batch items keep their
// identifiers in rejected_events.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { useWeft, assertSuccess, messageId, show, sleep, sql, TIMEOUT_SCALE } from './harness.mjs';

const weft = useWeft('suppress');
const RUN = `${process.pid}-${Date.now().toString(36)}`;
const gone = `u-gone-${RUN}`;
const kept = `u-kept-${RUN}`;

async function rowsWith(ids) {
	return weft.query(sql`SELECT message_id FROM events WHERE message_id = ANY(${ids})`);
}

// The key Weft computed for userId, read from a stored event's identifiers.
async function userIdKey(userId) {
	const id = messageId('key');
	assertSuccess(await weft.post('/v1/identify', { userId, messageId: id }), `identify ${userId}`);
	const [row] = await weft.query(sql`SELECT identifiers FROM events WHERE message_id = ${id}`);
	assert.ok(row, `event ${id} not stored`);
	const ident = row.identifiers.find((i) => i.type === 'user_id');
	assert.ok(ident, `no user_id in ${JSON.stringify(row.identifiers)}`);
	assert.match(ident.key, /^[0-9a-f]{32}$/);
	return ident.key;
}

let goneKey;
let keptKey;

test('a key put in suppressed_keys is loaded by the next refresh', async () => {
	goneKey = await userIdKey(gone);
	keptKey = await userIdKey(kept);
	const m0 = await weft.metrics();
	assert.equal(m0.weft_events_suppressed_total, 0, 'weft_events_suppressed_total missing or not 0');

	await weft.exec(sql`INSERT INTO suppressed_keys (workspace_id, key, type)
		VALUES (${weft.workspaceId}, decode(${goneKey}, 'hex'), 'user_id')`);
	// The refresh runs every 2 s and says when it loaded a workspace's list.
	const want = `event=suppressed_keys_loaded workspace=${weft.workspaceId} keys=1`;
	const deadline = Date.now() + 10_000 * TIMEOUT_SCALE;
	while (!fs.readFileSync(weft.logFile, 'utf8').includes(want)) {
		assert.ok(Date.now() < deadline, `no '${want}' in the log\n${weft.logTail(20)}`);
		await sleep(100);
	}
});

test('events with a suppressed identifier get 200 and are not stored', async () => {
	const before = await weft.counts();
	const m0 = await weft.metrics();
	const single = messageId('single');
	assertSuccess(await weft.post('/v1/track', { userId: gone, event: 'Dropped', messageId: single }),
		'suppressed track');
	const viaAnon = messageId('anon');
	assertSuccess(await weft.post('/v1/identify', { anonymousId: `a-${RUN}`, userId: gone, messageId: viaAnon }),
		'suppressed identify');
	assert.deepEqual(await rowsWith([single, viaAnon]), [], 'a suppressed event was stored');

	const ids = [messageId('b0'), messageId('b1'), messageId('b2'), messageId('b3'), messageId('b4')];
	const res = await weft.post('/v1/batch', {
		batch: [
			{ type: 'track', userId: gone, event: 'Dropped', messageId: ids[0] },
			{ type: 'track', userId: kept, event: 'Kept', messageId: ids[1] },
			{ type: 'track', userId: gone, messageId: ids[2] }, // invalid, and suppressed
			{ type: 'page', anonymousId: `a2-${RUN}`, name: 'Home', messageId: ids[3] },
			{ type: 'track', userId: kept, messageId: ids[4] }, // invalid: rejected as usual
		],
	});
	assertSuccess(res, 'mixed batch');
	assert.deepEqual(res.json.rejected?.map((r) => r.index), [4], show(res));
	const stored = (await rowsWith(ids)).map((r) => r.message_id).sort();
	assert.deepEqual(stored, [ids[1], ids[3]].sort());

	const after = await weft.counts();
	assert.equal(after.events, before.events + 2, 'events stored');
	assert.equal(after.rejected, before.rejected + 1, 'rejected events stored');
	const m1 = await weft.metrics();
	assert.equal(m1.weft_events_suppressed_total, m0.weft_events_suppressed_total + 4,
		'weft_events_suppressed_total');
	assert.equal(m1['weft_events_accepted_total{type="track"}'],
		m0['weft_events_accepted_total{type="track"}'] + 1, 'tracks accepted');

	// The refused item keeps its identifiers, the same keys as a stored event's.
	const [rej] = await weft.query(sql`SELECT identifiers FROM rejected_events WHERE message_id = ${ids[4]}`);
	assert.ok(rej, 'the refused item is not in rejected_events');
	assert.deepEqual(rej.identifiers.map((i) => [i.type, i.key]), [['user_id', keptKey]]);
});

test('removing the key from suppressed_keys lets events in again', async () => {
	await weft.exec(sql`DELETE FROM suppressed_keys WHERE workspace_id = ${weft.workspaceId}`);
	const want = `event=suppressed_keys_loaded workspace=${weft.workspaceId} keys=0`;
	const deadline = Date.now() + 10_000 * TIMEOUT_SCALE;
	while (!fs.readFileSync(weft.logFile, 'utf8').includes(want)) {
		assert.ok(Date.now() < deadline, `no '${want}' in the log\n${weft.logTail(20)}`);
		await sleep(100);
	}
	const id = messageId('back');
	assertSuccess(await weft.post('/v1/track', { userId: gone, event: 'Back', messageId: id }), 'track');
	assert.equal((await rowsWith([id])).length, 1, 'the event was not stored');
});
