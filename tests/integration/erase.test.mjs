// Erasing a person (GDPR) over HTTP: DELETE /v1/profiles/{type}:{value}
// [?suppress=true] with an admin key answers 202 with an erasure id; the
// engine wipes the profile from memory and saves its state, a job deletes
// every stored event and rejected event carrying one of the person's
// identifier keys, and GET /v1/admin/erasures/{id} follows it to "done".
// With suppress, the person's later events are acknowledged and dropped.
//
// What a user relies on, end to end: nothing of the person is left in the
// database (checked on a pg_dump, outside the suppression list itself),
// nobody else is touched, the person stays erased (and suppressed) across
// a restart and a kill -9, a merged profile goes whole, and an erasure
// without suppress lets the person come back as a new profile.
//
// One PostgreSQL and one Weft serve the file, with a second workspace
// 'other' to check that erasures stay in their workspace. The tests run in
// order; each uses people of its own.
//
// Some tests hold a PostgreSQL lock from a psql session to stop the
// server at a chosen point (the engine's state save, the erasure job) and
// then kill it there, as a crash would.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import {
	useWeft, assertError, assertSuccess, messageId, psqlBin, run, show, sleep, sql, TIMEOUT_SCALE,
	eventually, ev, identSegment,
} from './harness.mjs';

