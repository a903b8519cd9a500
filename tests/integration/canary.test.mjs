// The privacy canary (issue "Privacy"): no raw personal data may reach
// PostgreSQL, Weft's log or its data folder unless the workspace's policy
// keeps it.
//
// 1,000 events, sent over HTTP through every collector endpoint, carry
// values made up for this run only: emails, E.164 phones, Luhn-valid card
// numbers, SSNs, mod-97-valid IBANs, IPv4 and IPv6 addresses. They sit in
// traits, properties, context (context.ip, context.traits, page URLs and
// their query strings), nested arrays, object keys, identity fields, and
// JSON strings written with \u00XX escapes; some batches carry invalid
// items, which are stored masked in rejected_events. Half the events go in
// under the default policy, half under a workspace policy that adds a
// `keep` rule for properties.keep_me.
//
// Then a pg_dump of the database, Weft's log (at debug level unless
// WEFT_TEST_LOG_LEVEL says otherwise), PostgreSQL's own log and every file
// of the data folder but the PII key are searched for every value: as
// sent, lower-cased, encodeURIComponent'ed, form-encoded, base64'd (btoa),
// in its compact forms (a card's digits, an IBAN without spaces, a phone's
// E.164 and bare digits) and, where it was sent \u-escaped, as written.
// IP addresses are matched whole (198.51.100.7 is not 198.51.100.71, and
// the /24 or /48 network that truncation keeps is no hit). The keep_me
// values are the positive control: they must be found in the dump.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import {
	useWeft, assertSuccess, literal, messageId, run, show, sql,
} from './harness.mjs';

// Weft's debug lines are searched too, unless the caller picked a level.
if (!process.env.WEFT_TEST_LOG_LEVEL) process.env.WEFT_TEST_LOG_LEVEL = 'debug';

const weft = useWeft('canary');

const PG_DUMP = fs.existsSync('/usr/lib/postgresql/15/bin/pg_dump')
	? '/usr/lib/postgresql/15/bin/pg_dump'
	: 'pg_dump';

// ---------------------------------------------------------------------------
// Values that exist nowhere else

const TAG = crypto.randomBytes(4).toString('hex');
const int = (lo, hi) => crypto.randomInt(lo, hi + 1); // both ends included
const digits = (n) => Array.from({ length: n }, () => int(0, 9)).join('');
const pad = (n, width) => String(n).padStart(width, '0');
const taken = new Set();

// Calls make() until it returns a value not handed out before.
function fresh(make) {
	for (;;) {
		const v = make();
		if (!taken.has(v)) {
			taken.add(v);
			return v;
		}
	}
}

function luhnValid(number) {
	let sum = 0;
	for (let i = number.length - 1, twice = false; i >= 0; i--, twice = !twice) {
		let d = number.charCodeAt(i) - 48;
		if (twice) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
		sum += d;
	}
	return sum % 10 === 0;
}

function luhnComplete(payload) {
	for (let d = 0; d <= 9; d++) {
		if (luhnValid(payload + d)) return payload + d;
	}
	throw new Error('unreachable');
}

// ISO 7064 mod 97 of an IBAN-style string (letters count 10..35).
function mod97(s) {
	let r = 0;
	for (const ch of s) {
		const v = /[0-9]/.test(ch) ? ch : String(ch.charCodeAt(0) - 55);
		for (const c of v) r = (r * 10 + (c.charCodeAt(0) - 48)) % 97;
	}
	return r;
}

function ibanValid(iban) {
	const s = iban.replace(/ /g, '');
	return mod97(s.slice(4) + s.slice(0, 4)) === 1;
}

function makeIban(country, bban) {
	const check = 98 - mod97(`${bban}${country}00`);
	return `${country}${pad(check, 2)}${bban}`;
}

const letters = (n) => Array.from({ length: n }, () => String.fromCharCode(65 + int(0, 25))).join('');
const groups4 = (s) => s.match(/.{1,4}/g).join(' ');
const hex4 = () => int(0x1000, 0xffff).toString(16);

function ipv4() {
	return fresh(() => {
		const nets = ['192.0.2', '198.51.100', '203.0.113', `198.${int(18, 19)}.${int(0, 255)}`];
		return `${nets[int(0, nets.length - 1)]}.${int(1, 254)}`;
	});
}

// Each kind's styles, taken in turn. A generator returns the value as sent,
// its equivalent forms (what a normaliser would make of it) and the
// boundary a match needs on both sides (see Scanner).
const STYLES = {
	email: {
		plain: (n) => ({ value: fresh(() => `canary-${TAG}-${n}@example.org`) }),
		'mixed case': (n) => ({ value: fresh(() => `Canary.${TAG.toUpperCase()}.${n}@Example.ORG`) }),
		'plus tag': (n) => ({ value: fresh(() => `canary+${TAG}-${n}@example.org`) }),
		subdomain: (n) => ({ value: fresh(() => `c_${TAG}_${n}@mail.example.org`) }),
	},
	phone: {
		e164: () => {
			const v = fresh(() => `+1555${digits(7)}`);
			return { value: v, also: [[v.slice(1), 'word']] };
		},
		spaced: () => {
			const d = fresh(() => digits(7));
			const e164 = `+1555${d}`;
			return { value: `+1 555 ${d.slice(0, 3)} ${d.slice(3)}`, also: [[e164], [e164.slice(1), 'word']] };
		},
		dashed: () => {
			const d = fresh(() => digits(7));
			const e164 = `+1555${d}`;
			return { value: `+1-555-${d.slice(0, 3)}-${d.slice(3)}`, also: [[e164], [e164.slice(1), 'word']] };
		},
	},
	card: {
		compact: () => ({ value: fresh(() => luhnComplete(`4${digits(14)}`)), bnd: 'word' }),
		spaced: () => {
			const c = fresh(() => luhnComplete(`4${digits(14)}`));
			return { value: groups4(c), bnd: 'num', also: [[c, 'word']] };
		},
		dashed: () => {
			const c = fresh(() => luhnComplete(`4${digits(14)}`));
			return { value: c.match(/.{4}/g).join('-'), bnd: 'num', also: [[c, 'word']] };
		},
	},
	ssn: {
		dashed: () => {
			const v = fresh(() => `${pad(int(1, 665), 3)}-${pad(int(1, 99), 2)}-${pad(int(1, 9999), 4)}`);
			return { value: v, bnd: 'num', also: [[v.replace(/-/g, ''), 'word']] };
		},
		spaced: () => {
			const v = fresh(() => `${pad(int(1, 665), 3)}-${pad(int(1, 99), 2)}-${pad(int(1, 9999), 4)}`);
			return { value: v.replace(/-/g, ' '), bnd: 'num', also: [[v, 'num'], [v.replace(/-/g, ''), 'word']] };
		},
	},
	iban: {
		DE: () => ({ value: fresh(() => makeIban('DE', digits(18))), bnd: 'word' }),
		GB: () => ({ value: fresh(() => makeIban('GB', letters(4) + digits(14))), bnd: 'word' }),
		'DE in groups': () => {
			const v = fresh(() => makeIban('DE', digits(18)));
			return { value: groups4(v), bnd: 'word', also: [[v, 'word']] };
		},
		'GB in groups': () => {
			const v = fresh(() => makeIban('GB', letters(4) + digits(14)));
			return { value: groups4(v), bnd: 'word', also: [[v, 'word']] };
		},
	},
	ipv4: {
		dotted: () => ({ value: ipv4(), bnd: 'num' }),
	},
	ipv6: {
		full: () => ({ value: fresh(() => `2001:db8:${Array.from({ length: 6 }, hex4).join(':')}`), bnd: 'hex' }),
		'upper case': () => {
			const v = fresh(() => `2001:db8:${Array.from({ length: 6 }, hex4).join(':')}`);
			return { value: v.toUpperCase(), bnd: 'hex' };
		},
		compressed: () => ({ value: fresh(() => `2001:db8:${hex4()}:${hex4()}::${hex4()}`), bnd: 'hex' }),
		'IPv4-mapped': () => {
			const v4 = ipv4();
			return { value: `::ffff:${v4}`, bnd: 'hex', also: [[v4, 'num']] };
		},
	},
};
const KINDS = Object.keys(STYLES);
const styleTurn = new Map(); // "kind|category" -> the next style's number
let emailSeq = 0;

