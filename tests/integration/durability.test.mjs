// Durability under failure: "the log is the truth" (DESIGN.md, principle 1).
// An event that got HTTP 200 must be in PostgreSQL exactly once, whatever
// happens to Weft or to PostgreSQL afterwards, and sequence numbers must
// be unique and follow commit order.
//
// One throwaway PostgreSQL and one Weft (harness.mjs) serve all four tests,
// in order; each test uses its own messageId prefix and checks its own rows,
// and every test checks the seq invariants over the whole table.
//   1. kill -9 Weft three times under load, restarting it on the same port;
//   2. `pg_ctl restart -m immediate` twice under load: 503s, then recovery;
//   3. SIGTERM under load: exit 0 within seconds, every 200 stored;
//   4. overload with many concurrent large batches: 200 or 503, bounded RSS.
//
// WEFT_TEST_SEED=N replays the same kill moments. The load generator is
// loadclient.mjs.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { Weft, TIMEOUT_SCALE, run, sleep, within } from './harness.mjs';
import { LoadClient, batchBody } from './loadclient.mjs';

const PG_BINDIR = process.env.PG_BINDIR || '/usr/lib/postgresql/15/bin';
const PSQL = fs.existsSync(path.join(PG_BINDIR, 'psql')) ? path.join(PG_BINDIR, 'psql') : 'psql';
const SEED = Number(process.env.WEFT_TEST_SEED) || (Date.now() % 1_000_000);
const RUN = `${process.pid.toString(36)}${Date.now().toString(36)}`;

// A small deterministic PRNG (mulberry32), so a seed replays a run.
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
const random = prng(SEED);

// ---------------------------------------------------------------------------
// A Weft that can be killed, plus its PostgreSQL restarted. The harness
// does the setup (cluster, key, schema, workspace and keys), starting (on
// the same port each time) and the teardown.

class DurableWeft extends Weft {
	get pid() {
		return this.proc?.pid;
	}

	alive() {
		return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null;
	}

	// kill -9, then wait for the process to be gone.
	async kill9() {
		const proc = this.proc;
		assert.ok(proc, 'weft is not running');
		proc.kill('SIGKILL');
		const res = await within(this.exited, 10_000 * TIMEOUT_SCALE);
		assert.ok(res, `weft (pid ${proc.pid}) still there 10 s after SIGKILL`);
		this.proc = null;
		return res;
	}

	// Sends SIGTERM; resolves { code, signal, ms } once it exited, or
	// { timedOut: true } after timeoutMs (the process is then killed).
	async terminate(timeoutMs) {
		const proc = this.proc;
		assert.ok(proc, 'weft is not running');
		const t0 = Date.now();
		proc.kill('SIGTERM');
		const res = await within(this.exited, timeoutMs);
		this.proc = null;
		if (!res) {
			proc.kill('SIGKILL');
			await this.exited;
			return { timedOut: true, ms: Date.now() - t0 };
		}
		return { ...res, ms: Date.now() - t0 };
	}

	// For after(): nothing we started may outlive the file.
	killMine() {
		if (this.proc && this.alive()) this.proc.kill('SIGKILL');
	}

	// VmRSS and VmHWM of the running Weft, in MiB.
	memory() {
		try {
			const status = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
			const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
			return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
		} catch {
			return null;
		}
	}

	// pg_ctl restart -m immediate on the suite's cluster: PostgreSQL dies
	// without a checkpoint (as on a crash) and recovers from its WAL.
	// Resolves the time (ms since epoch) at which it accepts connections.
	async restartPostgresImmediate() {
		const dataDir = path.join(this.pgDir, 'data');
		const args = ['restart', '-m', 'immediate', '-D', dataDir, '-w', '-t', '60', '-s',
			'-l', path.join(this.pgDir, 'postgres.log')];
		const pgCtl = path.join(PG_BINDIR, 'pg_ctl');
		if (process.getuid() === 0) {
			const owner = (await run('stat', ['-c', '%U', dataDir])).stdout.trim();
			await run('runuser', ['-u', owner, '--', pgCtl, ...args], { timeoutMs: 90_000 });
		} else {
			await run(pgCtl, args, { timeoutMs: 90_000 });
		}
		return Date.now();
	}