const weft = useWeft('erase', { workspaces: ['other'] });
const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}`;
const pgDumpBin = path.isAbsolute(psqlBin) ? path.join(path.dirname(psqlBin), 'pg_dump') : 'pg_dump';

// ---------------------------------------------------------------------------
// Helpers

// Sends one event to its own endpoint (/v1/track for a track, ...), as sent before.
function send(e, key = weft.keys.write) {
	const { type, ...body } = e;
	return weft.post(`/v1/${type}`, body, { key });
}

async function sendAll(events, key = weft.keys.write) {
	for (const e of events) assertSuccess(await send(e, key), `${e.type} ${e.messageId}`);
}

function erase(ident, { suppress, key = weft.keys.admin, query } = {}) {
	const qs = query ?? (suppress === undefined ? '' : `?suppress=${suppress}`);
	return weft.request('DELETE', `/v1/profiles/${identSegment(ident)}${qs}`, { key });
}

// DELETE, asserting the 202 and its body and Location; resolves the body.
async function eraseOk(ident, { suppress, identifiers, query } = {}) {
	const res = await erase(ident, { suppress, query });
	assert.equal(res.status, 202, `DELETE ${ident}: ${show(res)}`);
	assert.match(res.json?.erasure_id ?? '', /^ers_\d+$/, show(res));
	assert.equal(res.json.status, 'running', show(res));
	assert.equal(res.json.suppress, suppress === true || suppress === 'true' || suppress === '1', show(res));
	if (identifiers !== undefined) assert.equal(res.json.identifiers, identifiers, `identifiers: ${show(res)}`);
	assert.equal(res.headers.get('location'), `/v1/admin/erasures/${res.json.erasure_id}`, 'Location header');
	return res.json;
}

function erasure(id, key = weft.keys.admin) {
	return weft.get(`/v1/admin/erasures/${id}`, { key });
}

// Polls the erasure until it is no longer running; resolves its body.
async function erasureDone(id, ms = 10_000) {
	const res = await eventually(() => erasure(id), (r) => r.status !== 200 || r.json?.status !== 'running', ms);
	assert.equal(res.status, 200, `GET erasure ${id}: ${show(res)}`);
	assert.equal(res.json.status, 'done', `erasure ${id} did not finish: ${show(res)}\n${weft.logTail(20)}`);
	return res.json;
}

function native(ident, key = weft.keys.read) {
	return weft.get(`/v1/profiles/${identSegment(ident)}`, { key });
}

function history(ident, key = weft.keys.read) {
	return weft.get(`/v1/profiles/${identSegment(ident)}/identity-history`, { key });
}

function segmentTraits(ident, key = weft.keys.read) {
	return weft.get(`/v1/spaces/${weft.workspace}/collections/users/profiles/${identSegment(ident)}/traits`, { key });
}

// The whole profile of "type:value" (asserting a 200).
async function profile(ident) {
	const res = await native(ident);
	assert.equal(res.status, 200, `${ident}: ${show(res)}`);
	return res.json;
}

// Asserts that no lookup finds the identifier any more.
async function assertGone(ident, when) {
	const h = await history(ident);
	assertError(h, 404, 'not_found', `${when}: identity-history of ${ident}`);
	assert.deepEqual(h.json, { error: { code: 'not_found', message: 'Profile was not found.' } }, ident);
	assertError(await native(ident), 404, 'not_found', `${when}: GET profile ${ident}`);
	const t = await segmentTraits(ident);
	assert.equal(t.status, 404, `${when}: Segment traits of ${ident}: ${show(t)}`);
}

// Keys (32 hex) of the identifiers on a profile, by "type" -> [keys].
function keysOf(prof) {
	const out = {};
	for (const i of prof.identifiers) (out[i.type] ??= []).push(i.key);
	return out;
}

const sqlKeyMatch = (col, keys) =>
	`EXISTS (SELECT 1 FROM jsonb_array_elements(${col}) x WHERE x->>'key' = ANY(${sql`${keys}`}))`;

// Rows of events and rejected_events in the harness's workspace carrying one of keys.
async function rowsWithKeys(keys) {
	const [row] = await weft.query(`SELECT
		(SELECT count(*) FROM events WHERE workspace_id = ${weft.workspaceId} AND ${sqlKeyMatch('identifiers', keys)})::int AS events,
		(SELECT count(*) FROM rejected_events WHERE workspace_id = ${weft.workspaceId}
			AND identifiers IS NOT NULL AND ${sqlKeyMatch('identifiers', keys)})::int AS rejected`);
	return row;
}

async function storedIds(ids) {
	const rows = await weft.query(sql`SELECT message_id FROM events WHERE message_id = ANY(${ids})`);
	return rows.map((r) => r.message_id).sort();
}

// A psql session that runs `statements` in an open transaction and holds
// what they lock until release(). statements must end with a SELECT of
// the word 'locked', printed once everything before it is held.
async function holdLock(statements) {
	const locker = spawn(psqlBin, ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', weft.dbUrl],
		{ stdio: ['pipe', 'pipe', 'pipe'] });
	let out = '';
	let err = '';
	locker.stdout.on('data', (c) => { out += c; });
	locker.stderr.on('data', (c) => { err += c; });
	const done = new Promise((resolve) => locker.on('close', resolve));
	locker.stdin.write(`BEGIN;\n${statements}\n`);
	let released = false;
	const release = async () => {
		if (!released) {
			released = true;
			locker.stdin.end('COMMIT;\n');
		}
		await done;
	};
	const ok = await eventually(async () => out, (o) => o.includes('locked'), 10_000);
	if (!ok.includes('locked')) {
		await release();
		assert.fail(`psql did not take the lock: ${out} ${err}`);
	}
	return { release };
}

// Waits until a backend waits on a lock running a statement that matches pattern (SQL LIKE).
async function waitForBlocked(pattern) {
	const rows = await eventually(() => weft.query(sql`SELECT pid FROM pg_stat_activity
		WHERE wait_event_type = 'Lock' AND query LIKE ${pattern}`), (r) => r.length > 0, 10_000);
	assert.ok(rows.length > 0, `no statement like ${pattern} is waiting on a lock\n${weft.logTail(20)}`);
}

// After a kill -9 and a released lock: waits until the dead server's
// PostgreSQL sessions have ended (they hold its engine lock until then).
async function waitNoBackends() {
	const rows = await eventually(() => weft.query(`SELECT pid FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`), (r) => r.length === 0, 10_000);
	assert.deepEqual(rows, [], 'sessions of the killed server are still open');
}

// The whole database as pg_dump prints it (schema and data, plain SQL).
async function pgDump() {
	const { stdout } = await run(pgDumpBin, ['-d', weft.dbUrl, '--no-owner', '--no-privileges']);
	return stdout;
}

// The dump without the COPY section of one table.
function withoutCopyOf(dump, table) {
	const re = new RegExp(`^COPY public\\.${table} [^\\n]*FROM stdin;\\n[\\s\\S]*?^\\\\\\.$`, 'm');
	assert.match(dump, re, `no COPY section for ${table} in the dump`);
	return dump.replace(re, '');
}

// The COPY section (data lines) of one table.
function copyOf(dump, table) {
	const re = new RegExp(`^COPY public\\.${table} [^\\n]*FROM stdin;\\n([\\s\\S]*?)^\\\\\\.$`, 'm');
	const m = re.exec(dump);
	assert.ok(m, `no COPY section for ${table} in the dump`);
	return m[1];
}

// Forces an engine save (an admin command saves at once) and waits until
// the saved checkpoint is the applied seq: no save is due for a while then.
async function checkpointNow() {
	const m0 = await weft.settle();
	const rules = await weft.get('/v1/admin/identity-rules', { key: weft.keys.admin });
	assert.equal(rules.status, 200, show(rules));
	const put = await weft.request('PUT', '/v1/admin/identity-rules', { key: weft.keys.admin, body: rules.json });
	assert.equal(put.status, 200, show(put));
	const m = await eventually(() => weft.metrics(), (x) => x.weft_engine_checkpoints_total > m0.weft_engine_checkpoints_total &&
		x.weft_engine_checkpoint_seq >= m0.weft_engine_applied_seq);
	assert.ok(m.weft_engine_checkpoint_seq >= m0.weft_engine_applied_seq,
		`the engine did not save: checkpoint ${m.weft_engine_checkpoint_seq}, applied ${m0.weft_engine_applied_seq}`);
}

async function adminKeyId(workspaceId = weft.workspaceId) {
	const [row] = await weft.query(sql`SELECT key_id FROM api_keys
		WHERE workspace_id = ${workspaceId} AND role = 'admin' ORDER BY key_id LIMIT 1`);
	return Number(row.key_id);
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

// ---------------------------------------------------------------------------
// 1. Erase with suppress, end to end

test('erase with suppress: the person is gone from memory and the database, others are not, and stays out', async () => {
	const P = {
		userId: `pat-${RUN}`, anon: `pat-anon-${RUN}`, anon2: `pat-tablet-${RUN}`,
		email: `Pat.Erased.${RUN}@Example.com`, phone: `+1 555 ${String(Date.now() % 10_000_000).padStart(7, '0')}`,
	};
	const Q = { userId: `quinn-${RUN}`, anon: `quinn-anon-${RUN}`, email: `quinn.${RUN}@example.com` };
	const groupId = `acme-${RUN}`;

	const pSingles = [
		ev('identify', { userId: P.userId, anonymousId: P.anon, traits: { email: P.email, phone: P.phone, name: 'Pat' } }),
		ev('track', { userId: P.userId, event: 'Viewed Product', properties: { sku: 'a1' } }),
		ev('track', { userId: P.userId, event: 'Added To Cart', properties: { sku: 'a1' } }),
		ev('track', { userId: P.userId, event: 'Order Completed', properties: { total: 42.5 } }),
		ev('page', { anonymousId: P.anon, name: 'Home' }),
		ev('group', { userId: P.userId, groupId, traits: { name: 'Acme' } }),
		// Another device of Pat's, joined by the email in context.traits.
		ev('track', { anonymousId: P.anon2, event: 'Opened', context: { traits: { email: P.email } } }),
	];
	const qSingles = [
		ev('identify', { userId: Q.userId, anonymousId: Q.anon, traits: { email: Q.email, name: 'Quinn' } }),
		ev('track', { userId: Q.userId, event: 'Viewed Product' }),
		ev('group', { userId: Q.userId, groupId, traits: { name: 'Acme' } }),
	];
	await sendAll([...pSingles, ...qSingles]);
	const batch = [
		ev('track', { userId: P.userId, event: 'Checkout Started' }),
		{ type: 'track', userId: P.userId, messageId: messageId('p-bad') }, // no event: rejected
		ev('track', { userId: Q.userId, event: 'Checkout Started' }),
		{ type: 'track', userId: Q.userId, messageId: messageId('q-bad') }, // no event: rejected
	];
	const br = await weft.post('/v1/batch', { batch });
	assertSuccess(br, 'batch');
	assert.deepEqual(br.json.rejected?.map((r) => r.index), [1, 3], show(br));
	await weft.settle();

	// Pat before: one profile holding five identifiers, found by each.
	const pProf = await profile(`user_id:${P.userId}`);
	const pId = pProf.profile_id;
	const pKeys = keysOf(pProf);
	assert.deepEqual(Object.keys(pKeys).sort(), ['anonymous_id', 'email', 'phone', 'user_id'], JSON.stringify(pProf.identifiers));
	assert.equal(pKeys.anonymous_id.length, 2, JSON.stringify(pProf.identifiers));
	const allPKeys = Object.values(pKeys).flat();
	const pIdents = [`user_id:${P.userId}`, `anonymous_id:${P.anon}`, `anonymous_id:${P.anon2}`, `email:${P.email}`,
		`email:${P.email.toLowerCase()}`, `phone:${P.phone}`, `profile_id:${pId}`];
	for (const ident of pIdents) assert.equal((await profile(ident)).profile_id, pId, ident);
	// The keys the profile shows are the keys stored on the events.
	const [uidRow] = await weft.query(sql`SELECT identifiers FROM events WHERE message_id = ${pSingles[0].messageId}`);
	for (const i of uidRow.identifiers) {
		assert.ok(pKeys[i.type]?.includes(i.key), `the identify's ${i.type} key is not on the profile: ${JSON.stringify(uidRow)}`);
	}
	assert.deepEqual(uidRow.identifiers.map((i) => i.type).sort(), ['anonymous_id', 'email', 'phone', 'user_id']);

	const pBefore = await rowsWithKeys(allPKeys);
	assert.equal(pBefore.events, pSingles.length + 1, `Pat's stored events: ${JSON.stringify(pBefore)}`);
	const [byUserId] = await weft.query(`SELECT count(*)::int AS n FROM events WHERE ${sqlKeyMatch('identifiers', pKeys.user_id)}`);
	assert.equal(byUserId.n, pSingles.length + 1 - 2, 'events carrying the user_id key (all but the page and the tablet)');
	assert.equal(pBefore.rejected, 1, `Pat's rejected events: ${JSON.stringify(pBefore)}`);

	const qProf = await profile(`user_id:${Q.userId}`);
	const qKeys = Object.values(keysOf(qProf)).flat();
	const qBefore = await rowsWithKeys(qKeys);
	assert.deepEqual(qBefore, { events: qSingles.length + 1, rejected: 1 });
	assert.notEqual(qProf.profile_id, pId);

	// The dump holds Pat's keys before: the check below can see them.
	const dumpBefore = await pgDump();
	for (const k of allPKeys) assert.ok(dumpBefore.includes(k), `key ${k} not in the dump before the erasure`);

	const m0 = await weft.metrics();
	const adminId = await adminKeyId();
	const requested = Date.now();
	const started = await eraseOk(`email:${P.email}`, { suppress: true, identifiers: 5 });

	// At once: every lookup of Pat fails, and Pat's events are dropped.
	for (const ident of pIdents) await assertGone(ident, 'right after the 202');
	const atOnce = ev('track', { anonymousId: `pat-new-device-${RUN}`, event: 'Came Back', context: { traits: { phone: P.phone } } });
	assertSuccess(await send(atOnce), 'a suppressed event right after the 202');

	const done = await erasureDone(started.erasure_id);
	assert.deepEqual(Object.keys(done).sort(), ['erasure_id', 'error', 'events_deleted', 'events_scrubbed', 'finished_at', 'identifiers',
		'profiles', 'rejected_deleted', 'requested_at', 'requested_by_key_id', 'status', 'suppress'], JSON.stringify(done));
	assert.equal(done.erasure_id, started.erasure_id);
	assert.equal(done.suppress, true);
	assert.equal(done.profiles, 1, JSON.stringify(done));
	assert.equal(done.identifiers, 5, JSON.stringify(done));
	assert.equal(done.events_deleted, pBefore.events, JSON.stringify(done));
	assert.equal(done.rejected_deleted, 1, JSON.stringify(done));
	assert.equal(done.error, null, JSON.stringify(done));
	assert.equal(done.requested_by_key_id, adminId, JSON.stringify(done));
	assert.match(done.requested_at, ISO, JSON.stringify(done));
	assert.match(done.finished_at, ISO, JSON.stringify(done));
	assert.ok(Math.abs(Date.parse(done.requested_at) - requested) < 60_000, `requested_at ${done.requested_at}`);
	assert.ok(Date.parse(done.finished_at) >= Date.parse(done.requested_at), JSON.stringify(done));

	// The engine saved its state after the wipe.
	const m1 = await eventually(() => weft.metrics(), (m) => m.weft_engine_checkpoints_total > m0.weft_engine_checkpoints_total);
	assert.ok(m1.weft_engine_checkpoints_total > m0.weft_engine_checkpoints_total, 'no engine save after the erasure');

	for (const ident of pIdents) await assertGone(ident, 'once done');
	assert.deepEqual(await rowsWithKeys(allPKeys), { events: 0, rejected: 0 }, 'rows carrying Pat\'s keys');
	assert.deepEqual(await storedIds([atOnce.messageId]), [], 'an event of Pat\'s sent after the 202 was stored');

	// The audit row keeps no keys; the suppression list holds exactly Pat's.
	const [row] = await weft.query(sql`SELECT status, pending_keys IS NULL AS no_keys, suppress, key_id
		FROM erasures WHERE workspace_id = ${weft.workspaceId} AND erasure_id = ${Number(started.erasure_id.slice(4))}`);
	assert.deepEqual(row, { status: 'done', no_keys: true, suppress: true, key_id: adminId });
	const supp = await weft.query(sql`SELECT encode(key, 'hex') AS key, type FROM suppressed_keys
		WHERE workspace_id = ${weft.workspaceId} ORDER BY 1`);
	assert.deepEqual(supp, Object.entries(pKeys).flatMap(([type, ks]) => ks.map((key) => ({ key, type })))
		.sort((a, b) => (a.key < b.key ? -1 : 1)));

	// Quinn, in the same account, is untouched.
	const qAfter = await profile(`user_id:${Q.userId}`);
	assert.deepEqual(qAfter, qProf, 'Quinn\'s profile changed');
	assert.deepEqual(await rowsWithKeys(qKeys), qBefore, 'Quinn\'s rows changed');

	// Nothing of Pat's in the whole database but the suppression list.
	const dump = await pgDump();
	assert.ok(copyOf(dump, 'suppressed_keys').includes(pKeys.user_id[0]), 'the suppression list is not in the dump');
	const rest = withoutCopyOf(dump, 'suppressed_keys');
	for (const [type, ks] of Object.entries(pKeys)) {
		for (const k of ks) assert.ok(!rest.includes(k), `Pat's ${type} key ${k} is still in the dump: ` +
			rest.split('\n').filter((l) => l.includes(k)).map((l) => l.slice(0, 200)).join('\n'));
	}
	const raws = [P.userId, P.anon, P.anon2, P.email, P.email.toLowerCase(), P.phone];
	for (const raw of raws) {
		assert.ok(!rest.includes(raw), `Pat's raw ${raw} is still in the dump`);
		const hex = Buffer.from(raw).toString('hex');
		assert.ok(!rest.includes(hex), `Pat's raw ${raw} is still in the dump (as bytes)`);
	}
	// Quinn's are, in the events and in the engine's saved state (the check can see them).
	const pages = copyOf(dump, 'engine_pages');
	for (const k of qKeys) {
		assert.ok(rest.includes(k), `Quinn's key ${k} is missing from the dump`);
		assert.ok(pages.includes(k), `Quinn's key ${k} is missing from engine_pages in the dump`);
	}

	// Replaying Pat's events, same bodies and messageIds: 200 each, nothing stored.
	const m2 = await weft.metrics();
	const before = await weft.counts();
	await sendAll(pSingles);
	const replay = await weft.post('/v1/batch', { batch });
	assertSuccess(replay, 'replayed batch');
	// Pat's invalid item is dropped, not listed; Quinn's is refused as before.
	assert.deepEqual(replay.json.rejected?.map((r) => r.index), [3], show(replay));
	const pIds = [...pSingles, batch[0], batch[1]].map((e) => e.messageId);
	assert.deepEqual(await storedIds(pIds), [], 'a replayed event of Pat\'s was stored');
	const m3 = await weft.metrics();
	assert.equal(m3.weft_events_suppressed_total - m2.weft_events_suppressed_total, pSingles.length + 2,
		'weft_events_suppressed_total');
	assert.equal(m2.weft_events_suppressed_total - m0.weft_events_suppressed_total, 1, 'the event sent right after the 202');
	const after = await weft.counts();
	assert.deepEqual(after, { events: before.events, rejected: before.rejected + 1 }, 'rows stored by the replay');
	assert.deepEqual(await rowsWithKeys(allPKeys), { events: 0, rejected: 0 }, 'rows carrying Pat\'s keys after the replay');

	// Quinn's new events are stored and applied.
	const qNew = ev('track', { userId: Q.userId, event: 'Order Completed' });
	assertSuccess(await send(qNew));
	assert.deepEqual(await storedIds([qNew.messageId]), [qNew.messageId]);
	await weft.settle();
	const q2 = await profile(`user_id:${Q.userId}`);
	assert.equal(q2.profile_id, qProf.profile_id);
	assert.equal(q2.counters.events, qProf.counters.events + 1, JSON.stringify(q2.counters));
	for (const ident of pIdents) await assertGone(ident, 'after the replay');
});

