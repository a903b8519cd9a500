// Helpers for the integration suites (node:test): each suite gets its own
// throwaway PostgreSQL (scripts/pg in a temporary folder), PII key,
// migrated schema, workspace with write/read/admin keys, and a real
// `weft serve` on a free loopback port, all torn down in an after() hook
// even when tests fail.
//
//   import { useWeft } from './harness.mjs';
//   const weft = useWeft('my-suite');
//   test('...', async () => {
//     const res = await weft.post('/v1/track', { userId: 'u1', event: 'e' });
//     const rows = await weft.query(sql`SELECT type FROM events WHERE message_id = ${id}`);
//   });
//
// The binary is $WEFT_BIN (relative to the current folder), else ./weft at
// the repository root. Weft's stderr goes to weft.log in the suite's
// temporary folder; it is copied to $WEFT_TEST_LOG_DIR when that is set
// (scripts/test-all sets it). WEFT_TEST_KEEP=1 keeps the temporary folder.
// WEFT_TEST_LOG_LEVEL sets Weft's log level (default info).

import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const weftBin = path.resolve(process.env.WEFT_BIN || path.join(repoRoot, 'weft'));
const pgScript = path.join(repoRoot, 'scripts', 'pg');
export const psqlBin = fs.existsSync('/usr/lib/postgresql/15/bin/psql')
	? '/usr/lib/postgresql/15/bin/psql'
	: 'psql';

// Sanitizer builds are slower to start and to answer.
const SLOW = /asan|sanitize/i.test(weftBin) || Boolean(process.env.ASAN_OPTIONS);
export const TIMEOUT_SCALE = SLOW ? 3 : 1;

// ---------------------------------------------------------------------------
// Child processes

// Runs a program to completion. Resolves { code, signal, stdout, stderr };
// rejects when it exits non-zero unless allowFailure is set.
export function run(cmd, args, { env = process.env, input, timeoutMs = 60_000, allowFailure = false } = {}) {
	return new Promise((resolve, reject) => {
		const child = spawn(cmd, args, { env, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
		const out = [];
		const err = [];
		child.stdout.on('data', (c) => out.push(c));
		child.stderr.on('data', (c) => err.push(c));
		const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs * TIMEOUT_SCALE);
		child.on('error', (e) => {
			clearTimeout(timer);
			reject(new Error(`cannot run ${cmd}: ${e.message}`));
		});
		child.on('close', (code, signal) => {
			clearTimeout(timer);
			const result = {
				code,
				signal,
				stdout: Buffer.concat(out).toString(),
				stderr: Buffer.concat(err).toString(),
			};
			if ((code !== 0 || signal) && !allowFailure) {
				reject(new Error(`${path.basename(cmd)} ${args.join(' ')} exited with ` +
					`${signal || code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`));
				return;
			}
			resolve(result);
		});
		if (child.stdin) {
			// A program may exit without reading its input: EPIPE is its answer.
			child.stdin.on('error', () => {});
			child.stdin.end(input);
		}
	});
}

// A port nothing listens on right now (the kernel's choice, then released).
export function freePort() {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.unref();
		srv.on('error', reject);
		srv.listen(0, '127.0.0.1', () => {
			const { port } = srv.address();
			srv.close(() => resolve(port));
		});
	});
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Resolves with what `promise` resolves to, or with `fallback` after ms
// (the timer is cleared either way, so it keeps no process alive).
export function within(promise, ms, fallback = null) {
	let timer;
	const late = new Promise((r) => {
		timer = setTimeout(() => r(fallback), ms);
	});
	return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------
// SQL: every query returns JSON rows, so values never need parsing by hand.

// Quotes a value as an SQL literal (standard_conforming_strings is on).
export function literal(v) {
	if (v === null || v === undefined) return 'NULL';
	if (typeof v === 'number' || typeof v === 'bigint') return String(v);
	if (typeof v === 'boolean') return v ? 'true' : 'false';
	if (Array.isArray(v)) return `ARRAY[${v.map(literal).join(', ')}]::text[]`;
	return `'${String(v).replace(/'/g, "''")}'`;
}

// Tagged template: sql`SELECT ... WHERE message_id = ${id}` quotes each value.
export function sql(strings, ...values) {
	return strings.reduce((acc, s, i) => acc + s + (i < values.length ? literal(values[i]) : ''), '');
}

// ---------------------------------------------------------------------------
// Raw HTTP over a socket, for what fetch will not send: a Content-Length with
// no body, both Content-Length and Transfer-Encoding, a 1 MB header.

// Parses one HTTP response from the start of buf; null until it is whole.
function parseResponse(buf, ended) {
	const end = buf.indexOf('\r\n\r\n');
	if (end < 0) return null;
	const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
	const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
	if (!m) return { status: 0, headers: {}, text: buf.toString('latin1'), json: undefined };
	const headers = {};
	for (const line of lines.slice(1)) {
		const i = line.indexOf(':');
		if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
	}
	let body = buf.subarray(end + 4);
	if (headers['content-length'] !== undefined) {
		const n = Number(headers['content-length']);
		if (body.length < n) return null;
		body = body.subarray(0, n);
	} else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
		const parts = [];
		let rest = body;
		for (;;) {
			const eol = rest.indexOf('\r\n');
			if (eol < 0) return null;
			const size = parseInt(rest.subarray(0, eol).toString('latin1'), 16);
			if (Number.isNaN(size)) break;
			if (size === 0) break;
			if (rest.length < eol + 2 + size + 2) return null;
			parts.push(rest.subarray(eol + 2, eol + 2 + size));
			rest = rest.subarray(eol + 2 + size + 2);
		}
		body = Buffer.concat(parts);
	} else if (!ended) {
		return null; // body runs to the end of the connection
	}
	const text = body.toString('utf8');
	let json;
	try {
		json = JSON.parse(text);
	} catch {
		json = undefined;
	}
	return { status: Number(m[1]), headers, text, json };
}