	// psql -At for large results: rows as arrays of strings.
	async rows(select) {
		const { stdout } = await run(PSQL, ['-X', '-q', '-At', '-F', '\t', '-v', 'ON_ERROR_STOP=1',
			'-d', this.dbUrl, '-c', select], { timeoutMs: 120_000 });
		return stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
	}

	// GET path; status 0 when nothing answered.
	async probe(urlPath, timeoutMs = 2000) {
		try {
			const res = await fetch(this.base + urlPath, { signal: AbortSignal.timeout(timeoutMs) });
			await res.arrayBuffer();
			return res.status;
		} catch {
			return 0;
		}
	}
}

const weft = new DurableWeft('durability');
const loads = new Set();

before(() => weft.setup(), { timeout: 180_000 * TIMEOUT_SCALE });
after(async () => {
	for (const load of loads) {
		load.running = false;
		load.draining = false;
		load.agent.destroy();
	}
	weft.killMine();
	await weft.teardown();
}, { timeout: 120_000 * TIMEOUT_SCALE });

function newLoad(name, opts = {}) {
	const load = new LoadClient({
		port: weft.port,
		key: weft.keys.write,
		prefix: `${name}-${RUN}`,
		...opts,
	});
	loads.add(load);
	return load;
}

async function ensureRunning() {
	if (!weft.alive()) {
		weft.proc = null;
		await weft.start();
	}
	await waitReady(20_000 * TIMEOUT_SCALE);
}

// Polls /readyz until 200; resolves the time it did, or null.
async function waitReady(timeoutMs) {
	const deadline = Date.now() + timeoutMs;
	while (Date.now() < deadline) {
		if (await weft.probe('/readyz') === 200) return Date.now();
		await sleep(100);
	}
	return null;
}

// ---------------------------------------------------------------------------
// Checks against the database

// messageId -> count(*) of this load's rows.
async function storedCounts(load) {
	const rows = await weft.rows(
		`SELECT message_id, count(*) FROM events WHERE workspace_id = ${Number(weft.workspaceId)} ` +
		`AND message_id LIKE '${load.prefix}-%' GROUP BY message_id`);
	return new Map(rows.map(([id, n]) => [id, Number(n)]));
}

// Every acknowledged messageId is stored exactly once. Returns the counts
// for the report.
async function assertAckedStored(t, load, label) {
	const stored = await storedCounts(load);
	const missing = [];
	const twice = [];
	for (const id of load.acked) {
		const n = stored.get(id) ?? 0;
		if (n === 0) missing.push(id);
		else if (n !== 1) twice.push(`${id} x${n}`);
	}
	let storedNotAcked = 0;
	for (const id of stored.keys()) if (!load.acked.has(id)) storedNotAcked++;
	const s = load.summary();
	const report = {
		acknowledged: s.acknowledged,
		retriedRequests: s.retriedRequests,
		retriedIds: s.retriedIds,
		stored: stored.size,
		storedNotAcknowledged: storedNotAcked,
		unackedLeft: s.unackedLeft,
		requests: s.requests,
		outcomes: s.outcomes,
		maxLatencyMs: s.maxLatencyMs,
	};
	t.diagnostic(`${label}: ${JSON.stringify(report)}`);
	assert.deepEqual(missing.slice(0, 20), [],
		`${label}: ${missing.length} of ${load.acked.size} acknowledged messageIds are not in events ` +
		`(first shown)\n${weft.logTail(60)}`);
	assert.deepEqual(twice.slice(0, 20), [], `${label}: messageIds stored more than once`);
	return { stored, report };
}