// ---------------------------------------------------------------------------
// 2. Without suppress

test('erase without suppress: the person may come back, as a new profile', async () => {
	const R = { userId: `riley-${RUN}`, anon: `riley-anon-${RUN}` };
	const first = [
		ev('identify', { userId: R.userId, anonymousId: R.anon, traits: { name: 'Riley' } }),
		ev('track', { userId: R.userId, event: 'Signed Up' }),
	];
	await sendAll(first);
	await weft.settle();
	const old = await profile(`user_id:${R.userId}`);
	const rKeys = Object.values(keysOf(old)).flat();
	const m0 = await weft.metrics();

	const started = await eraseOk(`user_id:${R.userId}`, { suppress: 'false', identifiers: 2 });
	const done = await erasureDone(started.erasure_id);
	assert.equal(done.suppress, false);
	assert.equal(done.events_deleted, 2, JSON.stringify(done));
	assert.equal(done.rejected_deleted, 0, JSON.stringify(done));
	for (const ident of [`user_id:${R.userId}`, `anonymous_id:${R.anon}`, `profile_id:${old.profile_id}`]) {
		await assertGone(ident, 'after the erasure');
	}
	assert.deepEqual(await rowsWithKeys(rKeys), { events: 0, rejected: 0 });
	assert.deepEqual(await weft.query(sql`SELECT key FROM suppressed_keys
		WHERE workspace_id = ${weft.workspaceId} AND encode(key, 'hex') = ANY(${rKeys})`), [], 'keys suppressed');

	// Riley signs up again: stored, and a new profile.
	const again = [
		ev('identify', { userId: R.userId, anonymousId: R.anon, traits: { name: 'Riley Again' } }),
		ev('track', { userId: R.userId, event: 'Signed Up' }),
	];
	await sendAll(again);
	assert.deepEqual(await storedIds(again.map((e) => e.messageId)), again.map((e) => e.messageId).sort());
	await weft.settle();
	const back = await profile(`anonymous_id:${R.anon}`);
	assert.notEqual(back.profile_id, old.profile_id, 'the erased profile id came back');
	assert.ok(Number(back.profile_id.slice(4)) > Number(old.profile_id.slice(4)), `${back.profile_id} is not new`);
	assert.equal((await profile(`user_id:${R.userId}`)).profile_id, back.profile_id);
	assert.equal(back.traits.name, 'Riley Again', 'a trait from before the erasure survived');
	assert.equal(back.counters.events, 2, JSON.stringify(back.counters));
	assertError(await native(`profile_id:${old.profile_id}`), 404, 'not_found', 'the erased profile id');
	assert.equal((await weft.metrics()).weft_events_suppressed_total, m0.weft_events_suppressed_total, 'events were suppressed');
	// suppress=0 is a valid spelling too.
	const zero = await eraseOk(`user_id:${R.userId}`, { query: '?suppress=0', identifiers: 2 });
	assert.equal((await erasureDone(zero.erasure_id)).suppress, false);
});

