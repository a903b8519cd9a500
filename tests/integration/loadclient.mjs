// A load generator for the durability suites: C concurrent keep-alive
// clients POST /v1/batch with unique messageIds and keep the books an SDK
// would keep. A messageId counts as acknowledged only when its request got
// 200 {"success":true}; a connection error, a timeout, a 503 or any other
// answer leaves the batch unacknowledged, and it is sent again later with
// the SAME messageIds (from any client), as analytics-node does.
//
//   import { LoadClient } from './loadclient.mjs';
//   const load = new LoadClient({ port, key, prefix: 'kill' });
//   load.start();
//   ...                                   // kill things
//   await load.stop({ drainMs: 10_000 });  // stop; retry what is pending
//   load.acked                            // Set of acknowledged messageIds
//   load.summary()                        // counts for a log line
//
// It never throws from its workers: every outcome is counted, and the
// odd ones (a status other than 200/503, a 503 without Retry-After, a 200
// whose body is not {"success":true}) are kept as samples for assertions.
//
// Run alone against a running Weft:
//   node tests/integration/loadclient.mjs --port 8080 --key KEY [--seconds 10]
//        [--concurrency 8] [--batch 20] [--event-bytes 0]

import http from 'node:http';
import { fileURLToPath } from 'node:url';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The body of one batch. Each event carries `padding` characters in its
// properties so the caller can choose the request size.
export function batchBody(ids, { padding = '', userCount = 50 } = {}) {
	const batch = ids.map((id, i) => {
		const ev = {
			type: 'track',
			userId: `u${(id.length + i) % userCount}`,
			event: 'Load Event',
			messageId: id,
			properties: { i },
		};
		if (padding) ev.properties.pad = padding;
		return ev;
	});
	return JSON.stringify({ batch });
}