// seq is unique across the table, and increases in commit order. Rows of
// one transaction share xmin; the single committer runs one transaction
// at a time, so transaction ids follow commit order. Each transaction's
// seqs must be contiguous and above every earlier transaction's.
async function assertSeqOrder(t, label) {
	const [[n, distinct, dupes]] = await weft.rows(
		'SELECT count(*), count(DISTINCT seq), ' +
		'(SELECT count(*) FROM (SELECT seq FROM events GROUP BY seq HAVING count(*) > 1) d) FROM events');
	assert.equal(Number(dupes), 0, `${label}: ${dupes} seq values appear more than once ` +
		`(${n} rows, ${distinct} distinct seq)`);
	const txs = await weft.rows(
		'SELECT xmin::text::bigint AS xid, min(seq), max(seq), count(*) FROM events GROUP BY 1 ORDER BY 1');
	const problems = [];
	let gaps = 0;
	let prev = null;
	for (const [xid, lo, hi, count] of txs.map((r) => r.map(Number))) {
		if (hi - lo + 1 !== count) problems.push(`xid ${xid}: ${count} rows span seq ${lo}..${hi} (not contiguous)`);
		if (prev) {
			if (lo <= prev.hi) problems.push(`xid ${xid} (seq ${lo}..${hi}) committed after xid ${prev.xid} (seq ${prev.lo}..${prev.hi}) but its seqs are not higher`);
			else if (lo !== prev.hi + 1) gaps++;
		}
		prev = { xid, lo, hi };
	}
	t.diagnostic(`${label}: ${n} rows, ${txs.length} transactions, seq 1..${prev?.hi ?? 0}, ${gaps} gaps between transactions`);
	assert.deepEqual(problems.slice(0, 10), [], `${label}: seq does not follow commit order`);
}

function assertNoOddAnswers(load, label) {
	assert.deepEqual(load.odd, [], `${label}: ${load.oddCount} answers break the contract ` +
		`(200 with a plain {"success":true}, or 503 with Retry-After)`);
}

// ---------------------------------------------------------------------------

test('no acknowledged event is lost when weft is killed with SIGKILL three times under load', {
	timeout: 120_000 * TIMEOUT_SCALE,
}, async (t) => {
	await ensureRunning();
	t.diagnostic(`seed ${SEED} (WEFT_TEST_SEED=${SEED} replays the kill moments)`);
	const load = newLoad('kill', { concurrency: 8, batchSize: 20 });
	const LOAD_MS = 15_000;
	const t0 = Date.now();
	load.start();
	const kills = [];
	// Three kills, one at a random moment in each third of the load.
	for (let i = 0; i < 3; i++) {
		const at = t0 + (LOAD_MS / 3) * i + 1000 + random() * (LOAD_MS / 3 - 2500);
		await sleep(Math.max(0, at - Date.now()));
		const pid = weft.pid;
		const before = { acked: load.acked.size, inflight: load.inflight };
		const res = await weft.kill9();
		assert.equal(res.signal, 'SIGKILL', `weft ${pid} ended with ${JSON.stringify(res)}, not by the SIGKILL`);
		const down = Date.now();
		await weft.start();
		kills.push({ atMs: down - t0, pid, inflight: before.inflight, ackedBefore: before.acked, restartMs: Date.now() - down });
	}
	await sleep(Math.max(0, t0 + LOAD_MS - Date.now()));
	// Stop making new batches; send the unacknowledged ones again (same
	// messageIds) until they are acknowledged, as an SDK would.
	await load.stop({ drainMs: 15_000 * TIMEOUT_SCALE });
	t.diagnostic(`kills: ${JSON.stringify(kills)}`);

	assertNoOddAnswers(load, 'SIGKILL');
	assert.ok(load.acked.size > 0, 'no request was acknowledged at all');
	assert.equal(load.unacked().length, 0,
		`${load.unacked().length} messageIds were still unacknowledged after 15 s of retries against a restarted weft`);
	await assertAckedStored(t, load, 'SIGKILL');
	await assertSeqOrder(t, 'SIGKILL');
	assert.deepEqual(weft.sanitizerReports(), [], `sanitizer reports:\n${weft.logTail(80)}`);
});

