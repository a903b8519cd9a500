// Real SDKs pointed at Weft instead of a hosted CDP, used through their
// ordinary API: every call must be stored exactly once, with its type, its
// event name, its userId/anonymousId and a user_id identifier.
//
// What the SDKs really send (read in node_modules and checked on the wire):
// - @segment/analytics-node 3.1.0 (plugins/segmentio/publisher.js): POSTs
//   {"batch":[...],"writeKey":KEY,"sentAt":...} to host + path (default
//   path /v1/batch) with fetch; Authorization: Basic base64("KEY:"),
//   Content-Type: application/json, no compression. Each event carries the
//   messageId given in the call (else a generated one).
// - @rudderstack/rudder-sdk-node 3.0.13 (cjs/index.js): POSTs
//   {"batch":[...],"timestamp":...,"sentAt":...} to dataPlaneUrl +
//   /v1/batch with axios; auth {username: KEY} (so Basic base64("KEY:"));
//   no writeKey in the body; the body gzip-compressed (Content-Encoding:
//   gzip, the default gzip: true) and, because axios sees a Buffer,
//   Content-Type: application/x-www-form-urlencoded. Events carry
//   originalTimestamp rather than timestamp, and identify's traits are
//   copied into context.traits. messageId is taken from the call.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Analytics as SegmentAnalytics } from '@segment/analytics-node';
import RudderAnalytics from '@rudderstack/rudder-sdk-node';
import { useWeft, messageId, sql, within } from './harness.mjs';

const weft = useWeft('sdk');

// The six calls every SDK makes, with known messageIds.
function calls(prefix) {
	const userId = `${prefix}-user-1`;
	const anonymousId = `${prefix}-anon-1`;
	const id = () => messageId(prefix);
	return [
		['track', { messageId: id(), userId, anonymousId, event: 'Order Completed', properties: { revenue: 12.5, currency: 'EUR' } }],
		['identify', { messageId: id(), userId, anonymousId, traits: { plan: 'pro', logins: 3 } }],
		['page', { messageId: id(), userId, anonymousId, category: 'Docs', name: 'Getting Started', properties: { path: '/docs' } }],
		['screen', { messageId: id(), userId, anonymousId, name: 'Checkout', properties: { step: 2 } }],
		['group', { messageId: id(), userId, anonymousId, groupId: `${prefix}-group-1`, traits: { name: 'Acme', employees: 40 } }],
		['alias', { messageId: id(), userId, previousId: anonymousId }],
	];
}

// Every call stored exactly once, as the SDK described it.
async function assertStored(sdk, sent) {
	const ids = sent.map(([, msg]) => msg.messageId);
	const rows = await weft.query(sql`SELECT message_id, type, event, payload, identifiers
		FROM events WHERE message_id = ANY(${ids})`);
	for (const [type, msg] of sent) {
		const mine = rows.filter((r) => r.message_id === msg.messageId);
		assert.equal(mine.length, 1, `${sdk} ${type}: messageId ${msg.messageId} stored ${mine.length} times`);
		const [row] = mine;
		const what = `${sdk} ${type} ${JSON.stringify(row)}`;
		assert.equal(row.type, type, what);
		if (type === 'track') assert.equal(row.event, msg.event, what);
		if (type === 'page' || type === 'screen') assert.equal(row.payload.name, msg.name, what);
		if (type === 'group') assert.equal(row.payload.groupId, msg.groupId, what);
		if (type === 'alias') assert.equal(row.payload.previousId, msg.previousId, what);
		assert.equal(row.payload.userId, msg.userId, what);
		if (msg.anonymousId) assert.equal(row.payload.anonymousId, msg.anonymousId, what);
		assert.ok(Array.isArray(row.identifiers) && row.identifiers.some((i) => i.type === 'user_id'),
			`${sdk} ${type}: no user_id in identifiers ${JSON.stringify(row.identifiers)}`);
	}
}

test('@segment/analytics-node: six calls, each stored once', async () => {
	const analytics = new SegmentAnalytics({
		writeKey: weft.keys.write,
		host: weft.base,
		path: '/v1/batch',
		flushAt: 4, // two requests: 4 events, then 2 at close
		flushInterval: 500,
		maxRetries: 1,
		httpRequestTimeout: 10_000,
	});
	const errors = [];
	const responses = [];
	analytics.on('error', (e) => errors.push(e?.reason?.message || e?.message || String(e)));
	analytics.on('http_response', (r) => responses.push(r.status));
	const sent = calls('seg');
	for (const [type, msg] of sent) {
		analytics[type](msg, (err) => {
			if (err) errors.push(`${type}: ${err?.reason?.message || err?.message || err}`);
		});
	}
	await analytics.closeAndFlush({ timeout: 30_000 });
	assert.deepEqual(errors, [], `delivery errors: ${errors.join('; ')} (HTTP statuses ${responses.join(', ')})`);
	assert.ok(responses.length >= 2 && responses.every((s) => s === 200), `HTTP statuses ${responses.join(', ')}`);
	await assertStored('segment', sent);
});

test('@rudderstack/rudder-sdk-node: six calls, each stored once', async () => {
	const errors = [];
	const client = new RudderAnalytics(weft.keys.write, {
		dataPlaneUrl: weft.base,
		flushAt: 4,
		flushInterval: 500,
		retryCount: 0, // a refusal should show here, not in a retry loop
		logLevel: 'error',
		errorHandler: (e) => errors.push(`${e?.response?.status ?? e?.code ?? ''} ${JSON.stringify(e?.response?.data ?? e?.message)}`),
	});
	const sent = calls('rud');
	const delivered = sent.map(([type, msg]) => new Promise((resolve) => {
		client[type](msg, (err) => {
			if (err) errors.push(`${type}: ${err?.message || err}`);
			resolve();
		});
	}));
	await client.flush();
	// The first call is sent at once and later ones by size or timer; wait
	// until every callback has fired.
	const settled = await within(Promise.all(delivered).then(() => true), 30_000, false);
	assert.ok(settled, `not every rudder call was delivered within 30 s; errors: ${errors.join('; ')}`);
	assert.deepEqual(errors, [], `delivery errors: ${errors.join('; ')}`);
	await assertStored('rudder', sent);
});

test('SDK events sent again are not stored twice', async () => {
	// Segment retries a batch whose answer was lost; the same messageIds
	// must not make new rows.
	const analytics = new SegmentAnalytics({ writeKey: weft.keys.write, host: weft.base, flushAt: 2, maxRetries: 0 });
	const msg = { messageId: messageId('seg-again'), userId: 'seg-again-user', event: 'Sent Twice' };
	analytics.track(msg);
	analytics.track(msg);
	await analytics.closeAndFlush({ timeout: 30_000 });
	const rows = await weft.query(sql`SELECT count(*)::int AS n FROM events WHERE message_id = ${msg.messageId}`);
	assert.deepEqual(rows, [{ n: 1 }]);
});

test('weft exits 0 on SIGTERM with no sanitizer report', () => weft.assertCleanExit());