test('an event sent after the 202, while the erasure job is still deleting, is kept', async () => {
	const R = { userId: `rowan-${RUN}`, anon: `rowan-anon-${RUN}` };
	await sendAll([ev('identify', { userId: R.userId, anonymousId: R.anon })]);
	await weft.settle();
	const old = await profile(`user_id:${R.userId}`);

	// Hold the job at its first statement (it raises log_head first).
	const lock = await holdLock("SELECT 'locked' FROM log_head WHERE id = 1 FOR UPDATE;");
	let started;
	try {
		started = await eraseOk(`user_id:${R.userId}`, { suppress: false, identifiers: 2 });
		await waitForBlocked('UPDATE log_head%');
		// The person comes back while the job is still running.
		const later = ev('identify', { userId: R.userId, anonymousId: R.anon, traits: { name: 'Rowan' } });
		assertSuccess(await send(later), 'identify after the 202');
		assert.deepEqual(await storedIds([later.messageId]), [later.messageId], 'not stored at first');
		assert.equal((await erasure(started.erasure_id)).json?.status, 'running', 'the job was not held');
		await lock.release();
		const done = await erasureDone(started.erasure_id);
		assert.equal(done.events_deleted, 1, `the erasure deleted an event sent after its 202: ${JSON.stringify(done)}`);
		assert.deepEqual(await storedIds([later.messageId]), [later.messageId],
			'an event acknowledged after the erasure was accepted was deleted by the erasure job');
		await weft.settle();
		const back = await profile(`user_id:${R.userId}`);
		assert.notEqual(back.profile_id, old.profile_id);
	} finally {
		await lock.release();
	}
});