// Connects to 127.0.0.1:port, writes each piece of `pieces` (strings or
// Buffers, or a function returning an iterable of them) in turn, and
// resolves with the first response: { status, headers, text, json,
// writeError, bytesWritten }. Writing stops as soon as a response has come
// or the server has closed; an error writing after that is expected (the
// server may refuse a large request before reading it) and only recorded.
export function rawRequest(port, pieces, { timeoutMs = 15_000 } = {}) {
	return new Promise((resolve) => {
		const sock = net.connect(port, '127.0.0.1');
		let buf = Buffer.alloc(0);
		let done = false;
		let writeError;
		let bytesWritten = 0;
		const finish = (res) => {
			if (done) return;
			done = true;
			clearTimeout(timer);
			sock.destroy();
			resolve({ ...res, writeError, bytesWritten });
		};
		const timer = setTimeout(() => {
			finish({ status: 0, headers: {}, text: buf.toString('latin1'), timedOut: true });
		}, timeoutMs * TIMEOUT_SCALE);
		sock.on('data', (c) => {
			buf = Buffer.concat([buf, c]);
			const res = parseResponse(buf, false);
			if (res) finish(res);
		});
		sock.on('end', () => {
			finish(parseResponse(buf, true) ?? { status: 0, headers: {}, text: buf.toString('latin1'), closed: true });
		});
		sock.on('close', () => {
			finish(parseResponse(buf, true) ?? { status: 0, headers: {}, text: buf.toString('latin1'), closed: true });
		});
		sock.on('error', (e) => {
			writeError = e.code || e.message;
		});
		sock.on('connect', async () => {
			const iter = typeof pieces === 'function' ? pieces() : pieces;
			for (const piece of iter) {
				if (done || sock.destroyed || writeError) break;
				const ok = sock.write(piece);
				bytesWritten += Buffer.byteLength(piece);
				if (!ok) {
					await new Promise((r) => {
						const go = () => {
							sock.off('drain', go);
							sock.off('close', go);
							r();
						};
						sock.on('drain', go);
						sock.on('close', go);
					});
				}
				// Give the server's answer a chance to arrive between pieces.
				await new Promise((r) => setImmediate(r));
			}
		});
	});
}

// ---------------------------------------------------------------------------
// One Weft under test

function tail(file, lines = 40) {
	try {
		return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
	} catch {
		return '(no log)';
	}
}

const SANITIZER_RE = /ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|runtime error:|SUMMARY: \w+Sanitizer/;

