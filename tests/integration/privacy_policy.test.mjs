// The workspace privacy policy over HTTP: GET shows the default, PUT with
// an admin key replaces it (a bad policy is refused naming the rule), only
// admin keys may touch it, and a new policy applies to events received
// after it, and survives a restart.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useWeft, assertError, assertSuccess, messageId, show, sql } from './harness.mjs';

const weft = useWeft('privacy-policy');
const PATH = '/v1/admin/privacy-policy';

function put(body, key = weft.keys.admin) {
	return weft.request('PUT', PATH, { key, body });
}

async function payloadOf(id) {
	const rows = await weft.query(sql`SELECT payload FROM events WHERE message_id = ${id}`);
	assert.equal(rows.length, 1, `event ${id} stored ${rows.length} times`);
	return rows[0].payload;
}

test('GET shows the default policy to an admin key', async () => {
	const res = await weft.get(PATH, { key: weft.keys.admin });
	assert.equal(res.status, 200, show(res));
	assert.ok(Array.isArray(res.json.rules), show(res));
	const actions = new Set(res.json.rules.map((r) => r.action));
	for (const a of ['drop', 'hash', 'truncate_ip'])
		assert.ok(actions.has(a), `default policy has no '${a}' rule: ${res.text}`);
});

test('only admin keys may read or change the policy', async () => {
	assertError(await weft.get(PATH, { key: weft.keys.read }), 403, 'forbidden', 'read key GET');
	assertError(await weft.get(PATH, { key: weft.keys.write }), 403, 'forbidden', 'write key GET');
	assertError(await put({ rules: [] }, weft.keys.write), 403, 'forbidden', 'write key PUT');
	assertError(await weft.get(PATH), 401, 'unauthorized', 'no key');
	const post = await weft.request('POST', PATH, { key: weft.keys.admin, body: { rules: [] } });
	assertError(post, 405, 'method_not_allowed', 'POST');
});

test('a bad policy is refused with a message naming the rule', async () => {
	const cases = [
		[{ rules: [{ path: 'properties.x', action: 'keep' }, { path: 'traits.y', action: 'hide' }] }, /rule 1/],
		[{ rules: [{ detector: 'dna', action: 'drop' }] }, /rule 0/],
		[{ rules: [{ action: 'drop' }] }, /rule 0/],
		[{ rules: 'nope' }, /rules/],
		['{"rules": [', /./],
	];
	for (const [body, message] of cases) {
		const res = await put(body);
		assertError(res, 400, 'invalid_policy', JSON.stringify(body));
		assert.match(res.json.error.message, message, show(res));
	}
	// Nothing changed: emails in properties are still hashed.
	const id = messageId('still-default');
	assertSuccess(await weft.post('/v1/track', {
		userId: 'u-1', event: 'E', messageId: id, properties: { contact: 'still.default@example.org' },
	}));
	const p = await payloadOf(id);
	assert.match(p.properties.contact, /^h:[0-9a-f]{32}$/, JSON.stringify(p));
});

test('a new policy applies to events received after it, and survives a restart', async () => {
	const before = messageId('before');
	assertSuccess(await weft.post('/v1/track', {
		userId: 'u-2', event: 'E', messageId: before, properties: { contact: 'kept.later@example.org' },
	}));

	const res = await put({ rules: [{ path: 'properties.contact', action: 'keep' }], include_default: true });
	assert.equal(res.status, 200, show(res));
	const shown = await weft.get(PATH, { key: weft.keys.admin });
	assert.equal(shown.status, 200, show(shown));
	assert.deepEqual(shown.json.rules[0], { path: 'properties.contact', action: 'keep' }, show(shown));

	const after = messageId('after');
	assertSuccess(await weft.post('/v1/track', {
		userId: 'u-2', event: 'E', messageId: after,
		properties: { contact: 'kept.later@example.org', other: 'still.masked@example.org' },
	}));
	assert.match((await payloadOf(before)).properties.contact, /^h:/, 'the earlier event was rewritten');
	const p = await payloadOf(after);
	assert.equal(p.properties.contact, 'kept.later@example.org', JSON.stringify(p));
	assert.match(p.properties.other, /^h:[0-9a-f]{32}$/, 'the default rules no longer apply');

	await weft.restart();
	const again = messageId('restarted');
	assertSuccess(await weft.post('/v1/track', {
		userId: 'u-2', event: 'E', messageId: again, properties: { contact: 'kept.later@example.org' },
	}));
	assert.equal((await payloadOf(again)).properties.contact, 'kept.later@example.org',
		'the policy was lost across a restart');
});