// Every planted value, with where it went.
const canaries = [];

// Makes a new value of a kind: the style named, or the kind's styles in
// turn for each category, so that every place gets every style.
// keep: the policy keeps it, so it is expected in the dump and nowhere else.
function plant(kind, { style, keep = false, escape = false, category = '' } = {}) {
	const names = Object.keys(STYLES[kind]);
	const turn = styleTurn.get(`${kind}|${category}`) ?? 0;
	styleTurn.set(`${kind}|${category}`, turn + 1);
	const name = style ?? names[turn % names.length];
	const made = STYLES[kind][name](++emailSeq);
	const c = register(kind, made.value, { style: name, also: made.also, bnd: made.bnd, keep });
	if (escape) setEscape(c, escape);
	return c;
}

// Records a value made elsewhere.
function register(kind, value, { style = 'given', also = [], bnd = null, keep = false } = {}) {
	const c = {
		id: canaries.length, kind, style, value, also, bnd, keep, escaped: null, where: '(not sent)', category: '',
	};
	canaries.push(c);
	return c;
}

// ---------------------------------------------------------------------------
// \u-escaped JSON: the object holds a placeholder that is swapped, in the
// serialised body, for the value with some or all characters as \u00XX.

const placeholder = (c) => `ZQesc${c.id}QZ`;

function setEscape(c, mode) {
	let out = '';
	[...c.value].forEach((ch, i) => {
		const all = mode === 'all';
		if (all || i === 0 || /[@.+\-: ]/.test(ch)) {
			const h = ch.charCodeAt(0).toString(16).padStart(4, '0');
			out += `\\u${i % 2 ? h.toUpperCase() : h}`;
		} else {
			out += ch;
		}
	});
	c.escaped = out;
	c.escapeMode = mode;
}

// The text an event holds for a value: itself, or its placeholder.
const text = (c) => (c.escaped ? placeholder(c) : c.value);

// JSON text of a body with every placeholder replaced by its escaped form.
function serialise(body, escaped) {
	let s = JSON.stringify(body);
	for (const c of escaped) s = s.split(placeholder(c)).join(c.escaped);
	return s;
}

// ---------------------------------------------------------------------------
// Finding values in bytes

const BOUNDARY = {
	num: /[0-9]/, // 198.51.100.7 must not match inside 198.51.100.71
	hex: /[0-9A-Fa-f]/,
	word: /[0-9A-Za-z]/,
};
const KEY_LEN = 8;
const HASH_BASE = 257;
let HASH_TOP = 1;
for (let i = 0; i < KEY_LEN - 1; i++) HASH_TOP = Math.imul(HASH_TOP, HASH_BASE);

function hash8(buf, at) {
	let h = 0;
	for (let j = 0; j < KEY_LEN; j++) h = (Math.imul(h, HASH_BASE) + buf[at + j]) | 0;
	return h;
}

const formEncode = (s) => new URLSearchParams({ x: s }).toString().slice(2);

// The strings to look for, one value at a time: each form of the value as
// sent and of its equivalents, deduplicated; the boundary applies to the
// readable forms, not to base64.
function needlesOf(c) {
	const out = new Map();
	const add = (s, form, bnd) => {
		if (s.length >= KEY_LEN && !out.has(s)) out.set(s, { text: s, form, bnd, canary: c });
	};
	const bases = [[c.value, 'as sent', c.bnd], ...c.also.map(([v, b], i) => [v, `equivalent ${i + 1} (${v})`, b ?? c.bnd])];
	for (const [v, name, bnd] of bases) {
		const label = name === 'as sent' ? '' : ` of ${name}`;
		add(v, name === 'as sent' ? 'raw' : name, bnd);
		add(v.toLowerCase(), `lower-cased${label}`, bnd);
		add(encodeURIComponent(v), `URL-encoded${label}`, bnd);
		add(formEncode(v), `form-encoded${label}`, bnd);
		add(Buffer.from(v, 'latin1').toString('base64').replace(/=+$/, ''), `base64${label}`, null);
	}
	if (c.escaped) {
		add(c.escaped, '\\u-escaped as sent', null);
		add(c.escaped.replace(/\\/g, '\\\\'), '\\u-escaped, backslashes doubled', null);
		add(c.escaped.replace(/\\/g, '\\\\\\\\'), '\\u-escaped, backslashes doubled twice', null);
	}
	return [...out.values()];
}