test('no acknowledged event is lost when PostgreSQL is restarted in immediate mode twice under load', {
	timeout: 120_000 * TIMEOUT_SCALE,
}, async (t) => {
	await ensureRunning();
	const load = newLoad('pgrestart', { concurrency: 8, batchSize: 20 });
	const RECOVERY_MS = 10_000 * TIMEOUT_SCALE;
	const pid = weft.pid;
	load.start();
	const restarts = [];
	for (let i = 0; i < 2; i++) {
		await sleep(2500);
		const ackedBefore = load.acked.size;
		const t0 = Date.now();
		const back = await weft.restartPostgresImmediate();
		const ready = await waitReady(RECOVERY_MS);
		// Give the clients a moment to get an answer after PostgreSQL came back.
		const deadline = back + RECOVERY_MS;
		while (!load.firstOkAfter(back) && Date.now() < deadline) await sleep(50);
		const ok = load.firstOkAfter(back);
		restarts.push({
			pgDownMs: back - t0,
			readyzAfterMs: ready && ready - back,
			first200AfterMs: ok && ok.end - back,
			ackedDuring: load.acked.size - ackedBefore,
		});
		assert.ok(weft.alive(), `weft (pid ${pid}) exited while PostgreSQL restarted\n${weft.logTail(60)}`);
		assert.ok(ready, `/readyz not 200 within ${RECOVERY_MS} ms of PostgreSQL being back (restart ${i + 1})\n${weft.logTail(60)}`);
		assert.ok(ok, `no request got 200 within ${RECOVERY_MS} ms of PostgreSQL being back (restart ${i + 1}); ` +
			`outcomes so far ${JSON.stringify(load.outcomes)}\n${weft.logTail(60)}`);
	}
	await sleep(2000);
	await load.stop({ drainMs: 15_000 * TIMEOUT_SCALE });
	t.diagnostic(`PostgreSQL restarts: ${JSON.stringify(restarts)}`);

	assert.equal(weft.pid, pid, 'weft was restarted behind the test\'s back');
	assert.ok(weft.alive(), `weft exited\n${weft.logTail(60)}`);
	assertNoOddAnswers(load, 'PostgreSQL restart');
	const bad = Object.keys(load.outcomes).filter((o) => /^\d+$/.test(o) && o !== '200' && o !== '503');
	assert.deepEqual(bad, [], `answers other than 200/503 while PostgreSQL restarted: ${JSON.stringify(load.outcomes)}`);
	assert.equal(load.unacked().length, 0,
		`${load.unacked().length} messageIds still unacknowledged 15 s after the load stopped`);
	await assertAckedStored(t, load, 'PostgreSQL restart');
	await assertSeqOrder(t, 'PostgreSQL restart');
});

test('SIGTERM under load: weft exits 0 within seconds and every 200 is stored', {
	timeout: 90_000 * TIMEOUT_SCALE,
}, async (t) => {
	await ensureRunning();
	const load = newLoad('term', { concurrency: 16, batchSize: 20 });
	load.start();
	await sleep(3000);
	const inflight = load.inflight;
	const termAt = Date.now();
	const res = await weft.terminate(15_000 * TIMEOUT_SCALE);
	// Keep the clients going a moment: they must all fail now.
	await sleep(500);
	await load.stop();
	const late200 = load.timeline.filter((r) => r.outcome === '200' && r.end >= termAt).length;
	t.diagnostic(`SIGTERM with ${inflight} requests in flight: exit ${JSON.stringify(res)}; ` +
		`${late200} requests answered 200 after the signal`);

	assert.ok(!res.timedOut, `weft did not exit within ${15 * TIMEOUT_SCALE} s of SIGTERM\n${weft.logTail(60)}`);
	assert.equal(res.signal, null, `weft died of ${res.signal} on SIGTERM\n${weft.logTail(60)}`);
	assert.equal(res.code, 0, `weft exited ${res.code} on SIGTERM\n${weft.logTail(60)}`);
	assert.ok(res.ms < 10_000 * TIMEOUT_SCALE, `weft took ${res.ms} ms to exit after SIGTERM`);
	assertNoOddAnswers(load, 'SIGTERM');

	const { stored } = await assertAckedStored(t, load, 'SIGTERM');
	// A 503 says "nothing was stored": a batch whose every answer was an
	// explicit 503 (no broken connection that could hide a commit) must
	// have stored nothing.
	const contradicted = [];
	for (const b of load.batches) {
		if (load.acked.has(b.ids[0]) || b.history.length === 0) continue;
		if (!b.history.every((o) => o === '503')) continue;
		const n = b.ids.filter((id) => stored.has(id)).length;
		if (n) contradicted.push(`${b.ids[0]}.. (${n} of ${b.ids.length} stored, answers ${b.history.join(',')})`);
	}
	assert.deepEqual(contradicted, [], 'batches answered only 503 (nothing stored) whose events were stored');
	await assertSeqOrder(t, 'SIGTERM');
	assert.deepEqual(weft.sanitizerReports(), [], `sanitizer reports:\n${weft.logTail(80)}`);
});