export class Weft {
	// opts.workspaces: names of more workspaces to create in setup(), each
	// with its own keys, found in this.workspaces[name] (see addWorkspace).
	// opts.env: more environment for every weft command of this suite
	// (`weft serve` included), e.g. { WEFT_TEST_CLOCK: '1' }.
	constructor(name, { workspaces = [], env = {} } = {}) {
		this.name = name;
		this.extraEnv = env;
		this.workspace = 'it';
		this.keys = {};
		this.extraWorkspaces = workspaces;
		this.workspaces = {};
		this.proc = null;
		this.exited = null; // promise of { code, signal } for this.proc
		this.tmp = null;
		this.emergency = () => this.killSync();
	}

	// Environment for every weft command: the caller's, less any WEFT_*
	// setting that would point it elsewhere, plus this suite's.
	env(extra = {}) {
		const env = {};
		for (const [k, v] of Object.entries(process.env)) {
			if (!k.startsWith('WEFT_') || k === 'WEFT_BIN') env[k] = v;
		}
		return {
			...env,
			WEFT_DATABASE_URL: this.dbUrl,
			WEFT_PII_KEY_FILE: this.keyFile,
			WEFT_DATA_DIR: this.dataDir,
			WEFT_LOG_LEVEL: process.env.WEFT_TEST_LOG_LEVEL || 'info',
			...this.extraEnv,
			...extra,
		};
	}

	// Runs `weft ARGS...`; resolves { code, stdout, stderr }.
	cli(args, opts = {}) {
		return run(weftBin, args, { env: this.env(), ...opts });
	}