class Scanner {
	constructor(list) {
		this.map = new Map();
		this.count = 0;
		for (const c of list) {
			for (const n of needlesOf(c)) {
				n.buf = Buffer.from(n.text, 'latin1');
				const h = hash8(n.buf, 0);
				const bucket = this.map.get(h);
				if (bucket) bucket.push(n);
				else this.map.set(h, [n]);
				this.count++;
			}
		}
	}

	// Calls onHit(needle, offset) for every match in buf.
	scan(buf, onHit) {
		if (buf.length < KEY_LEN) return;
		let h = hash8(buf, 0);
		for (let i = 0; ; i++) {
			const bucket = this.map.get(h);
			if (bucket) {
				for (const n of bucket) {
					const end = i + n.buf.length;
					if (end > buf.length || buf.compare(n.buf, 0, n.buf.length, i, end) !== 0) continue;
					if (n.bnd) {
						const re = BOUNDARY[n.bnd];
						if (i > 0 && re.test(String.fromCharCode(buf[i - 1]))) continue;
						if (end < buf.length && re.test(String.fromCharCode(buf[end]))) continue;
					}
					onHit(n, i);
				}
			}
			if (i + KEY_LEN >= buf.length) break;
			h = (Math.imul((h - Math.imul(buf[i], HASH_TOP)) | 0, HASH_BASE) + buf[i + KEY_LEN]) | 0;
		}
	}
}

const excerpt = (buf, at, len) => buf.subarray(Math.max(0, at - 70), Math.min(buf.length, at + len + 70))
	.toString('latin1').replace(/[\x00-\x1f\x7f-\xff]/g, '.');

// The table a pg_dump offset belongs to (the COPY block it is in).
function dumpSection(buf, at) {
	const start = buf.lastIndexOf('\nCOPY ', at);
	if (start < 0) return 'schema';
	const line = buf.subarray(start + 1, buf.indexOf('\n', start + 1)).toString('latin1');
	return `table ${line.split(' ')[1]}`;
}

// Searches sources ([{ name, buf, section(buf, at) }]) for the canaries in
// list; resolves one record per (canary, source), the first hit.
function findLeaks(list, sources) {
	const scanner = new Scanner(list);
	const found = new Map();
	for (const src of sources) {
		scanner.scan(src.buf, (n, at) => {
			const key = `${n.canary.id}|${src.name}`;
			if (found.has(key)) return;
			found.set(key, {
				canary: n.canary,
				source: src.name,
				section: src.section ? src.section(src.buf, at) : '',
				form: n.form,
				needle: n.text,
				context: excerpt(src.buf, at, n.buf.length),
			});
		});
	}
	return [...found.values()];
}

// A report a person can act on: every leak (up to a limit), then the
// share of each placement that leaked.
function describeLeaks(leaks, list, what, limit = 40) {
	const lines = [`${leaks.length} of ${list.length} planted values found in ${what}:`];
	// one of each placement and kind first, so a short list shows every problem
	const groups = new Map();
	for (const l of leaks) {
		const k = `${l.canary.category} / ${l.canary.kind} / ${l.form.split(' ')[0]}`;
		groups.set(k, (groups.get(k) ?? []).concat(l));
	}
	const ordered = [];
	for (let round = 0; ordered.length < leaks.length; round++) {
		for (const g of groups.values()) if (g[round]) ordered.push(g[round]);
	}
	for (const l of ordered.slice(0, limit)) {
		const c = l.canary;
		lines.push(`- ${c.kind} (${c.style}${c.escaped ? `, sent \\u-escaped (${c.escapeMode})` : ''}) ` +
			`${JSON.stringify(c.value)}, ${l.form} ${JSON.stringify(l.needle)}`);
		lines.push(`    planted: ${c.where}`);
		lines.push(`    found in ${l.source}${l.section ? `, ${l.section}` : ''}: ...${l.context}...`);
	}
	if (leaks.length > limit) lines.push(`- ... and ${leaks.length - limit} more`);
	const planted = new Map();
	const leaked = new Map();
	for (const c of list) {
		const k = `${c.category} / ${c.kind}`;
		planted.set(k, (planted.get(k) ?? 0) + 1);
	}
	for (const id of new Set(leaks.map((l) => l.canary.id))) {
		const c = canaries[id];
		const k = `${c.category} / ${c.kind}`;
		leaked.set(k, (leaked.get(k) ?? 0) + 1);
	}
	lines.push('by placement (leaked/planted):');
	for (const [k, n] of [...leaked].sort((a, b) => b[1] - a[1])) lines.push(`  ${n}/${planted.get(k)}  ${k}`);
	return lines.join('\n');
}

// Asserts that nothing leaked; the whole list goes to $WEFT_TEST_LOG_DIR.
function assertNoLeaks(leaks, list, what, file) {
	if (leaks.length && process.env.WEFT_TEST_LOG_DIR) {
		fs.writeFileSync(path.join(process.env.WEFT_TEST_LOG_DIR, `canary-leaks-${file}.txt`),
			`${describeLeaks(leaks, list, what, Infinity)}\n`);
	}
	assert.equal(leaks.length, 0, describeLeaks(leaks, list, what));
}

// ---------------------------------------------------------------------------
// The events

const props = (ev) => (ev.properties ??= {});
const ctx = (ev) => (ev.context ??= {});
const ctraits = (ev) => (ctx(ev).traits ??= {});
const page = (ev) => (ctx(ev).page ??= {});

