// Hostile and malformed requests against the ingestion endpoints. Each one
// must get its documented status and error code, Weft must stay up (a
// /healthz after each), and nothing of a refused request may be stored
// (events and rejected_events are counted before and after). A few odd but
// valid requests (SQL in a value, unusual Content-Types) must be accepted
// and stored verbatim.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import {
	useWeft, rawRequest, assertError, assertSuccess, messageId, show, sql,
} from './harness.mjs';

// The error codes and their statuses, as the API documents them.
const STATUS = {
	invalid_json: 400,
	invalid_event: 400,
	missing_identity: 400,
	message_id_too_long: 400,
	invalid_timestamp: 400,
	batch_too_large: 400,
	body_too_large: 413,
	header_too_large: 431,
	bad_request: 400,
	unauthorized: 401,
	forbidden: 403,
};

// Which code each bad request must get: the one table to adjust.
const EXPECT = {
	'truncated JSON': 'invalid_json',
	'empty body': 'invalid_json',
	'invalid UTF-8': 'invalid_json',
	'\\u0000 in a string value': 'invalid_json',
	'number 1e400': 'invalid_json',
	'30-digit integer': 'invalid_json',
	'nesting 100,000 deep': 'invalid_json',
	'top-level array': 'invalid_event',
	'top-level string': 'invalid_event',
	'top-level null': 'invalid_event',
	'userId is an object': 'invalid_event',
	'userId is an array': 'invalid_event',
	'userId is a boolean': 'invalid_event',
	'neither userId nor anonymousId': 'missing_identity',
	'messageId of 101 characters': 'message_id_too_long',
	'timestamp 2020-13-45': 'invalid_timestamp',
	'batch of 10,000 events': 'batch_too_large',
	'Content-Length 600000 with no body': 'body_too_large',
	'chunked body over 512000 bytes': 'body_too_large',
	'gzip bomb (100 MB inflated)': 'body_too_large',
	'1 MB header': 'header_too_large',
	'both Content-Length and Transfer-Encoding': 'bad_request',
	'wrong write key': 'unauthorized',
	'no key at all': 'unauthorized',
	'read key on /v1/track': 'forbidden',
};

const BODY_LIMIT = 512_000;

const weft = useWeft('bad_input');

function track(extra = {}) {
	return { userId: 'u-bad', event: 'Bad Input Probe', messageId: messageId('bad'), ...extra };
}

// The start of a raw request to /v1/track with the write key.
function head(extraLines) {
	return [
		'POST /v1/track HTTP/1.1',
		`Host: 127.0.0.1:${weft.port}`,
		`Authorization: ${weft.basic()}`,
		'Content-Type: application/json',
		...extraLines,
		'',
		'',
	].join('\r\n');
}

// One test per bad request: documented status and code, still healthy,
// nothing stored.
function refused(name, send) {
	const code = EXPECT[name];
	assert.ok(code, `no expected code for '${name}'`);
	test(`${name} -> ${STATUS[code]} ${code}`, async () => {
		const before = await weft.counts();
		const res = await send();
		assertError(res, STATUS[code], code, name);
		await weft.assertHealthy(name);
		assert.deepEqual(await weft.counts(), before, `${name}: rows were stored for a refused request`);
	});
}

// ----- not JSON, or JSON that Weft must not try to represent

refused('truncated JSON', () => weft.post('/v1/track', '{"userId":"u-bad","event":"Truncated'));
refused('empty body', () => weft.post('/v1/track', ''));
refused('invalid UTF-8', () => weft.post('/v1/track', Buffer.concat([
	Buffer.from('{"userId":"u-bad","event":"bad '),
	Buffer.from([0xff, 0xfe, 0xc3, 0x28]),
	Buffer.from('"}'),
])));
refused('\\u0000 in a string value', () => weft.post('/v1/track', '{"userId":"u-bad","event":"a\\u0000b"}'));
refused('number 1e400', () => weft.post('/v1/track', '{"userId":"u-bad","event":"e","properties":{"n":1e400}}'));
refused('30-digit integer', () => weft.post('/v1/track',
	'{"userId":"u-bad","event":"e","properties":{"n":123456789012345678901234567890}}'));
refused('nesting 100,000 deep', () => weft.post('/v1/track',
	`{"userId":"u-bad","event":"deep","properties":{"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}}`));

// ----- JSON, but not an event

refused('top-level array', () => weft.post('/v1/track', JSON.stringify([track()])));
refused('top-level string', () => weft.post('/v1/track', '"userId"'));
refused('top-level null', () => weft.post('/v1/track', 'null'));
refused('userId is an object', () => weft.post('/v1/track', track({ userId: { id: 'u1' } })));
refused('userId is an array', () => weft.post('/v1/track', track({ userId: ['u1'] })));
refused('userId is a boolean', () => weft.post('/v1/track', track({ userId: true })));
refused('neither userId nor anonymousId', () => weft.post('/v1/track',
	{ event: 'Nobody', messageId: messageId('bad') }));