test('overload: many concurrent large batches get 200 or 503 with Retry-After, and memory stays bounded', {
	timeout: 120_000 * TIMEOUT_SCALE,
}, async (t) => {
	await ensureRunning();
	// 2500 events (the batch limit) of ~190 bytes: ~470 kB a request, under
	// the 512000-byte body limit; 48 at once is ~120k rows against a commit
	// queue of 50k rows (ingest's max_queued_rows default).
	const PAD = 60;
	const probeBody = batchBody(Array.from({ length: 2500 }, (_, i) => `ovl-${RUN}-${9_000_000 + i}`), { padding: 'x'.repeat(PAD) });
	assert.ok(Buffer.byteLength(probeBody) < 500_000, `a large batch is ${Buffer.byteLength(probeBody)} bytes, over the body limit`);
	const load = newLoad('ovl', { concurrency: 48, batchSize: 2500, eventBytes: PAD, requestTimeoutMs: 60_000, retryCapMs: 200 });
	const pid = weft.pid;
	const idle = weft.memory();
	const samples = [];
	let sampling = true;
	const sampler = (async () => {
		while (sampling) {
			const m = weft.memory();
			if (m) samples.push({ t: Date.now(), ...m });
			await sleep(200);
		}
	})();
	const PHASE_MS = 5000;
	load.start();
	const t0 = Date.now();
	await sleep(PHASE_MS);
	const phase1 = Math.max(...samples.map((s) => s.rss));
	await sleep(PHASE_MS);
	const phase2 = Math.max(...samples.filter((s) => s.t >= t0 + PHASE_MS).map((s) => s.rss));
	await load.stop();
	sampling = false;
	await sampler;
	const after = weft.memory();
	const health = await weft.probe('/healthz', 10_000);
	const s = load.summary();
	t.diagnostic(`overload answers: ${JSON.stringify({ outcomes: s.outcomes, requests: s.requests, acknowledged: s.acknowledged, maxLatencyMs: s.maxLatencyMs })}`);
	t.diagnostic(`overload RSS MiB: idle ${idle?.rss.toFixed(1)}, peak first ${PHASE_MS / 1000} s ${phase1.toFixed(1)}, ` +
		`peak next ${PHASE_MS / 1000} s ${phase2.toFixed(1)}, after ${after?.rss.toFixed(1)}, VmHWM ${after?.hwm.toFixed(1)}`);
	if (!s.outcomes['503']) {
		t.diagnostic('overload: no 503 was seen; the server kept up (its queue and in-flight limits have no flag to shrink them)');
	}

	assert.ok(weft.alive() && weft.pid === pid, `weft died under overload\n${weft.logTail(60)}`);
	assert.equal(health, 200, `/healthz answered ${health} after the overload\n${weft.logTail(60)}`);
	const other = Object.entries(s.outcomes).filter(([o]) => o !== '200' && o !== '503');
	assert.deepEqual(other, [], `answers other than 200/503 (a timeout means a hang) under overload\n${weft.logTail(60)}`);
	assertNoOddAnswers(load, 'overload');
	// Sanitizer builds carry shadow memory and a quarantine.
	const cap = 512 * (TIMEOUT_SCALE > 1 ? 4 : 1);
	const peak = Math.max(after.hwm, phase1, phase2);
	assert.ok(peak < cap, `weft's peak RSS was ${peak.toFixed(1)} MiB under overload (cap ${cap} MiB)`);
	// Growth allowed from the first half to the second: allocator slack,
	// or for sanitizer builds ASan's quarantine (256 MiB) filling up.
	const slack = TIMEOUT_SCALE > 1 ? 320 : 64;
	assert.ok(phase2 <= phase1 * 1.25 + slack,
		`RSS kept growing under the same load: ${phase1.toFixed(1)} MiB then ${phase2.toFixed(1)} MiB`);
	await assertAckedStored(t, load, 'overload');
	await assertSeqOrder(t, 'overload');

	// The file ends with a clean stop: exit 0, no sanitizer report.
	const res = await weft.terminate(20_000 * TIMEOUT_SCALE);
	assert.deepEqual({ code: res.code, signal: res.signal, timedOut: res.timedOut },
		{ code: 0, signal: null, timedOut: undefined }, `weft did not stop cleanly on SIGTERM\n${weft.logTail(60)}`);
	assert.deepEqual(weft.sanitizerReports(), [], `sanitizer reports:\n${weft.logTail(80)}`);
});