export class LoadClient {
	// port: Weft's port on 127.0.0.1 (it may be restarted on the same port).
	// key: the write key. prefix: start of every messageId (keep it unique
	// per run so checks can select this run's rows with LIKE 'prefix-%').
	// eventBytes: approximate padding per event, for large requests.
	// retryCapMs: longest pause before a retry (Retry-After is honoured up
	// to this, so tests keep the pressure on).
	constructor({
		port,
		key,
		prefix,
		concurrency = 8,
		batchSize = 20,
		eventBytes = 0,
		requestTimeoutMs = 30_000,
		retryCapMs = 500,
		host = '127.0.0.1',
	}) {
		if (!port || !key || !prefix) throw new Error('LoadClient needs port, key and prefix');
		this.host = host;
		this.port = port;
		this.auth = `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
		this.prefix = prefix;
		this.concurrency = concurrency;
		this.batchSize = batchSize;
		this.padding = eventBytes > 0 ? 'x'.repeat(eventBytes) : '';
		this.requestTimeoutMs = requestTimeoutMs;
		this.retryCapMs = retryCapMs;
		this.agent = new http.Agent({ keepAlive: true, maxSockets: concurrency, maxFreeSockets: concurrency });

		this.acked = new Set();		// messageIds whose request got 200 {"success":true}
		this.generated = 0;		// messageIds made
		this.pending = [];		// unacknowledged batches waiting to be sent again
		this.batches = [];		// every batch made: { ids, attempts, history: [outcome...] }
		this.retriedIds = new Set();	// messageIds sent more than once
		this.outcomes = {};		// outcome ("200", "503", "ECONNRESET", "timeout", ...) -> requests
		this.odd = [];			// samples of answers that break the contract
		this.oddCount = 0;
		this.requests = 0;
		this.retries = 0;		// requests that re-sent an earlier batch
		this.inflight = 0;
		this.maxLatencyMs = 0;
		this.timeline = [];		// { start, end, outcome } per request (ms since epoch)
		this.workers = [];
		this.running = false;
		this.draining = false;
		this.nextId = 0;
	}

	newBatch() {
		const ids = [];
		for (let i = 0; i < this.batchSize; i++) {
			this.nextId += 1;
			ids.push(`${this.prefix}-${this.nextId}`);
		}
		this.generated += ids.length;
		const batch = { ids, attempts: 0, history: [] };
		this.batches.push(batch);
		return batch;
	}

	noteOdd(what) {
		this.oddCount += 1;
		if (this.odd.length < 20) this.odd.push(what);
	}

	count(outcome) {
		this.outcomes[outcome] = (this.outcomes[outcome] || 0) + 1;
	}

	// One POST; resolves { outcome, status, headers, text } and never rejects.
	post(body) {
		return new Promise((resolve) => {
			let settled = false;
			const done = (r) => {
				if (!settled) {
					settled = true;
					resolve(r);
				}
			};
			const req = http.request({
				host: this.host,
				port: this.port,
				method: 'POST',
				path: '/v1/batch',
				agent: this.agent,
				headers: {
					authorization: this.auth,
					'content-type': 'application/json',
					'content-length': Buffer.byteLength(body),
				},
			}, (res) => {
				const chunks = [];
				res.on('data', (c) => chunks.push(c));
				res.on('end', () => done({
					outcome: String(res.statusCode),
					status: res.statusCode,
					headers: res.headers,
					text: Buffer.concat(chunks).toString('utf8'),
				}));
				// A reply cut off half way is not an answer.
				res.on('aborted', () => done({ outcome: 'aborted' }));
				res.on('error', (e) => done({ outcome: e.code || 'response_error' }));
			});
			req.setTimeout(this.requestTimeoutMs, () => {
				req.destroy(Object.assign(new Error('client timeout'), { code: 'timeout' }));
			});
			req.on('error', (e) => done({ outcome: e.code || e.message }));
			req.end(body);
		});
	}

	async send(batch) {
		if (batch.attempts > 0) {
			this.retries += 1;
			for (const id of batch.ids) this.retriedIds.add(id);
		}
		batch.attempts += 1;
		const body = batchBody(batch.ids, { padding: this.padding });
		const start = Date.now();
		this.requests += 1;
		this.inflight += 1;
		const res = await this.post(body);
		this.inflight -= 1;
		const end = Date.now();
		this.maxLatencyMs = Math.max(this.maxLatencyMs, end - start);
		this.count(res.outcome);
		batch.history.push(res.outcome);
		this.timeline.push({ start, end, outcome: res.outcome });

		if (res.status === 200) {
			let json;
			try {
				json = JSON.parse(res.text);
			} catch {
				json = undefined;
			}
			if (json?.success === true && json.rejected === undefined) {
				for (const id of batch.ids) this.acked.add(id);
				return { ok: true };
			}
			this.noteOdd({ what: '200 without a plain {"success":true}', body: res.text.slice(0, 300), ids: batch.ids.slice(0, 3) });
			return { ok: false, waitMs: 0 };
		}
		if (res.status === 503) {
			const ra = res.headers['retry-after'];
			if (ra === undefined || !/^\d+$/.test(ra)) {
				this.noteOdd({ what: '503 without a Retry-After in seconds', retryAfter: ra, body: res.text.slice(0, 300) });
			}
			const secs = Number(ra) || 1;
			return { ok: false, waitMs: Math.min(secs * 1000, this.retryCapMs) };
		}
		if (res.status) {
			this.noteOdd({ what: `unexpected status ${res.status}`, body: res.text.slice(0, 300), ids: batch.ids.slice(0, 3) });
			return { ok: false, waitMs: this.retryCapMs };
		}
		return { ok: false, waitMs: 0, connError: true };
	}

	async worker() {
		let backoffMs = 25;
		// While draining, a worker with nothing to send waits for the
		// requests still out: one of them may fail and need sending again.
		while (this.running || (this.draining && (this.pending.length || this.inflight))) {
			const batch = this.pending.shift() ?? (this.running ? this.newBatch() : null);
			if (!batch) {
				await sleep(20);
				continue;
			}
			const r = await this.send(batch);
			if (r.ok) {
				backoffMs = 25;
				continue;
			}
			this.pending.push(batch);
			if (r.connError) {
				// Weft is down or restarting: back off a little, not a lot.
				await sleep(backoffMs);
				backoffMs = Math.min(backoffMs * 2, 250);
			} else if (r.waitMs) {
				await sleep(r.waitMs);
			}
		}
	}

	start() {
		if (this.running) return;
		this.running = true;
		this.startedAt = Date.now();
		for (let i = 0; i < this.concurrency; i++) this.workers.push(this.worker());
	}

	// Stops making new batches. With drainMs > 0, keeps re-sending the
	// unacknowledged ones for up to that long (until each is acknowledged);
	// resolves once every worker has returned.
	async stop({ drainMs = 0 } = {}) {
		this.draining = drainMs > 0;
		this.running = false;
		let timer;
		if (this.draining) timer = setTimeout(() => { this.draining = false; }, drainMs);
		await Promise.all(this.workers);
		clearTimeout(timer);
		this.draining = false;
		this.workers = [];
		this.stoppedAt = Date.now();
		this.agent.destroy();
	}

	// Unacknowledged messageIds left when the client stopped.
	unacked() {
		const out = [];
		for (const b of this.pending) for (const id of b.ids) if (!this.acked.has(id)) out.push(id);
		return out;
	}

	// Requests that ended after t with outcome 200, earliest first.
	firstOkAfter(t) {
		let best = null;
		for (const r of this.timeline) {
			if (r.outcome === '200' && r.end >= t && (best === null || r.end < best.end)) best = r;
		}
		return best;
	}

	summary() {
		return {
			requests: this.requests,
			generated: this.generated,
			acknowledged: this.acked.size,
			retriedRequests: this.retries,
			retriedIds: this.retriedIds.size,
			unackedLeft: this.unacked().length,
			outcomes: this.outcomes,
			oddAnswers: this.oddCount,
			maxLatencyMs: this.maxLatencyMs,
		};
	}
}

// ---------------------------------------------------------------------------
// Standalone use against a running Weft.

async function main() {
	const args = process.argv.slice(2);
	const opt = (name, dflt) => {
		const i = args.indexOf(`--${name}`);
		return i >= 0 ? args[i + 1] : dflt;
	};
	const port = Number(opt('port', 8080));
	const key = opt('key');
	if (!key) {
		process.stderr.write('usage: node loadclient.mjs --port PORT --key WRITE_KEY [--seconds N] ' +
			'[--concurrency C] [--batch N] [--event-bytes N] [--prefix P]\n');
		process.exit(2);
	}
	const load = new LoadClient({
		port,
		key,
		prefix: opt('prefix', `load-${process.pid}-${Date.now().toString(36)}`),
		concurrency: Number(opt('concurrency', 8)),
		batchSize: Number(opt('batch', 20)),
		eventBytes: Number(opt('event-bytes', 0)),
	});
	load.start();
	await sleep(Number(opt('seconds', 10)) * 1000);
	await load.stop({ drainMs: 5000 });
	const s = load.summary();
	s.eventsPerSecond = Math.round(s.acknowledged / ((load.stoppedAt - load.startedAt) / 1000));
	process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
	if (load.odd.length) process.stdout.write(`odd answers: ${JSON.stringify(load.odd, null, 2)}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
	main().catch((e) => {
		process.stderr.write(`${e.stack}\n`);
		process.exit(1);
	});
}