refused('messageId of 101 characters', () => weft.post('/v1/track', track({ messageId: 'x'.repeat(101) })));
refused('timestamp 2020-13-45', () => weft.post('/v1/track', track({ timestamp: '2020-13-45' })));
refused('batch of 10,000 events', () => {
	const batch = Array.from({ length: 10_000 }, () => ({ type: 'track', userId: 'u', event: 'e' }));
	const body = JSON.stringify({ batch });
	assert.ok(body.length < BODY_LIMIT, `the batch (${body.length} bytes) must fit the body limit`);
	return weft.post('/v1/batch', body);
});

// ----- too large

refused('Content-Length 600000 with no body', () =>
	rawRequest(weft.port, [head(['Content-Length: 600000'])]));

refused('chunked body over 512000 bytes', () => rawRequest(weft.port, function* chunks() {
	yield head(['Transfer-Encoding: chunked']);
	const open = '{"userId":"u-bad","event":"big","properties":{"pad":"';
	yield `${open.length.toString(16)}\r\n${open}\r\n`;
	const piece = 'a'.repeat(64 * 1024);
	for (let sent = open.length; sent <= BODY_LIMIT + 100_000; sent += piece.length) {
		yield `${piece.length.toString(16)}\r\n${piece}\r\n`;
	}
	yield '3\r\n"}}\r\n0\r\n\r\n';
}));

let bomb;
refused('gzip bomb (100 MB inflated)', () => {
	// Valid JSON as far as it goes: a string of 100 MB of ASCII zeros.
	bomb ??= zlib.gzipSync(Buffer.concat([
		Buffer.from('{"userId":"u-bad","event":"bomb","properties":{"pad":"'),
		Buffer.alloc(100 * 1024 * 1024, '0'),
		Buffer.from('"}}'),
	]), { level: 9 });
	assert.ok(bomb.length < BODY_LIMIT, `the compressed bomb (${bomb.length} bytes) must fit the body limit`);
	return weft.post('/v1/track', bomb, { headers: { 'content-encoding': 'gzip' } });
});

refused('1 MB header', () => rawRequest(weft.port, function* pieces() {
	const body = JSON.stringify(track());
	yield [
		'POST /v1/track HTTP/1.1',
		`Host: 127.0.0.1:${weft.port}`,
		`Authorization: ${weft.basic()}`,
		'X-Padding: ',
	].join('\r\n');
	const piece = 'p'.repeat(64 * 1024);
	for (let i = 0; i < 16; i++) yield piece;
	yield `\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
}));

// ----- request smuggling

refused('both Content-Length and Transfer-Encoding', () => {
	const body = JSON.stringify(track());
	const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
	return rawRequest(weft.port, [head(['Content-Length: 4', 'Transfer-Encoding: chunked']) + chunked]);
});

// ----- auth

refused('wrong write key', () => weft.post('/v1/track', track(), { key: 'wk_not_a_key_of_this_weft_0123456789' }));
refused('no key at all', () => weft.post('/v1/track', track(), { key: null }));
refused('read key on /v1/track', () => weft.post('/v1/track', track(), { key: weft.keys.read }));

// ----- odd but valid: accepted and stored as sent

async function acceptedOnce(name, id, send) {
	const before = await weft.counts();
	const res = await send();
	assertSuccess(res, name);
	await weft.assertHealthy(name);
	const after = await weft.counts();
	assert.equal(after.events, before.events + 1, `${name}: expected one new row in events`);
	const rows = await weft.query(sql`SELECT type, payload FROM events WHERE message_id = ${id}`);
	assert.equal(rows.length, 1, `${name}: messageId ${id} stored ${rows.length} times`);
	return rows[0];
}

test('SQL in a property value is stored verbatim', async () => {
	const evil = "'); DROP TABLE events; --";
	const ev = track({ properties: { note: evil, [evil]: 'as a key too' } });
	const row = await acceptedOnce('SQL in a value', ev.messageId, () => weft.post('/v1/track', ev));
	assert.equal(row.payload.properties?.note, evil, `stored payload: ${JSON.stringify(row.payload)}`);
	assert.equal(row.payload.properties?.[evil], 'as a key too');
});

for (const contentType of ['text/plain', null, 'application/x-www-form-urlencoded']) {
	test(`Content-Type ${contentType ?? '(none)'} with a JSON body is accepted`, async () => {
		const ev = track({ event: `Content-Type ${contentType}` });
		const row = await acceptedOnce(`Content-Type ${contentType}`, ev.messageId,
			() => weft.post('/v1/track', ev, { headers: { 'content-type': contentType } }));
		assert.equal(row.type, 'track');
	});
}

test('writeKey in the body instead of Basic auth is accepted', async () => {
	const ev = track({ writeKey: weft.keys.write });
	await acceptedOnce('writeKey in body', ev.messageId, () => weft.post('/v1/track', ev, { key: null }));
});

test('the server answers a valid request after all of the above', async () => {
	const ev = track({ event: 'Still Alive' });
	const res = await weft.post('/v1/track', ev);
	assertSuccess(res, 'after the bad input');
	const rows = await weft.query(sql`SELECT event FROM events WHERE message_id = ${ev.messageId}`);
	assert.deepEqual(rows, [{ event: 'Still Alive' }], show(res));
});

test('weft exits 0 on SIGTERM with no sanitizer report', () => weft.assertCleanExit());