	async setup() {
		assert.ok(fs.existsSync(weftBin), `no weft binary at ${weftBin} (make weft, or set WEFT_BIN)`);
		this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), `weft-it-${this.name}-`));
		// The PostgreSQL user (not root) must reach tmp/pg.
		fs.chmodSync(this.tmp, 0o755);
		process.on('exit', this.emergency);
		for (const sig of ['SIGINT', 'SIGTERM']) {
			process.once(sig, () => {
				this.killSync();
				process.exit(128 + os.constants.signals[sig]);
			});
		}
		this.pgDir = path.join(this.tmp, 'pg');
		this.dataDir = path.join(this.tmp, 'data');
		this.keyFile = path.join(this.tmp, 'pii.key');
		this.logFile = path.join(this.tmp, 'weft.log');
		fs.mkdirSync(this.dataDir);

		const pg = await run(pgScript, ['start', this.pgDir], { timeoutMs: 120_000 });
		this.dbUrl = pg.stdout.trim().split('\n').pop();
		assert.match(this.dbUrl, /^postgres(ql)?:\/\//, `scripts/pg start printed ${pg.stdout}`);

		await this.cli(['pii-key', 'create', this.keyFile]);
		await this.cli(['migrate'], { timeoutMs: 120_000 });
		for (const role of ['write', 'read', 'admin']) {
			this.keys[role] = await this.createKey(this.workspace, role);
		}
		const ws = await this.query(sql`SELECT workspace_id FROM workspaces WHERE name = ${this.workspace}`);
		assert.equal(ws.length, 1, `workspace '${this.workspace}' not found after weft keys create`);
		this.workspaceId = ws[0].workspace_id;
		for (const name of this.extraWorkspaces) this.workspaces[name] = await this.addWorkspace(name);
		await this.start();
	}

	// `weft keys create`: the key alone on one line of stdout.
	async createKey(workspace, role) {
		const { stdout } = await this.cli(['keys', 'create', '--workspace', workspace, '--role', role]);
		const lines = stdout.split('\n').filter((l) => l.trim() !== '');
		assert.equal(lines.length, 1, `weft keys create printed ${JSON.stringify(stdout)}, not one key`);
		return lines[0].trim();
	}

	// Another workspace beside this.workspace: creates it with a write, a
	// read and an admin key (`weft keys create`) and, when weft is running,
	// waits until it accepts them (it reloads its keys every few seconds).
	// Resolves { name, workspaceId, keys: { write, read, admin } }.
	async addWorkspace(name, { timeoutMs = 15_000 } = {}) {
		const keys = {};
		for (const role of ['write', 'read', 'admin']) keys[role] = await this.createKey(name, role);
		const ws = await this.query(sql`SELECT workspace_id FROM workspaces WHERE name = ${name}`);
		assert.equal(ws.length, 1, `workspace '${name}' not found after weft keys create`);
		if (this.proc) {
			// One reload brings every key: the admin key, created last, stands for all three.
			const deadline = Date.now() + timeoutMs * TIMEOUT_SCALE;
			let res;
			for (;;) {
				res = await this.get('/v1/admin/privacy-policy', { key: keys.admin });
				if (res.status !== 401 || Date.now() > deadline) break;
				await sleep(100);
			}
			assert.equal(res.status, 200, `the keys of workspace '${name}' were not accepted: ${show(res)}`);
		}
		return { name, workspaceId: ws[0].workspace_id, keys };
	}

	// Starts `weft serve` and waits for /healthz: on a free port the first
	// time, then on the same one, as a restarted server would come back.
	async start() {
		assert.equal(this.proc, null, 'weft is already running');
		if (!this.port) this.port = await freePort();
		this.base = `http://127.0.0.1:${this.port}`;
		fs.appendFileSync(this.logFile, `--- harness: weft serve --listen 127.0.0.1:${this.port}\n`);
		const fd = fs.openSync(this.logFile, 'a');
		const proc = spawn(weftBin, ['serve', '--listen', `127.0.0.1:${this.port}`], {
			env: this.env(),
			stdio: ['ignore', fd, fd],
		});
		fs.closeSync(fd);
		this.proc = proc;
		this.exited = new Promise((resolve) => {
			proc.on('exit', (code, signal) => resolve({ code, signal }));
			proc.on('error', (e) => resolve({ code: null, signal: null, error: e }));
		});
		const deadline = Date.now() + 30_000 * TIMEOUT_SCALE;
		let last = 'no answer';
		while (Date.now() < deadline) {
			const gone = await within(this.exited, 100);
			if (gone) {
				this.proc = null;
				throw new Error(`weft serve exited (${gone.signal || gone.code}) before /healthz answered\n${tail(this.logFile)}`);
			}
			try {
				const res = await fetch(`${this.base}/healthz`, { signal: AbortSignal.timeout(2000) });
				if (res.status === 200) return;
				last = `status ${res.status}`;
			} catch (e) {
				last = e.cause?.code || e.message;
			}
		}
		throw new Error(`weft serve did not answer /healthz in time (${last})\n${tail(this.logFile)}`);
	}

	// Sends SIGTERM (or `signal`) and resolves { code, signal } once weft
	// has exited; kills it and throws when it takes longer than timeoutMs.
	async stop({ signal = 'SIGTERM', timeoutMs = 20_000 } = {}) {
		if (!this.proc) return { code: 0, signal: null };
		const proc = this.proc;
		proc.kill(signal);
		const res = await within(this.exited, timeoutMs * TIMEOUT_SCALE);
		this.proc = null;
		if (!res) {
			proc.kill('SIGKILL');
			await this.exited;
			throw new Error(`weft did not exit within ${timeoutMs} ms of ${signal}\n${tail(this.logFile)}`);
		}
		return res;
	}

	// Stops weft with SIGTERM, checks it exited 0, starts it again.
	async restart() {
		const res = await this.stop();
		assert.deepEqual(res, { code: 0, signal: null }, `weft exited with ${JSON.stringify(res)} on SIGTERM\n${tail(this.logFile)}`);
		await this.start();
	}

	// Lines of weft.log that a sanitizer wrote.
	sanitizerReports() {
		try {
			return fs.readFileSync(this.logFile, 'utf8').split('\n').filter((l) => SANITIZER_RE.test(l));
		} catch {
			return [];
		}
	}

	// Asserts what every suite should end with: weft exits 0 on SIGTERM and
	// no sanitizer complained. Call it from the last test of a file.
	async assertCleanExit() {
		const res = await this.stop();
		const reports = this.sanitizerReports();
		assert.deepEqual(res, { code: 0, signal: null },
			`weft exited with ${JSON.stringify(res)} on SIGTERM\n${tail(this.logFile, 80)}`);
		assert.deepEqual(reports, [], `sanitizer reports in weft.log:\n${tail(this.logFile, 80)}`);
	}

	async teardown() {
		try {
			await this.stop({ timeoutMs: 10_000 }).catch(() => {});
			if (this.pgDir) await run(pgScript, ['stop', this.pgDir], { allowFailure: true });
		} finally {
			process.off('exit', this.emergency);
			if (this.logFile && fs.existsSync(this.logFile) && process.env.WEFT_TEST_LOG_DIR) {
				try {
					fs.copyFileSync(this.logFile, path.join(process.env.WEFT_TEST_LOG_DIR, `${this.name}.weft.log`));
				} catch (e) {
					process.stderr.write(`# cannot keep weft.log: ${e.message}\n`);
				}
			}
			const reports = this.sanitizerReports();
			if (reports.length) process.stderr.write(`# sanitizer reports in weft.log:\n${tail(this.logFile, 80)}\n`);
			if (this.tmp && !process.env.WEFT_TEST_KEEP) {
				fs.rmSync(this.tmp, { recursive: true, force: true });
			} else if (this.tmp) {
				process.stderr.write(`# kept ${this.tmp}\n`);
			}
		}
	}

	// Last resort when the test process is going away without after():
	// nothing may outlive it.
	killSync() {
		if (this.proc) {
			this.proc.kill('SIGKILL');
			this.proc = null;
		}
		if (this.pgDir) spawnSync(pgScript, ['stop', this.pgDir], { stdio: 'ignore' });
	}

	// ----- database

	// Runs one SELECT and resolves its rows as objects (jsonb columns come
	// back parsed). Statements that return nothing go through exec().
	async query(select) {
		const { stdout } = await run(psqlBin, [
			'-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', this.dbUrl,
			'-c', `SELECT coalesce(json_agg(q), '[]'::json) FROM (${select}) q`,
		]);
		return JSON.parse(stdout);
	}

	async exec(statement) {
		await run(psqlBin, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', this.dbUrl, '-c', statement]);
	}

	// Row counts of the tables a request could write to.
	async counts() {
		const [row] = await this.query(
			'SELECT (SELECT count(*) FROM events)::int AS events, (SELECT count(*) FROM rejected_events)::int AS rejected');
		return row;
	}

	// ----- HTTP

	// fetch with Basic auth (the key as user, empty password). body may be an
	// object (sent as JSON), a string or a Buffer; Content-Type defaults to
	// application/json, and a header given as null is not sent at all.
	// Resolves { status, headers, text, json }.
	async request(method, urlPath, { body, key, headers = {}, timeoutMs = 30_000 } = {}) {
		const h = {};
		let payload;
		if (body !== undefined) {
			payload = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
			h['content-type'] = 'application/json';
		}
		if (key) h.authorization = `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
		for (const [k, v] of Object.entries(headers)) {
			if (v === null) delete h[k.toLowerCase()];
			else h[k.toLowerCase()] = v;
		}
		const res = await fetch(this.base + urlPath, {
			method,
			headers: h,
			body: payload,
			signal: AbortSignal.timeout(timeoutMs * TIMEOUT_SCALE),
		});
		const text = await res.text();
		let json;
		try {
			json = JSON.parse(text);
		} catch {
			json = undefined;
		}
		return { status: res.status, headers: res.headers, text, json };
	}

	// POST with the write key unless opts.key says otherwise.
	post(urlPath, body, opts = {}) {
		return this.request('POST', urlPath, { key: this.keys.write, body, ...opts });
	}

	get(urlPath, opts = {}) {
		return this.request('GET', urlPath, opts);
	}

	// Asserts that GET /healthz answers 200 {"status":"ok"}.
	async assertHealthy(context = '') {
		const res = await this.get('/healthz', { timeoutMs: 10_000 }).catch((e) => ({ status: 0, text: String(e.cause?.code || e) }));
		assert.equal(res.status, 200, `/healthz after ${context}: ${res.status} ${res.text}\n${tail(this.logFile)}`);
	}

	// The Basic auth header value for a key.
	basic(key = this.keys.write) {
		return `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
	}

	logTail(lines) {
		return tail(this.logFile, lines);
	}

	// The /metrics series as name{labels} -> number.
	async metrics() {
		const res = await this.get('/metrics');
		assert.equal(res.status, 200, show(res));
		const out = {};
		for (const line of res.text.split('\n')) {
			const m = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
			if (m) out[m[1]] = Number(m[2]);
		}
		return out;
	}

	// Waits until the engine has loaded its state and applied every event
	// committed so far (events are applied a few ms after their 200);
	// resolves the metrics then.
	async settle(ms = 15_000) {
		const deadline = Date.now() + ms * TIMEOUT_SCALE;
		let m;
		for (;;) {
			m = await this.metrics();
			if (m.weft_engine_caught_up === 1 && m.weft_engine_applied_seq >= m.weft_log_last_seq) return m;
			if (Date.now() > deadline) break;
			await sleep(20);
		}
		assert.fail(`the engine applied up to seq ${m.weft_engine_applied_seq}, the log ends at ` +
			`${m.weft_log_last_seq} (caught_up ${m.weft_engine_caught_up})\n${this.logTail(30)}`);
	}

	// Sends events through /v1/batch, chunk at a time; every one must be accepted.
	async sendBatches(events, key = this.keys.write, chunk = 500) {
		for (let i = 0; i < events.length; i += chunk) {
			const res = await this.post('/v1/batch', { batch: events.slice(i, i + chunk) }, { key });
			assertSuccess(res, `batch of events ${i}..`);
			assert.equal(res.json.rejected, undefined, `events were rejected: ${show(res)}`);
		}
	}
}