// Places where a value may sit in any event. enc: the placement encodes the
// value itself (so it is never \u-escaped).
const PLACES = [
	{ name: 'properties.note (free text)', put: (ev, s) => { props(ev).note = `Please reach me at ${s} before Friday.`; return 'properties.note'; } },
	{ name: 'properties.matrix (nested arrays)', put: (ev, s) => { props(ev).matrix = [[1, 'a'], [['b', [s]]]]; return 'properties.matrix[1][0][1][0]'; } },
	{ name: 'properties.lines[].meta.ref (object in an array)', put: (ev, s) => { props(ev).lines = [{ sku: 'A-1' }, { sku: 'B-2', meta: { ref: s } }]; return 'properties.lines[1].meta.ref'; } },
	{ name: 'object key: properties.by_contact.<value>', put: (ev, s) => { props(ev).by_contact = { [s]: { seen: 2 } }; return 'the key of a member of properties.by_contact'; } },
	{ name: 'object key: context.traits.index.<value>', put: (ev, s) => { ctraits(ev).index = { [s]: true }; return 'the key of a member of context.traits.index'; } },
	{ name: 'object key in nested arrays: properties.rows[0][1].<value>', put: (ev, s) => { props(ev).rows = [[0, { [s]: 'x' }]]; return 'the key of a member of properties.rows[0][1]'; } },
	{ name: 'context.page.url query string, as is', put: (ev, s) => { page(ev).url = `https://shop.example.net/checkout?step=2&contact=${s}&lang=en`; return 'context.page.url'; } },
	{ name: 'context.page.url query string, encodeURIComponent', enc: true, put: (ev, v) => { page(ev).url = `https://shop.example.net/account?next=%2Fhome&who=${encodeURIComponent(v)}`; return 'context.page.url'; } },
	{ name: 'context.page.url query string, URLSearchParams', enc: true, put: (ev, v) => { page(ev).url = `https://shop.example.net/search?${new URLSearchParams({ q: v, page: '1' })}`; return 'context.page.url'; } },
	{ name: 'context.page.referrer query string', put: (ev, s) => { page(ev).referrer = `https://ref.example.net/landing?ref=${s}`; return 'context.page.referrer'; } },
	{ name: 'context.page.search', put: (ev, s) => { page(ev).search = `?contact=${s}&utm_source=mail`; return 'context.page.search'; } },
	{ name: 'properties.url (page URL)', put: (ev, s) => { props(ev).url = `https://shop.example.net/p/42?contact=${s}#top`; return 'properties.url'; } },
	{ name: 'context.traits.aliases[1] (array of strings)', put: (ev, s) => { ctraits(ev).aliases = ['primary', s]; return 'context.traits.aliases[1]'; } },
	{ name: 'context.traits.backup_contact', put: (ev, s) => { ctraits(ev).backup_contact = s; return 'context.traits.backup_contact'; } },
	{ name: 'integrations.Webhooks.note', put: (ev, s) => { ev.integrations = { Webhooks: { note: s } }; return 'integrations.Webhooks.note'; } },
	{ name: 'context.campaign.content', put: (ev, s) => { ctx(ev).campaign = { name: 'spring', content: s }; return 'context.campaign.content'; } },
	{ name: 'properties.form.fields[0].value', put: (ev, s) => { props(ev).form = { fields: [{ name: 'contact', value: s }] }; return 'properties.form.fields[0].value'; } },
	{ name: 'context.traits.address.line2 (free text)', put: (ev, s) => { ctraits(ev).address = { line2: `c/o ${s}, 2nd floor` }; return 'context.traits.address.line2'; } },
];

let placeTurn = 0;
let escapeTurn = 0;
let probeSeq = 0;

// One event under construction: its placed values and where it is going.
class Draft {
	constructor(type, where) {
		this.type = type;
		this.where = where;
		this.seq = ++probeSeq;
		this.probe = `p-${TAG}-${this.seq}`;
		this.planted = [];
		this.ev = { messageId: messageId('cn'), context: { canary_probe: this.probe } };
		if (type === 'identify') this.ev.traits = {};
		if (type === 'track') Object.assign(this.ev, { event: 'Checkout Step Viewed', properties: {} });
		if (type === 'page') Object.assign(this.ev, { name: 'Checkout', properties: {} });
		if (type === 'screen') Object.assign(this.ev, { name: 'Settings', properties: {} });
		if (type === 'group') Object.assign(this.ev, { groupId: `g-${TAG}-${this.seq}`, traits: {} });
		if (type === 'alias') this.ev.previousId = `anon-${TAG}-${this.seq}`;
		if (this.seq % 3 === 0 && type !== 'alias') this.ev.anonymousId = `a-${TAG}-${this.seq}`;
		else this.ev.userId = `u-${TAG}-${this.seq}`;
	}

	// Plants a new value of kind; put(text) stores it and returns its path.
	// Every fourth value that may be is sent \u-escaped.
	add(kind, category, put, { escapable = true, escape, style, keep } = {}) {
		if (escapable && !escape && ++escapeTurn % 4 === 0) escape = escapeTurn % 8 === 0 ? 'all' : 'some';
		const c = plant(kind, { escape, style, keep, category });
		this.place(c, category, put(c.escaped ? placeholder(c) : c.value));
		return c;
	}

	// Records where a value went.
	place(c, category, at) {
		const id = this.type === 'batch' ? '' : ` (probe ${this.probe}, messageId ${this.ev.messageId})`;
		c.where = `${this.where}${id}: ${at}`;
		c.category = category;
		this.planted.push(c);
		return c;
	}

	// A place from PLACES and a kind, in turn, so that every pair comes up.
	addPlace() {
		const p = placeTurn++;
		const place = PLACES[p % PLACES.length];
		const kind = KINDS[(p + Math.floor(p / PLACES.length)) % KINDS.length];
		return this.add(kind, place.name, (s) => place.put(this.ev, s), { escapable: !place.enc });
	}

	// The identity-like traits of the event's type, an IP, two more places.
	fill() {
		const ev = this.ev;
		if (this.type === 'identify') {
			this.add('email', 'traits.email', (s) => { ev.traits.email = s; return 'traits.email'; });
			this.add('phone', 'traits.phone', (s) => { ev.traits.phone = s; return 'traits.phone'; });
		} else if (this.type === 'group') {
			this.add('email', 'traits.email (group)', (s) => { ev.traits.email = s; return 'traits.email'; });
		} else if (this.seq % 2) {
			this.add('email', 'context.traits.email', (s) => { ctraits(ev).email = s; return 'context.traits.email'; });
		} else {
			this.add('phone', 'context.traits.phone', (s) => { ctraits(ev).phone = s; return 'context.traits.phone'; });
		}
		const ipKind = this.seq % 3 === 0 ? 'ipv6' : 'ipv4';
		this.add(ipKind, 'context.ip', (s) => { ctx(ev).ip = s; return 'context.ip'; });
		this.addPlace();
		this.addPlace();
		if (this.seq % 40 === 0) {
			// a card number sent as a JSON number (exact: below 2^53)
			this.add('card', 'properties.ref_number (JSON number)', (s) => {
				props(ev).ref_number = Number(s);
				return 'properties.ref_number';
			}, { escapable: false, style: 'compact' });
		}
		return this;
	}

	get escaped() {
		return this.planted.filter((c) => c.escaped);
	}
}