test('erasing one user of a shared device keeps the other user\'s events', async () => {
	// Alice, then Bob, log in on one device: the device's anonymousId stays
	// Alice's (user_id limit 1), Bob's events carry it too.
	const anon = `family-tablet-${RUN}`;
	const [alice, bob] = [`alice-${RUN}`, `bob-${RUN}`];
	const aliceEvents = [
		ev('track', { anonymousId: anon, event: 'Visited' }),
		ev('identify', { anonymousId: anon, userId: alice }),
	];
	const bobEvents = [
		ev('identify', { anonymousId: anon, userId: bob }),
		ev('track', { anonymousId: anon, userId: bob, event: 'Order Completed' }),
	];
	await sendAll([...aliceEvents, ...bobEvents]);
	await weft.settle();
	const a = await profile(`user_id:${alice}`);
	const b = await profile(`user_id:${bob}`);
	assert.notEqual(a.profile_id, b.profile_id);
	assert.equal((await profile(`anonymous_id:${anon}`)).profile_id, a.profile_id, 'the device is Alice\'s');
	assert.equal(b.counters.events, 2, JSON.stringify(b.counters));

	const started = await eraseOk(`user_id:${alice}`, { suppress: false, identifiers: 2 });
	const done = await erasureDone(started.erasure_id);
	assert.deepEqual(await storedIds(aliceEvents.map((e) => e.messageId)), []);
	assert.deepEqual(await storedIds(bobEvents.map((e) => e.messageId)), bobEvents.map((e) => e.messageId).sort(),
		`erasing Alice deleted Bob's events (${JSON.stringify(done)})`);
	const b2 = await profile(`user_id:${bob}`);
	assert.equal(b2.profile_id, b.profile_id);
	const listed = await weft.get(`/v1/spaces/${weft.workspace}/collections/users/profiles/user_id:${bob}/events`,
		{ key: weft.keys.read });
	assert.equal(listed.status, 200, show(listed));
	assert.equal(listed.json.data.length, b2.counters.events, `Bob's profile counts ${b2.counters.events} events ` +
		`but lists ${listed.json.data.length}`);
});