// An event of type with a fresh messageId.
export function ev(type, fields) {
	return { type, messageId: messageId(type), ...fields };
}

// "type:value" as a path segment, the value percent-encoded.
export function identSegment(ident) {
	const i = ident.indexOf(':');
	return `${ident.slice(0, i + 1)}${encodeURIComponent(ident.slice(i + 1))}`;
}

// Calls fn until ok(result) or ms have passed; resolves the last result.
export async function eventually(fn, ok, ms = 5000) {
	const deadline = Date.now() + ms * TIMEOUT_SCALE;
	for (;;) {
		const v = await fn();
		if (ok(v) || Date.now() > deadline) return v;
		await sleep(50);
	}
}

// Runs fn over items with at most `limit` calls at once; resolves the results in order.
export async function mapLimit(items, limit, fn) {
	const out = new Array(items.length);
	let next = 0;
	const worker = async () => {
		while (next < items.length) {
			const i = next++;
			out[i] = await fn(items[i], i);
		}
	};
	await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
	return out;
}

// Shows a response in an assertion message.
export function show(res) {
	const text = res.text && res.text.length > 500 ? `${res.text.slice(0, 500)}...` : res.text;
	return `status ${res.status}, body ${text}${res.writeError ? `, write error ${res.writeError}` : ''}${res.timedOut ? ' (timed out)' : ''}`;
}