// Ways to make a batch item invalid, each with the code it must get.
const BREAKS = [
	{ code: 'missing_identity', apply: (d) => { delete d.ev.userId; delete d.ev.anonymousId; } },
	{ code: 'missing_field', type: 'track', apply: (d) => { delete d.ev.event; } },
	{ code: 'invalid_timestamp', apply: (d) => { d.ev.timestamp = 'the day before yesterday'; } },
	{
		code: 'invalid_event',
		apply: (d) => {
			// what a place put in integrations is replaced, so never sent
			for (const c of d.planted) if (/: integrations\./.test(c.where)) c.where = '(not sent)';
			d.add('email', 'integrations as a string (invalid item)', (s) => { d.ev.integrations = `note for ${s}`; return 'integrations'; });
		},
	},
	{ code: 'invalid_event', batchOnly: true, apply: (d) => { d.ev.type = 'trak'; } },
	{
		code: 'message_id_too_long',
		apply: (d) => {
			d.add('email', 'messageId over 100 characters (invalid item)', (s) => {
				d.ev.messageId = `${'m'.repeat(90)}-${s}`;
				return 'messageId';
			});
		},
	},
	{
		code: 'invalid_event',
		apply: (d) => {
			d.add('phone', 'userId as an object (invalid item)', (s) => { d.ev.userId = { phone: s }; return 'userId.phone'; });
		},
	},
];
const TYPES = ['track', 'identify', 'page', 'screen', 'group', 'alias'];

// One phase: ~half of the events, as a list of requests, each with what
// its reply must be, plus what must be stored.
class Phase {
	constructor(name) {
		this.name = name;
		this.requests = [];
		this.stored = new Map(); // probe -> type
		this.rejected = new Map(); // probe -> code
		this.bareRejects = 0; // items that are not objects: no probe
		this.events = 0;
	}

	single(type, draft, { expect = 200, code, auth = 'header', gzip = false } = {}) {
		const body = { ...draft.ev };
		if (auth === 'body') body.writeKey = weft.keys.write;
		this.requests.push({
			what: `${this.name} POST /v1/${type} (probe ${draft.probe})`,
			path: `/v1/${type}`,
			text: serialise(body, draft.escaped),
			auth,
			gzip,
			expect,
			code,
		});
		if (expect === 200) this.stored.set(draft.probe, type);
		this.events++;
	}

	draft(type, where) {
		return new Draft(type, `${this.name} ${where}`);
	}

	// A batch (or import) of n items, every `invalidEvery`-th one broken;
	// tweak(drafts) may plant more before the body is written.
	batch(n, { path: p = '/v1/batch', invalidEvery = 10, gzip = false, batchContext = false, tweak } = {}) {
		const no = this.requests.length;
		const items = [];
		const drafts = [];
		const rejected = [];
		const escaped = [];
		const body = { batch: items };
		for (let i = 0; i < n; i++) {
			const broken = invalidEvery && i % invalidEvery === invalidEvery - 1;
			const br = broken ? BREAKS[(no + i) % BREAKS.length] : null;
			const type = br?.type ?? TYPES[(no + i) % TYPES.length];
			const d = this.draft(type, `POST ${p} request ${no} item ${i}${broken ? ' (invalid)' : ''}`).fill();
			d.ev.type = type;
			if (br) {
				br.apply(d);
				rejected.push({ index: i, code: br.code });
				this.rejected.set(d.probe, br.code);
			} else {
				this.stored.set(d.probe, type);
			}
			items.push(d.ev);
			drafts.push(d);
		}
		tweak?.(drafts);
		for (const d of drafts) escaped.push(...d.escaped);
		if (batchContext) {
			// merged into the items without their own context.app / context.location
			const d = this.draft('batch', `POST ${p} request ${no} batch-level context`);
			body.context = {};
			d.add('email', 'batch-level context.app.note', (s) => { body.context.app = { note: `owner ${s}` }; return 'context.app.note'; });
			d.add('ipv4', 'batch-level context.location.ip_hint', (s) => { body.context.location = { ip_hint: s }; return 'context.location.ip_hint'; });
			escaped.push(...d.escaped);
		}
		if (n > 2) {
			// an item that is not an object at all: stored without a payload
			const d = this.draft('batch', `POST ${p} request ${no} item ${n} (a string, invalid)`);
			d.add('email', 'a batch item that is a string (invalid item)', (s) => { items.push(`contact ${s}`); return `batch[${n}]`; });
			rejected.push({ index: n, code: 'invalid_event' });
			this.bareRejects++;
			escaped.push(...d.escaped);
			this.events++;
		}
		this.events += n;
		this.requests.push({
			what: `${this.name} POST ${p} request ${no} (${items.length} items)`,
			path: p,
			text: serialise(body, escaped),
			auth: 'header',
			gzip,
			expect: 200,
			rejected,
		});
		return drafts;
	}
}

// Builds a phase of exactly `total` events.
function buildPhase(name, total, extras) {
	const ph = new Phase(name);
	extras(ph);
	for (let round = 0; round < 12; round++) {
		for (const type of TYPES) {
			const d = ph.draft(type, `POST /v1/${type} single ${round}`).fill();
			ph.single(type, d, { auth: round === 5 ? 'body' : 'header' });
		}
	}
	// invalid single requests: refused with 400, stored nowhere
	for (const br of BREAKS.filter((b) => !b.batchOnly)) {
		const type = br.type ?? 'identify';
		const d = ph.draft(type, `POST /v1/${type} invalid single (${br.code})`).fill();
		br.apply(d);
		ph.single(type, d, { expect: 400, code: br.code });
	}
	{
		// a body that is not JSON at all
		const d = ph.draft('track', 'POST /v1/track truncated JSON');
		d.add('email', 'truncated JSON body (invalid single)', (s) => { d.ev.properties = { email: s }; return 'properties.email'; });
		ph.requests.push({
			what: `${name} POST /v1/track truncated JSON (probe ${d.probe})`,
			path: '/v1/track',
			text: serialise({ ...d.ev, userId: 'u-x', event: 'e' }, d.escaped).slice(0, -2),
			auth: 'header',
			expect: 400,
			code: 'invalid_json',
		});
		ph.events++;
	}
	ph.batch(14, { path: '/v1/import', invalidEvery: 7 });
	ph.batch(12, { gzip: true, invalidEvery: 0 });
	let no = 0;
	while (ph.events < total) {
		const left = total - ph.events;
		// a full batch is 40 items + 1 string item; the last one takes what is left
		const n = left >= 41 + 3 ? 40 : left - 1;
		if (n < 3) {
			for (let i = 0; i < left; i++) ph.single('track', ph.draft('track', `POST /v1/track filler ${i}`).fill());
			break;
		}
		ph.batch(n, { batchContext: no++ % 3 === 0 });
	}
	assert.equal(ph.events, total, `phase ${name} has ${ph.events} events, not ${total}`);
	return ph;
}