// ---------------------------------------------------------------------------
// 3. Restarts and crashes

test('erase with suppress, then restart at once: still erased, the job done, replays dropped', async () => {
	const S = { userId: `sasha-${RUN}`, anon: `sasha-anon-${RUN}`, email: `sasha.${RUN}@example.com` };
	const events = [
		ev('identify', { userId: S.userId, anonymousId: S.anon, traits: { email: S.email } }),
		ev('track', { userId: S.userId, event: 'Viewed' }),
		ev('track', { anonymousId: S.anon, event: 'Scrolled' }),
	];
	await sendAll(events);
	await weft.settle();
	const prof = await profile(`user_id:${S.userId}`);
	const keys = Object.values(keysOf(prof)).flat();
	const idents = [`user_id:${S.userId}`, `anonymous_id:${S.anon}`, `email:${S.email}`, `profile_id:${prof.profile_id}`];

	const started = await eraseOk(`user_id:${S.userId}`, { suppress: true, identifiers: 3 });
	await weft.restart();
	// Suppression holds from the first request the new server answers.
	const m0 = await weft.metrics();
	assertSuccess(await send(events[1]), 'replay right after the restart');
	assert.deepEqual(await storedIds([events[1].messageId]), [], 'replayed right after the restart: stored');
	await weft.settle();
	for (const ident of idents) await assertGone(ident, 'after the restart');
	const done = await erasureDone(started.erasure_id);
	assert.equal(done.events_deleted, events.length, JSON.stringify(done));
	assert.deepEqual(await rowsWithKeys(keys), { events: 0, rejected: 0 });
	await sendAll(events);
	assert.deepEqual(await storedIds(events.map((e) => e.messageId)), [], 'replayed events were stored');
	const m1 = await weft.metrics();
	assert.equal(m1.weft_events_suppressed_total - m0.weft_events_suppressed_total, events.length + 1);
	await weft.settle();
	for (const ident of idents) await assertGone(ident, 'after the replay');
});