// Asserts an error response: the status and {"error":{"code":CODE,...}}.
export function assertError(res, status, code, what = '') {
	assert.equal(res.status, status, `${what}: expected ${status} ${code}, got ${show(res)}`);
	assert.equal(res.json?.error?.code, code, `${what}: expected error code ${code}, got ${show(res)}`);
	assert.equal(typeof res.json?.error?.message, 'string', `${what}: error without a message: ${show(res)}`);
}

// Asserts 200 {"success":true}.
export function assertSuccess(res, what = '') {
	assert.equal(res.status, 200, `${what}: expected 200, got ${show(res)}`);
	assert.equal(res.json?.success, true, `${what}: expected {"success":true}, got ${show(res)}`);
}

// A unique messageId: suites share nothing, but runs of one suite should
// not collide with rows kept by WEFT_TEST_KEEP either.
let seq = 0;
export function messageId(prefix = 'm') {
	seq += 1;
	return `${prefix}-${process.pid}-${Date.now().toString(36)}-${seq}`;
}

// Registers before()/after() hooks for a Weft in the current file and
// returns it (fields are filled in once before() has run). opts go to the
// Weft constructor. Note that node 20 runs a file's top-level before()
// hooks at the same time, so another before() cannot count on this one.
export function useWeft(name, opts = {}) {
	const weft = new Weft(name, opts);
	before(() => weft.setup(), { timeout: 180_000 * TIMEOUT_SCALE });
	after(() => weft.teardown(), { timeout: 60_000 * TIMEOUT_SCALE });
	return weft;
}