// Sends a phase: singles a few at a time, then the batches; returns a list
// of what did not answer as expected.
async function sendPhase(ph) {
	const problems = [];
	const sendOne = async (r) => {
		const headers = {};
		let body = Buffer.from(r.text);
		if (r.gzip) {
			body = zlib.gzipSync(body);
			headers['content-encoding'] = 'gzip';
		}
		const res = await weft.request('POST', r.path, {
			body,
			key: r.auth === 'header' ? weft.keys.write : undefined,
			headers,
		});
		if (res.status !== r.expect) {
			problems.push(`${r.what}: expected ${r.expect}${r.code ? ` ${r.code}` : ''}, got ${show(res)}`);
			return;
		}
		if (r.code && res.json?.error?.code !== r.code) problems.push(`${r.what}: expected ${r.code}, got ${show(res)}`);
		if (r.rejected) {
			const got = (res.json?.rejected ?? []).map((x) => `${x.index}:${x.code}`).sort();
			const want = r.rejected.map((x) => `${x.index}:${x.code}`).sort();
			if (JSON.stringify(got) !== JSON.stringify(want)) {
				problems.push(`${r.what}: rejected ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
			}
		}
	};
	const singles = ph.requests.filter((r) => !r.rejected);
	for (let i = 0; i < singles.length; i += 8) await Promise.all(singles.slice(i, i + 8).map(sendOne));
	for (const r of ph.requests.filter((x) => x.rejected)) await sendOne(r);
	return problems;
}

// ---------------------------------------------------------------------------
// The phases' own odd cases

const keepCanaries = [];
let policyBefore;

function extrasA(ph) {
	const single = (type, label, fn) => {
		const d = ph.draft(type, `POST /v1/${type} ${label}`).fill();
		fn(d);
		ph.single(type, d);
		return d;
	};
	single('identify', 'userId is an email', (d) => d.add('email', 'userId (an email)', (s) => { d.ev.userId = s; delete d.ev.anonymousId; return 'userId'; }));
	single('identify', 'anonymousId is a phone', (d) => d.add('phone', 'anonymousId (a phone)', (s) => { d.ev.anonymousId = s; return 'anonymousId'; }, { style: 'e164' }));
	single('alias', 'previousId is an email', (d) => d.add('email', 'previousId (an email)', (s) => { d.ev.previousId = s; return 'previousId'; }));
	single('group', 'groupId is an email', (d) => d.add('email', 'groupId (an email)', (s) => { d.ev.groupId = s; return 'groupId'; }));
	single('track', 'event name with an email', (d) => d.add('email', 'track event name', (s) => { d.ev.event = `Invited ${s}`; return 'event'; }));
	single('screen', 'screen name with a phone', (d) => d.add('phone', 'screen name', (s) => { d.ev.name = `Call ${s}`; return 'name'; }));
	single('page', 'page name with an email', (d) => d.add('email', 'page name', (s) => { d.ev.name = `Inbox of ${s}`; return 'name'; }));
	single('track', 'messageId is an email', (d) => d.add('email', 'messageId (an email)', (s) => { d.ev.messageId = s; return 'messageId'; }, { escapable: false }));
	// the same event again: a duplicate key inside PostgreSQL, stored once
	ph.requests.push({ ...ph.requests.at(-1), what: `${ph.requests.at(-1).what}, sent again` });
	single('identify', 'externalIds', (d) => d.add('email', 'context.externalIds[0].id', (s) => {
		ctx(d.ev).externalIds = [{ id: s, type: 'crm_email', collection: 'users', encoding: 'none' }];
		return 'context.externalIds[0].id';
	}));
	single('identify', 'traits.email holds two emails', (d) => {
		const a = plant('email');
		const b = plant('email');
		d.ev.traits.email = `${a.value}, ${b.value}`;
		d.place(a, 'traits.email holding two emails (the first)', 'traits.email');
		d.place(b, 'traits.email holding two emails (the second)', 'traits.email');
	});
	single('track', 'context.traits.email holds an email and a phone', (d) => {
		const a = plant('email');
		const b = plant('phone', { style: 'e164' });
		ctraits(d.ev).email = `${a.value} / ${b.value}`;
		d.place(a, 'context.traits.email holding an email and a phone (the email)', 'context.traits.email');
		d.place(b, 'context.traits.email holding an email and a phone (the phone)', 'context.traits.email');
	});
	// a messageId that the policy drops as a whole: the row still needs one
	for (const i of [1, 2]) {
		single('track', `messageId is a card number (${i})`, (d) => {
			d.add('card', 'messageId (a card number)', (s) => { d.ev.messageId = s; return 'messageId'; }, { escapable: false, style: 'compact' });
			d.ev.event = `Card As MessageId ${TAG} ${i}`;
		});
	}
	// keep_me before any policy keeps it: masked like anything else
	single('track', 'properties.keep_me before the keep rule', (d) => d.add('email', 'properties.keep_me (default policy)', (s) => { props(d.ev).keep_me = s; return 'properties.keep_me'; }));
}

function extrasB(ph) {
	const single = (type, label, fn) => {
		const d = ph.draft(type, `POST /v1/${type} ${label}`).fill();
		fn(d);
		ph.single(type, d);
		return d;
	};
	const keep = (c) => {
		c.keep = true;
		keepCanaries.push(c);
		return c;
	};
	single('track', 'properties.keep_me (kept)', (d) => keep(d.add('email', 'properties.keep_me (kept)', (s) => { props(d.ev).keep_me = s; return 'properties.keep_me'; }, { escapable: false, keep: true })));
	single('page', 'properties.keep_me (kept, an IPv6)', (d) => keep(d.add('ipv6', 'properties.keep_me (kept)', (s) => { props(d.ev).keep_me = s; return 'properties.keep_me'; }, { escapable: false, keep: true, style: 'full' })));
	single('screen', 'properties.keep_me (kept, \\u-escaped)', (d) => keep(d.add('phone', 'properties.keep_me (kept)', (s) => { props(d.ev).keep_me = s; return 'properties.keep_me'; }, { keep: true, escape: 'some', style: 'e164' })));
	// near misses of the rule: masked
	single('identify', 'traits.keep_me', (d) => d.add('email', 'traits.keep_me (not the kept path)', (s) => { d.ev.traits.keep_me = s; return 'traits.keep_me'; }));
	single('track', 'properties.nested.keep_me', (d) => d.add('phone', 'properties.nested.keep_me (not the kept path)', (s) => { props(d.ev).nested = { keep_me: s }; return 'properties.nested.keep_me'; }));
	single('track', 'properties.keep_me_too', (d) => d.add('email', 'properties.keep_me_too (not the kept path)', (s) => { props(d.ev).keep_me_too = s; return 'properties.keep_me_too'; }));
	single('track', 'properties.keep_me_list[0]', (d) => d.add('card', 'properties.keep_me_list[0] (not the kept path)', (s) => { props(d.ev).keep_me_list = [s]; return 'properties.keep_me_list[0]'; }));
	// a kept card inside a batch
	ph.batch(5, {
		invalidEvery: 0,
		tweak: (drafts) => {
			const d = drafts[2];
			keep(d.add('card', 'properties.keep_me (kept, in a batch)', (s) => { props(d.ev).keep_me = s; return 'properties.keep_me'; }, { escapable: false, keep: true, style: 'compact' }));
		},
	});
}

// ---------------------------------------------------------------------------
// The tests

const phases = {};
const stopped = { done: false };

test('the search finds every form of a value and respects address boundaries', () => {
	const c = {
		id: -1, kind: 'ipv4', value: '198.51.100.17', also: [], bnd: 'num', escaped: null,
	};
	const e = {
		id: -2, kind: 'email', value: 'Canary.X@Example.ORG', also: [], bnd: null, escaped: 'Canary\\u002eX\\u0040Example.ORG',
	};
	const s = new Scanner([c, e]);
	const hits = (hay) => {
		const out = [];
		s.scan(Buffer.from(hay, 'latin1'), (n) => out.push(n.form));
		return out;
	};
	assert.deepEqual(hits('ip=198.51.100.170&x=198.51.100.0 1198.51.100.17'), []);
	assert.deepEqual(hits('ip=198.51.100.17&'), ['raw']);
	assert.deepEqual(hits(Buffer.from('198.51.100.17').toString('base64')), ['base64']);
	assert.deepEqual(hits('x canary.x@example.org y'), ['lower-cased']);
	assert.deepEqual(hits('?e=Canary.X%40Example.ORG'), ['URL-encoded']);
	assert.deepEqual(hits('{"e":"Canary\\u002eX\\u0040Example.ORG"}'), ['\\u-escaped as sent']);
	assert.ok(luhnValid('4111111111111111') && !luhnValid('4111111111111112'));
	assert.ok(ibanValid('DE89 3704 0044 0532 0130 00') && ibanValid('GB82WEST12345698765432'));
	const iban = makeIban('GB', 'WEST12345698765432');
	assert.equal(iban, 'GB82WEST12345698765432');
});

test('phase A: every endpoint under the default policy', { timeout: 60_000 }, async () => {
	const get = await weft.get('/v1/admin/privacy-policy', { key: weft.keys.admin });
	assert.equal(get.status, 200, show(get));
	assert.ok(Array.isArray(get.json?.rules) && get.json.rules.length > 0, `no rules: ${show(get)}`);
	policyBefore = get.json;
	phases.A = buildPhase('A', 500, extrasA);
	const problems = await sendPhase(phases.A);
	assert.deepEqual(problems, [], problems.join('\n'));
});

test('a keep rule for properties.keep_me, added to the current policy, is saved', async () => {
	assert.ok(policyBefore, 'phase A did not read the policy');
	const policy = { ...policyBefore, rules: [{ path: 'properties.keep_me', action: 'keep' }, ...policyBefore.rules] };
	const put = await weft.request('PUT', '/v1/admin/privacy-policy', { key: weft.keys.admin, body: policy });
	assert.equal(put.status, 200, show(put));
	const get = await weft.get('/v1/admin/privacy-policy', { key: weft.keys.admin });
	assert.equal(get.status, 200, show(get));
	assert.deepEqual(get.json.rules[0], { path: 'properties.keep_me', action: 'keep' }, show(get));
	assert.equal(get.json.rules.length, policyBefore.rules.length + 1, show(get));
	const write = await weft.request('PUT', '/v1/admin/privacy-policy', { key: weft.keys.write, body: policy });
	assert.equal(write.status, 403, `a write key may not set the policy: ${show(write)}`);
});

test('phase B: every endpoint under the workspace policy', { timeout: 60_000 }, async () => {
	phases.B = buildPhase('B', 500, extrasB);
	const problems = await sendPhase(phases.B);
	assert.deepEqual(problems, [], problems.join('\n'));
});

test('one email in different case and spacing gives one identifier key, shown partially', async () => {
	const local = `jane.doe.${TAG}`;
	const variants = [`  Jane.Doe.${TAG.toUpperCase()}@Example.COM `, `${local}@example.com`];
	const other = `john.roe.${TAG}@example.com`;
	for (const v of [...variants, other]) {
		const c = register('email', v, { also: [[v.trim()]] });
		c.where = `identifier check: POST /v1/identify traits.email ${JSON.stringify(v)}`;
		c.category = 'identifier check: traits.email';
	}
	const ids = [];
	for (const [i, email] of [...variants, other].entries()) {
		const id = messageId('idk');
		ids.push(id);
		assertSuccess(await weft.post('/v1/identify', { userId: `u-idk-${TAG}-${i}`, messageId: id, traits: { email } }), `identify ${i}`);
	}
	const rows = await weft.query(sql`SELECT message_id, identifiers, payload FROM events WHERE message_id = ANY(${ids})`);
	assert.equal(rows.length, 3, JSON.stringify(rows));
	const byId = new Map(rows.map((r) => [r.message_id, r]));
	const emailOf = (id) => {
		const r = byId.get(id);
		const e = r.identifiers.filter((x) => x.type === 'email');
		assert.equal(e.length, 1, `identifiers of ${id}: ${JSON.stringify(r.identifiers)}`);
		return { ...e[0], payload: r.payload };
	};
	const [a, b, c] = ids.map(emailOf);
	assert.match(a.key, /^[0-9a-f]{32}$/, JSON.stringify(a));
	assert.equal(a.key, b.key, `"${variants[0]}" and "${variants[1]}" got different keys: ${a.key} ${b.key}`);
	assert.notEqual(a.key, c.key, 'two different emails got the same key');
	for (const x of [a, b]) {
		assert.match(String(x.value), /^j\*+@example\.com$/, `display value ${JSON.stringify(x.value)} is not partial`);
		assert.ok(!String(x.value).toLowerCase().includes(local), `display value ${JSON.stringify(x.value)} holds the local part`);
		// docs: a hashed email in the payload equals the email identifier's key
		assert.equal(String(x.payload.traits?.email).trim(), `h:${x.key}`,
			`payload traits.email ${JSON.stringify(x.payload.traits?.email)} is not h:<the identifier key>`);
	}
});

test('every valid event is stored once and every invalid item is in rejected_events', async () => {
	assert.ok(phases.A && phases.B, 'a phase did not run');
	const stored = await weft.query(`SELECT payload->'context'->>'canary_probe' AS probe, type FROM events
		WHERE payload->'context' ? 'canary_probe'`);
	const rejected = await weft.query(`SELECT payload->'context'->>'canary_probe' AS probe, code, payload IS NULL AS bare
		FROM rejected_events`);
	const problems = [];
	const seen = new Map();
	for (const r of stored) seen.set(r.probe, (seen.get(r.probe) ?? []).concat(r.type));
	let wantStored = 0;
	let wantRejected = 0;
	let wantBare = 0;
	for (const ph of Object.values(phases)) {
		wantStored += ph.stored.size;
		wantRejected += ph.rejected.size;
		wantBare += ph.bareRejects;
		for (const [probe, type] of ph.stored) {
			const got = seen.get(probe) ?? [];
			if (got.length !== 1 || got[0] !== type) problems.push(`${ph.name} ${type} ${probe}: stored as ${JSON.stringify(got)}`);
		}
		const rej = new Map(rejected.filter((r) => r.probe).map((r) => [r.probe, r.code]));
		for (const [probe, code] of ph.rejected) {
			if (rej.get(probe) !== code) problems.push(`${ph.name} invalid item ${probe}: rejected_events has ${rej.get(probe)}, expected ${code}`);
		}
	}
	assert.deepEqual(problems.slice(0, 30), [], `${problems.length} problems:\n${problems.slice(0, 30).join('\n')}`);
	assert.equal(stored.length, wantStored, 'events rows with a probe');
	assert.equal(rejected.filter((r) => r.bare).length, wantBare, 'rejected batch items that are not objects');
	assert.equal(rejected.filter((r) => r.probe).length, wantRejected, 'rejected_events rows with a probe');
	// a messageId holding a card number is stored as its keyed hash, one per event
	const cards = await weft.query(`SELECT message_id, event FROM events WHERE event LIKE ${literal(`Card As MessageId ${TAG} %`)}`);
	assert.equal(cards.length, 2, `events whose messageId was a card number: ${JSON.stringify(cards)}`);
	for (const r of cards) assert.match(r.message_id, /^h:[0-9a-f]{32}$/, `message_id of ${r.event}`);
	assert.notEqual(cards[0].message_id, cards[1].message_id, 'two events whose messageId was dropped share a message_id');
});

test('weft exits 0 on SIGTERM with no sanitizer report', async () => {
	await weft.assertCleanExit();
	stopped.done = true;
});

// ----- the searches

let dumpBuf;
async function dump() {
	if (!dumpBuf) {
		const file = path.join(weft.tmp, 'canary-dump.sql');
		await run(PG_DUMP, ['--no-password', '-d', weft.dbUrl, '-f', file], { timeoutMs: 60_000 });
		dumpBuf = fs.readFileSync(file);
		fs.rmSync(file);
	}
	return dumpBuf;
}

const notKept = () => canaries.filter((c) => !c.keep && c.where !== '(not sent)');

test('no planted value in a pg_dump of the database', async () => {
	const buf = await dump();
	assert.ok(buf.includes('COPY public.events'), 'the dump has no events table');
	const leaks = findLeaks(notKept(), [{ name: 'pg_dump', buf, section: dumpSection }]);
	assertNoLeaks(leaks, notKept(), 'the pg_dump', 'pg_dump');
});

test('the keep rule keeps properties.keep_me: its values are in the dump, raw', async () => {
	assert.equal(keepCanaries.length, 4, 'phase B did not plant its keep_me values');
	const buf = await dump();
	const found = new Set(findLeaks(keepCanaries, [{ name: 'pg_dump', buf }]).filter((l) => l.form === 'raw').map((l) => l.canary.id));
	const missing = keepCanaries.filter((c) => !found.has(c.id));
	assert.deepEqual(missing.map((c) => `${c.value} (${c.where})`), [], 'kept values missing from the dump');
	const rows = await weft.query(`SELECT payload->'properties'->>'keep_me' AS v FROM events WHERE payload->'properties' ? 'keep_me'`);
	const kept = new Set(rows.map((r) => r.v));
	for (const c of keepCanaries) assert.ok(kept.has(c.value), `properties.keep_me ${c.value} not stored as sent: ${JSON.stringify([...kept])}`);
});

test('no planted value in weft\'s log', () => {
	assert.ok(stopped.done, 'weft did not stop, its log may be incomplete');
	const buf = fs.readFileSync(weft.logFile);
	assert.ok(buf.length > 0, 'weft.log is empty');
	const leaks = findLeaks(notKept(), [{ name: 'weft.log', buf }]);
	assertNoLeaks(leaks, notKept(), 'weft.log', 'weft-log');
});

function filesUnder(dir) {
	const out = [];
	for (const ent of fs.readdirSync(dir, { withFileTypes: true })) {
		const p = path.join(dir, ent.name);
		if (ent.isDirectory()) out.push(...filesUnder(p));
		else if (ent.isFile()) out.push(p);
	}
	return out;
}

test('no planted value in the data folder (all but the PII key)', () => {
	const files = filesUnder(weft.dataDir).filter((f) => path.resolve(f) !== path.resolve(weft.keyFile) && path.basename(f) !== 'pii.key');
	const sources = files.map((f) => ({ name: `data folder: ${path.relative(weft.dataDir, f)}`, buf: fs.readFileSync(f) }));
	const leaks = findLeaks(notKept(), sources);
	assertNoLeaks(leaks, notKept(), `the data folder (${files.length} files)`, 'data-dir');
});

test('no planted value in PostgreSQL\'s own log', () => {
	const file = path.join(weft.pgDir, 'postgres.log');
	const buf = fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0);
	const leaks = findLeaks(notKept(), [{ name: 'postgres.log', buf }]);
	assertNoLeaks(leaks, notKept(), 'postgres.log', 'postgres-log');
});