test('kill -9 before the job and the state save finish: the erasure resumes and holds', async () => {
	const T = { userId: `tao-${RUN}`, anon: `tao-anon-${RUN}` };
	const events = [
		ev('identify', { userId: T.userId, anonymousId: T.anon, traits: { name: 'Tao' } }),
		ev('track', { userId: T.userId, event: 'Viewed' }),
	];
	await sendAll(events);
	await checkpointNow();
	const prof = await profile(`user_id:${T.userId}`);
	const keys = Object.values(keysOf(prof)).flat();
	const idents = [`user_id:${T.userId}`, `anonymous_id:${T.anon}`, `profile_id:${prof.profile_id}`];

	// The state save waits on engine_checkpoint, the job on log_head.
	const lock = await holdLock(`LOCK TABLE engine_checkpoint IN ACCESS EXCLUSIVE MODE;
		SELECT 'locked' FROM log_head WHERE id = 1 FOR UPDATE;`);
	let started;
	try {
		started = await eraseOk(`user_id:${T.userId}`, { suppress: true, identifiers: 2 });
		await waitForBlocked('UPDATE log_head%');
		await waitForBlocked('%engine_checkpoint%');
		await weft.stop({ signal: 'SIGKILL' });
	} finally {
		await lock.release();
	}
	await waitNoBackends();
	await weft.start();
	await weft.settle();
	for (const ident of idents) await assertGone(ident, 'after kill -9 and a start');
	const done = await erasureDone(started.erasure_id);
	assert.equal(done.events_deleted, events.length, JSON.stringify(done));
	assert.deepEqual(await rowsWithKeys(keys), { events: 0, rejected: 0 });
	await sendAll(events);
	assert.deepEqual(await storedIds(events.map((e) => e.messageId)), [], 'replayed events were stored');
	await weft.settle();
	for (const ident of idents) await assertGone(ident, 'after the replay');
	// A clean restart later: still erased.
	await weft.restart();
	await weft.settle();
	for (const ident of idents) await assertGone(ident, 'after a later restart');
});

test('kill -9 after the job deleted the rows but before the state save: the person stays erased', async () => {
	const U = { userId: `uma-${RUN}`, anon: `uma-anon-${RUN}`, email: `uma.${RUN}@example.com` };
	const events = [
		ev('identify', { userId: U.userId, anonymousId: U.anon, traits: { email: U.email, name: 'Uma' } }),
		ev('track', { userId: U.userId, event: 'Viewed' }),
	];
	await sendAll(events);
	await checkpointNow();
	const prof = await profile(`user_id:${U.userId}`);
	const keys = Object.values(keysOf(prof)).flat();
	const idents = [`user_id:${U.userId}`, `anonymous_id:${U.anon}`, `email:${U.email}`, `profile_id:${prof.profile_id}`];

	// Only the state save waits: the job deletes the rows, but may not call the erasure done
	// before the engine has saved its state without the person.
	const lock = await holdLock(`LOCK TABLE engine_checkpoint IN ACCESS EXCLUSIVE MODE; SELECT 'locked';`);
	let started;
	try {
		started = await eraseOk(`user_id:${U.userId}`, { suppress: true, identifiers: 3 });
		const deadline = Date.now() + 10_000;
		while ((await rowsWithKeys(keys)).events !== 0 && Date.now() < deadline) await sleep(50);
		assert.deepEqual(await rowsWithKeys(keys), { events: 0, rejected: 0 }, 'the job did not delete the rows');
		await waitForBlocked('%engine_checkpoint%');
		const running = await weft.get(`/v1/admin/erasures/${started.erasure_id}`, { key: weft.keys.admin });
		assert.equal(running.json?.status, 'running', `done before the state save: ${show(running)}`);
		await weft.stop({ signal: 'SIGKILL' });
	} finally {
		await lock.release();
	}
	await waitNoBackends();
	await weft.start();
	await weft.settle();
	for (const ident of idents) await assertGone(ident, 'after kill -9 and a start');
	await erasureDone(started.erasure_id);
	assert.deepEqual(await rowsWithKeys(keys), { events: 0, rejected: 0 });
	const dump = withoutCopyOf(await pgDump(), 'suppressed_keys');
	for (const k of keys) assert.ok(!dump.includes(k), `key ${k} is in the dump after the restart`);
});

// ---------------------------------------------------------------------------
// 4. A merged profile goes whole

test('a profile that absorbed another is erased whole', async () => {
	const [s1, s2] = [`visit-1-${RUN}`, `visit-2-${RUN}`];
	const email = `vic.${RUN}@example.org`;
	const pages = [ev('page', { anonymousId: s1, name: 'Home' }), ev('page', { anonymousId: s2, name: 'Pricing' })];
	await sendAll(pages);
	await weft.settle();
	const [p1, p2] = [(await profile(`anonymous_id:${s1}`)).profile_id, (await profile(`anonymous_id:${s2}`)).profile_id];
	assert.notEqual(p1, p2);
	const ids = [ev('identify', { anonymousId: s1, traits: { email } }), ev('identify', { anonymousId: s2, traits: { email } })];
	await sendAll(ids);
	await weft.settle();
	const merged = await profile(`anonymous_id:${s2}`);
	assert.equal(merged.profile_id, p1, 'the sessions were not merged');
	assert.deepEqual(merged.absorbed_ids, [p2]);
	const keys = Object.values(keysOf(merged)).flat();
	assert.equal(keys.length, 3);
	assert.equal((await rowsWithKeys(keys)).events, 4);

	// Erased through an identifier that came with the absorbed profile.
	const started = await eraseOk(`anonymous_id:${s2}`, { suppress: false, identifiers: 3 });
	const idents = [`anonymous_id:${s1}`, `anonymous_id:${s2}`, `email:${email}`, `profile_id:${p1}`, `profile_id:${p2}`];
	for (const ident of idents) await assertGone(ident, 'right after the 202');
	const done = await erasureDone(started.erasure_id);
	assert.equal(done.events_deleted, 4, JSON.stringify(done));
	assert.deepEqual(await rowsWithKeys(keys), { events: 0, rejected: 0 });
	for (const ident of idents) await assertGone(ident, 'once done');
	// Erasing it again finds nothing.
	assertError(await erase(`profile_id:${p2}`, { suppress: true }), 404, 'not_found', 'the absorbed id');
	assertError(await erase(`email:${email}`), 404, 'not_found', 'the email');
});

// ---------------------------------------------------------------------------
// 5. Errors

test('errors: keys, unknown profiles, bad parameters, unknown erasures', async () => {
	const user = `yuki-${RUN}`;
	await sendAll([ev('identify', { userId: user })]);
	await weft.settle();
	const ident = `user_id:${user}`;

	assertError(await erase(ident, { key: null }), 401, 'unauthorized', 'no key');
	assertError(await erase(ident, { key: 'not-a-key' }), 401, 'unauthorized', 'unknown key');
	assertError(await erase(ident, { key: weft.keys.write }), 403, 'forbidden', 'write key');
	assertError(await erase(ident, { key: weft.keys.read }), 403, 'forbidden', 'read key');
	assertError(await erase(ident, { key: weft.keys.read, suppress: true }), 403, 'forbidden', 'read key, suppress');

	for (const bad of ['yes', 'TRUE', '2', '']) {
		assertError(await erase(ident, { suppress: bad }), 400, 'invalid_parameter', `suppress=${bad}`);
	}
	for (const raw of ['no-colon', 'profile_id:12', 'Bad%20Type:1']) {
		const res = await weft.request('DELETE', `/v1/profiles/${raw}`, { key: weft.keys.admin });
		assertError(res, 400, 'invalid_identifier', raw);
	}
	const nf = await erase(`user_id:nobody-${RUN}`, { suppress: true });
	assertError(nf, 404, 'not_found', 'unknown profile');
	assert.deepEqual(nf.json, { error: { code: 'not_found', message: 'Profile was not found.' } });
	assertError(await erase('profile_id:prf_987654321'), 404, 'not_found', 'unknown profile id');
	// Another workspace's admin key does not reach this profile.
	assertError(await erase(ident, { key: weft.workspaces.other.keys.admin }), 404, 'not_found', 'other workspace');

	// None of that erased anything.
	assert.equal((await profile(ident)).identifiers.length, 1);
	const [{ n }] = await weft.query(sql`SELECT count(*)::int AS n FROM erasures`);

	// The erasure status endpoint.
	for (const id of ['ers_987654', 'ers_0', 'ers_x', '987', 'ers_']) {
		assertError(await erasure(id), 404, 'not_found', `GET erasure ${id}`);
	}
	const started = await eraseOk(ident, { suppress: false, identifiers: 1 });
	await erasureDone(started.erasure_id);
	assertError(await erasure(started.erasure_id, null), 401, 'unauthorized', 'GET erasure without a key');
	assertError(await erasure(started.erasure_id, weft.keys.read), 403, 'forbidden', 'GET erasure, read key');
	assertError(await erasure(started.erasure_id, weft.keys.write), 403, 'forbidden', 'GET erasure, write key');
	assertError(await erasure(started.erasure_id, weft.workspaces.other.keys.admin), 404, 'not_found',
		'GET erasure from another workspace');
	const [{ n: n2 }] = await weft.query(sql`SELECT count(*)::int AS n FROM erasures`);
	assert.equal(n2, n + 1, 'erasures recorded by the refused requests');
});

test('while the engine loads after a start, DELETE answers 503 loading', async () => {
	const user = `zed-${RUN}`;
	await sendAll([ev('identify', { userId: user })]);
	await weft.settle();
	await weft.stop();
	const lock = await holdLock(`LOCK TABLE engine_checkpoint IN ACCESS EXCLUSIVE MODE; SELECT 'locked';`);
	try {
		await weft.start();
		const res = await erase(`user_id:${user}`, { suppress: true });
		assertError(res, 503, 'loading', 'DELETE while loading');
		assert.ok(res.headers.get('retry-after'), 'no Retry-After');
	} finally {
		await lock.release();
	}
	await weft.settle();
	assert.equal((await profile(`user_id:${user}`)).identifiers.length, 1, 'erased while loading');
	await weft.assertCleanExit();
});
