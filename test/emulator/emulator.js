#!/usr/bin/env node
// Loopback emulator of the Google Cloud Run Admin API v2, the GCS JSON API,
// the OAuth 2.0 token endpoint and the GCE metadata token endpoint.
//
// Node.js 20, no npm dependencies.  See README.md next to this file.
//
// Sections:
//   1. configuration (CLI)
//   2. utilities (time, ids, JSON, CRC32C, proto3 JSON helpers)
//   3. errors (Google error bodies)
//   4. stats and faults
//   5. auth (JWT bearer grant, tokens, metadata server)
//   6. GCS (objects, uploads, downloads, listing)
//   7. Cloud Run (jobs, executions, tasks, operations, processes)
//   8. emulator hooks (/_emulator/*)
//   9. router
//  10. server start and shutdown
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const os = require('node:os');
const { spawn, spawnSync } = require('node:child_process');

// ===========================================================================
// 1. Configuration
// ===========================================================================

const USAGE = `usage: emulator.js --port N [options]
  --port N               port on 127.0.0.1 (0 = pick a free one)
  --no-auth              do not require bearer tokens
  --bucket NAME          a bucket that exists (repeatable; default sandbox-test)
  --job NAME[=EMAIL]     a Cloud Run job that exists (repeatable; default sandbox),
                         whose tasks run as service account EMAIL (default: the
                         unrestricted emulator-default account)
  --service-account EMAIL[=CONDITION]
                         a service account (repeatable); CONDITION is an IAM
                         condition limiting its Cloud Storage access, e.g.
                         'resource.name.startsWith("projects/_/buckets/B/objects/P/")'
                         (terms joined by ||); without one it may do anything.
                         Tasks of its jobs get their own metadata server, whose
                         tokens are this account's
  --executor PATH        command each task runs (default $CLOUDRUN_SANDBOX_EXECUTOR,
                         else cloudrun-sandbox-executor on PATH)
  --env NAME=VALUE       extra environment for every task (repeatable)
  --instant              executions complete successfully at once, no process (a cloud-mode
                         request gets an empty succeeded result object)
  --bwrap | --no-bwrap   run tasks under bubblewrap (default: if bwrap works)
  --test-key-file FILE   service-account JSON key or PEM key that may sign JWTs
                         (repeatable)
  --token-ttl SECONDS    lifetime of issued access tokens (default 3600)
  --max-retries N        task retries after a failure (default 0)
  --max-running-tasks N  tasks running at once, overall (default 64)
  --kill-grace SECONDS   SIGTERM -> SIGKILL delay on cancel/timeout (default 2)
  --max-executions N     finished executions kept in memory (default 10000)
  --start-latency D      a task's process starts D after its execution is created
                         (provisioning; the execution shows pending meanwhile).
                         D: 8s, 500ms, 1.5s, 2m, or a range [2s,9s] drawn uniformly
                         per execution (default 0)
  --latency D            every Cloud Run and GCS request is handled D later (not
                         OAuth, metadata or /_emulator/*); same forms (default 0)
  --emit-defaults        include proto3 default values (0, false, "") in
                         Cloud Run responses (Google omits them)
  --state-dir DIR        persist objects and full task logs under DIR
  --verbose              log every request to stderr`;

function parseArgs(argv) {
  const cfg = {
    port: null, auth: true, buckets: [], jobs: [], jobSa: {}, serviceAccounts: [], executor: null, env: {},
    instant: false, bwrap: null, keyFiles: [], tokenTtl: 3600, maxRetries: 0,
    maxRunningTasks: 64, killGraceMs: 2000, maxExecutions: 10000,
    emitDefaults: false, stateDir: null, verbose: false, startLatency: null, latency: null,
  };
  const need = (i, flag) => {
    if (i + 1 >= argv.length) die(`${flag} needs a value`);
    return argv[i + 1];
  };
  const int = (v, flag, min) => {
    if (!/^\d+$/.test(v) || Number(v) < min) die(`${flag}: expected an integer >= ${min}, got "${v}"`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    switch (a) {
      case '--port': cfg.port = int(need(i, a), a, 0); i++; break;
      case '--no-auth': cfg.auth = false; break;
      case '--bucket': cfg.buckets.push(need(i, a)); i++; break;
      case '--job': {
        const v = need(i, a); i++;
        const eq = v.indexOf('=');
        const name = eq < 0 ? v : v.slice(0, eq);
        cfg.jobs.push(name);
        if (eq > 0) cfg.jobSa[name] = v.slice(eq + 1);
        break;
      }
      case '--service-account': {
        const v = need(i, a); i++;
        const eq = v.indexOf('=');
        cfg.serviceAccounts.push({ email: eq < 0 ? v : v.slice(0, eq), condition: eq < 0 ? null : v.slice(eq + 1) });
        break;
      }
      case '--executor': cfg.executor = need(i, a); i++; break;
      case '--env': {
        const v = need(i, a); i++;
        const eq = v.indexOf('=');
        if (eq <= 0) die('--env expects NAME=VALUE');
        cfg.env[v.slice(0, eq)] = v.slice(eq + 1);
        break;
      }
      case '--instant': cfg.instant = true; break;
      case '--bwrap': cfg.bwrap = true; break;
      case '--no-bwrap': cfg.bwrap = false; break;
      case '--test-key-file': cfg.keyFiles.push(need(i, a)); i++; break;
      case '--token-ttl': cfg.tokenTtl = int(need(i, a), a, 1); i++; break;
      case '--max-retries': cfg.maxRetries = int(need(i, a), a, 0); i++; break;
      case '--max-running-tasks': cfg.maxRunningTasks = int(need(i, a), a, 1); i++; break;
      case '--kill-grace': cfg.killGraceMs = int(need(i, a), a, 0) * 1000; i++; break;
      case '--max-executions': cfg.maxExecutions = int(need(i, a), a, 1); i++; break;
      case '--start-latency': case '--latency': {
        const v = need(i, a); i++;
        const l = parseLatency(v);
        if (l === undefined) die(`${a}: expected a duration (8s, 500ms, 1.5s, 2m) or a range [MIN,MAX], got "${v}"`);
        cfg[a === '--latency' ? 'latency' : 'startLatency'] = l;
        break;
      }
      case '--emit-defaults': cfg.emitDefaults = true; break;
      case '--state-dir': cfg.stateDir = path.resolve(need(i, a)); i++; break;
      case '--verbose': cfg.verbose = true; break;
      case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0); break;
      default: die(`unknown argument: ${a}\n${USAGE}`);
    }
  }
  if (cfg.port === null) die(`--port is required\n${USAGE}`);
  if (cfg.buckets.length === 0) cfg.buckets.push('sandbox-test');
  if (cfg.jobs.length === 0) cfg.jobs.push('sandbox');
  if (!cfg.executor) cfg.executor = process.env.CLOUDRUN_SANDBOX_EXECUTOR || 'cloudrun-sandbox-executor';
  return cfg;
}

// Durations of --start-latency and --latency: "8s", "500ms", "1.5s", "2m", "0",
// or a range "[2s,9s]" (uniform draw).  Returns {lo, hi, text} in ms, null for
// zero (off), undefined when malformed.  At most 1 h.
function parseDurationMs(text) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(text).trim());
  if (!m || (m[2] === undefined && Number(m[1]) !== 0)) return undefined;
  const ms = Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60000 }[m[2] || 'ms']);
  return ms <= 3600 * 1000 ? ms : undefined;
}

function parseLatency(text) {
  const t = String(text).trim();
  const r = /^\[([^,\]]+),([^,\]]+)\]$/.exec(t);
  const lo = parseDurationMs(r ? r[1] : t), hi = r ? parseDurationMs(r[2]) : lo;
  if (lo === undefined || hi === undefined || lo > hi) return undefined;
  if (hi === 0) return null;
  return { lo, hi, text: t };
}

// drawLatency picks a delay (ms) from a parsed latency (null: 0).
function drawLatency(l) {
  if (!l) return 0;
  return l.lo + Math.floor(Math.random() * (l.hi - l.lo + 1));
}

function die(msg) {
  process.stderr.write(`emulator: ${msg}\n`);
  process.exit(2);
}

function log(...parts) {
  process.stderr.write(`[emulator ${new Date().toISOString()}] ${parts.join(' ')}\n`);
}

const CFG = parseArgs(process.argv.slice(2));
// The latencies in force (--latency, --start-latency; POST /_emulator/latency changes them).
const LATENCY = { latency: CFG.latency, start: CFG.startLatency };

// Execution lifecycle lines; left out in --instant mode (benchmarks) unless
// --verbose.
function logExec(...parts) {
  if (CFG.verbose || !CFG.instant) log(...parts);
}
let PORT = 0;                       // set once listening
const baseUrl = () => `http://127.0.0.1:${PORT}`;

// ===========================================================================
// 2. Utilities
// ===========================================================================

const nowIso = (ms = Date.now()) => new Date(ms).toISOString();

function randomId(n, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789') {
  const bytes = crypto.randomBytes(n);
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[bytes[i] % alphabet.length];
  return s;
}

// CRC32C (Castagnoli), as GCS computes it; reported as base64 of the
// big-endian 32-bit value.
const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = (c & 1) ? ((c >>> 1) ^ 0x82F63B78) : (c >>> 1);
    t[i] = c >>> 0;
  }
  return t;
})();

function crc32c(buf) {
  let c = 0xFFFFFFFF;
  for (let i = 0; i < buf.length; i++) c = CRC32C_TABLE[(c ^ buf[i]) & 0xFF] ^ (c >>> 8);
  return (c ^ 0xFFFFFFFF) >>> 0;
}

function crc32cBase64(buf) {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc32c(buf));
  return b.toString('base64');
}

const md5Base64 = (buf) => crypto.createHash('md5').update(buf).digest('base64');

// Compare strings by Unicode code point (= UTF-8 byte order, as GCS sorts).
function cmpNames(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i), y = b.codePointAt(i);
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xFFFF) i++;
  }
  return a.length < b.length ? -1 : (a.length > b.length ? 1 : 0);
}

// Strictly increasing generations (microseconds since the epoch).
let lastGeneration = 0;
function nextGeneration() {
  let g = Date.now() * 1000;
  if (g <= lastGeneration) g = lastGeneration + 1;
  lastGeneration = g;
  return g;
}

// A proto-style varint, for GCS-like etags.
function varint(n) {
  let v = BigInt(n);
  const out = [];
  do {
    let byte = Number(v & 0x7Fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

// proto3 JSON leaves out fields that hold their default value; Google's REST
// front end does the same.  Arrays of messages are kept element-wise.
function pruneDefaults(v) {
  if (CFG.emitDefaults) return v;
  if (Array.isArray(v)) return v.map(pruneDefaults);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined || x === null || x === 0 || x === false || x === '') continue;
      if (Array.isArray(x) && x.length === 0) continue;
      out[k] = pruneDefaults(x);
    }
    return out;
  }
  return v;
}

// Enum values, for `$alt=json;enum-encoding=int`.
const ENUMS = {
  state: { STATE_UNSPECIFIED: 0, CONDITION_PENDING: 1, CONDITION_RECONCILING: 2, CONDITION_FAILED: 3, CONDITION_SUCCEEDED: 4 },
  severity: { SEVERITY_UNSPECIFIED: 0, ERROR: 1, WARNING: 2, INFO: 3 },
  executionReason: { EXECUTION_REASON_UNDEFINED: 0, JOB_STATUS_SERVICE_POLLING_ERROR: 1, NON_ZERO_EXIT_CODE: 2, CANCELLED: 3, CANCELLING: 4, DELETED: 5 },
  reason: { COMMON_REASON_UNDEFINED: 0, UNKNOWN: 1, WAITING_FOR_OPERATION: 13, INTERNAL: 16 },
  launchStage: { LAUNCH_STAGE_UNSPECIFIED: 0, EARLY_ACCESS: 1, ALPHA: 2, BETA: 3, GA: 4, DEPRECATED: 5 },
  executionEnvironment: { EXECUTION_ENVIRONMENT_UNSPECIFIED: 0, EXECUTION_ENVIRONMENT_GEN1: 1, EXECUTION_ENVIRONMENT_GEN2: 2 },
  completionStatus: { COMPLETION_STATUS_UNSPECIFIED: 0, EXECUTION_SUCCEEDED: 1, EXECUTION_FAILED: 2, EXECUTION_RUNNING: 3, EXECUTION_PENDING: 4, EXECUTION_CANCELLED: 5 },
};

function intEnums(v) {
  if (Array.isArray(v)) return v.map(intEnums);
  if (v && typeof v === 'object') {
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (typeof x === 'string' && ENUMS[k] && x in ENUMS[k]) out[k] = ENUMS[k][x];
      else out[k] = intEnums(x);
    }
    return out;
  }
  return v;
}

// Duration in proto3 JSON form ("3.5s").
const DURATION_RE = /^\d+(\.\d{1,9})?s$/;
const durationSeconds = (s) => Number(s.slice(0, -1));
const fmtDuration = (sec) => `${sec}s`;

// ===========================================================================
// 3. Errors
// ===========================================================================

const RPC_CODES = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5,
  ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9,
  ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  DATA_LOSS: 15, UNAUTHENTICATED: 16,
};

class ApiError extends Error {
  // kind: 'run' (google.rpc.Status style) or 'gcs' (JSON API style) or 'oauth'
  constructor(httpCode, status, message, extra = {}) {
    super(message);
    this.httpCode = httpCode;
    this.status = status;     // run: canonical status; gcs: reason; oauth: error
    this.extra = extra;
  }
}

const runErr = (code, status, message, details) => new ApiError(code, status, message, { details });
const gcsErr = (code, reason, message, more) => new ApiError(code, reason, message, more || {});

function badField(fieldPath, name) {
  const msg = `Invalid JSON payload received. Unknown name "${name}"${fieldPath ? ` at '${fieldPath}'` : ''}: Cannot find field.`;
  return runErr(400, 'INVALID_ARGUMENT', msg, [{
    '@type': 'type.googleapis.com/google.rpc.BadRequest',
    fieldViolations: [{ field: fieldPath, description: msg }],
  }]);
}

function badValue(fieldPath, message) {
  return runErr(400, 'INVALID_ARGUMENT', message, [{
    '@type': 'type.googleapis.com/google.rpc.BadRequest',
    fieldViolations: [{ field: fieldPath, description: message }],
  }]);
}

function errorBody(api, e) {
  if (api === 'gcs') {
    return {
      error: {
        code: e.httpCode, message: e.message,
        errors: [{ domain: e.extra.domain || 'global', reason: e.status, message: e.message,
          ...(e.extra.locationType ? { locationType: e.extra.locationType, location: e.extra.location } : {}) }],
      },
    };
  }
  if (api === 'oauth') return { error: e.status, error_description: e.message };
  return { error: { code: e.httpCode, message: e.message, status: e.status, details: e.extra.details || [] } };
}

// ===========================================================================
// 4. Stats and faults
// ===========================================================================

let STATS;
// BY_NAME: object name (or a list request's prefix) -> {requests, by_method,
// bytes_uploaded, bytes_downloaded}, for GET /_emulator/stats?prefix=P.
// Bounded: past BY_NAME_MAX names, new names count in the totals only.
const BY_NAME = new Map();
const BY_NAME_MAX = 200000;
let byNameOverflow = 0;
// resetStats clears every counter; `running` stays, as it is a gauge.
function resetStats() {
  const running = STATS ? STATS.executions.running : 0;
  STATS = {
    calls: {}, runs_by_arg: {}, runs_by_job: {}, jobs_run_calls: 0, tasks_per_run: [],
    executions: { running, succeeded: 0, failed: 0, cancelled: 0 },
    faults_injected: {},
    gcs: { requests: 0, by_method: {}, bytes_uploaded: 0, bytes_downloaded: 0 },
    run_requests: 0,
    since: nowIso(),
  };
  BY_NAME.clear();
  byNameOverflow = 0;
}

// countByName attributes one finished GCS request to its object name.
function countByName(ctx) {
  const name = ctx.objectName;
  if (name === undefined || name === null) return;
  let e = BY_NAME.get(name);
  if (!e) {
    if (BY_NAME.size >= BY_NAME_MAX) { byNameOverflow++; return; }
    e = { requests: 0, by_method: {}, bytes_uploaded: 0, bytes_downloaded: 0 };
    BY_NAME.set(name, e);
  }
  e.requests++;
  e.by_method[ctx.method] = (e.by_method[ctx.method] || 0) + 1;
  e.bytes_uploaded += ctx.uploadBytes || 0;
  e.bytes_downloaded += ctx.downloadBytes || 0;
}

// statsForPrefix sums BY_NAME over the names that start with prefix.
function statsForPrefix(prefix) {
  const out = { prefix, requests: 0, by_method: {}, bytes_uploaded: 0, bytes_downloaded: 0, names: 0 };
  for (const [name, e] of BY_NAME) {
    if (!name.startsWith(prefix)) continue;
    out.names++;
    out.requests += e.requests;
    out.bytes_uploaded += e.bytes_uploaded;
    out.bytes_downloaded += e.bytes_downloaded;
    for (const [m, n] of Object.entries(e.by_method)) out.by_method[m] = (out.by_method[m] || 0) + n;
  }
  if (byNameOverflow) out.incomplete = true;
  return out;
}
resetStats();

const MAX_TASKS_PER_RUN_KEPT = 100000;

let FAULTS = {};
let faultRandom = Math.random;

// Deterministic PRNG for faults with a seed.
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FAULT_KINDS = new Set(['403', '429', '500', '503', 'reset', 'reset_after', 'hang']);

// Requests held by the "hang" fault: never answered; their sockets are
// closed (as a reset) when the faults are next set or cleared.
const HUNG = new Set();
function releaseHung() {
  for (const sock of HUNG) sock.destroy();
  HUNG.clear();
}

function setFaults(body) {
  const allowed = new Set(['rate_429', 'rate_500', 'rate_503', 'rate_reset', 'rate_reset_after',
    'rate_hang', 'delay_ms', 'endpoints', 'seed', 'sequence']);
  for (const k of Object.keys(body)) if (!allowed.has(k)) throw runErr(400, 'INVALID_ARGUMENT', `unknown fault setting "${k}"`);
  const f = {};
  for (const k of ['rate_429', 'rate_500', 'rate_503', 'rate_reset', 'rate_reset_after', 'rate_hang']) {
    if (body[k] === undefined) continue;
    if (typeof body[k] !== 'number' || !(body[k] >= 0 && body[k] <= 1)) throw runErr(400, 'INVALID_ARGUMENT', `${k} must be a number in [0,1]`);
    f[k] = body[k];
  }
  if (body.delay_ms !== undefined) {
    let d = body.delay_ms;
    if (typeof d === 'number') d = [d, d];
    if (!Array.isArray(d) || d.length !== 2 || !d.every((x) => typeof x === 'number' && x >= 0) || d[0] > d[1]) {
      throw runErr(400, 'INVALID_ARGUMENT', 'delay_ms must be a number or [min,max]');
    }
    f.delay_ms = d;
  }
  if (body.endpoints !== undefined) {
    if (!Array.isArray(body.endpoints) || !body.endpoints.every((x) => typeof x === 'string')) {
      throw runErr(400, 'INVALID_ARGUMENT', 'endpoints must be an array of strings');
    }
    f.endpoints = body.endpoints;
  }
  if (body.sequence !== undefined) {
    if (!Array.isArray(body.sequence)) throw runErr(400, 'INVALID_ARGUMENT', 'sequence must be an array');
    f.sequence = body.sequence.map((s, i) => {
      if (!s || typeof s !== 'object') throw runErr(400, 'INVALID_ARGUMENT', `sequence[${i}] must be an object`);
      for (const k of Object.keys(s)) {
        if (!['endpoint', 'fault', 'count'].includes(k)) throw runErr(400, 'INVALID_ARGUMENT', `sequence[${i}]: unknown key "${k}"`);
      }
      const fault = String(s.fault);
      if (!FAULT_KINDS.has(fault) && !/^delay:\d+$/.test(fault)) {
        throw runErr(400, 'INVALID_ARGUMENT', `sequence[${i}].fault must be one of 403, 429, 500, 503, reset, reset_after, hang, delay:MS`);
      }
      const count = s.count === undefined ? 1 : s.count;
      if (!Number.isInteger(count) || count < 1) throw runErr(400, 'INVALID_ARGUMENT', `sequence[${i}].count must be a positive integer`);
      return { endpoint: s.endpoint === undefined ? null : String(s.endpoint), fault, count };
    });
  }
  if (body.seed !== undefined) {
    if (!Number.isInteger(body.seed)) throw runErr(400, 'INVALID_ARGUMENT', 'seed must be an integer');
    f.seed = body.seed;
  }
  releaseHung();
  FAULTS = f;
  faultRandom = f.seed !== undefined ? mulberry32(f.seed) : Math.random;
}

function endpointMatches(list, method, name) {
  return list.includes(name) || list.includes(`${method} ${name}`);
}

// Decide what happens to one request: {delay, fault} (fault may be null).
function pickFault(method, name) {
  let delay = 0, fault = null;
  const seq = FAULTS.sequence;
  if (seq) {
    const i = seq.findIndex((s) => s.endpoint === null || endpointMatches([s.endpoint], method, name));
    if (i >= 0) {
      const s = seq[i];
      if (--s.count === 0) seq.splice(i, 1);
      if (s.fault.startsWith('delay:')) delay = Number(s.fault.slice(6));
      else fault = s.fault;
      return { delay, fault };
    }
  }
  if (FAULTS.endpoints && !endpointMatches(FAULTS.endpoints, method, name)) return { delay, fault };
  if (FAULTS.delay_ms) {
    const [lo, hi] = FAULTS.delay_ms;
    delay = lo + Math.floor(faultRandom() * (hi - lo + 1));
  }
  let r = faultRandom();
  for (const [k, kind] of [['rate_reset', 'reset'], ['rate_reset_after', 'reset_after'],
    ['rate_hang', 'hang'], ['rate_429', '429'], ['rate_500', '500'], ['rate_503', '503']]) {
    const p = FAULTS[k] || 0;
    if (r < p) { fault = kind; break; }
    r -= p;
  }
  return { delay, fault };
}

function faultError(api, kind) {
  if (kind === '403') {
    // A denied call, as when the caller's service account lacks a role.
    if (api === 'gcs') return gcsErr(403, 'forbidden', 'sandbox-caller@test-project.iam.gserviceaccount.com does not have storage.objects.create access to the Google Cloud Storage object. Permission \'storage.objects.create\' denied on resource (or it may not exist).');
    if (api === 'oauth') return new ApiError(403, 'access_denied', 'Access denied.');
    return runErr(403, 'PERMISSION_DENIED', "Permission 'run.jobs.runWithOverrides' denied on resource (or it may not exist).");
  }
  if (kind === '429') {
    if (api === 'gcs') return gcsErr(429, 'rateLimitExceeded', 'The rate of change requests to the object exceeds the rate limit. Please reduce the rate of create, update, and delete requests.', { domain: 'usageLimits' });
    if (api === 'oauth') return new ApiError(429, 'rate_limit_exceeded', 'Rate limit exceeded.');
    return runErr(429, 'RESOURCE_EXHAUSTED', "Quota exceeded for quota metric 'Job run requests' and limit 'Job run requests per minute per region' of service 'run.googleapis.com'.");
  }
  if (kind === '500') {
    if (api === 'gcs') return gcsErr(500, 'backendError', 'Internal Error');
    if (api === 'oauth') return new ApiError(500, 'internal_failure', 'Internal error.');
    return runErr(500, 'INTERNAL', 'Internal error encountered.');
  }
  if (api === 'gcs') return gcsErr(503, 'backendError', 'Backend Error');
  if (api === 'oauth') return new ApiError(503, 'temporarily_unavailable', 'The service is currently unavailable.');
  return runErr(503, 'UNAVAILABLE', 'The service is currently unavailable.');
}

// ===========================================================================
// 5. Auth
// ===========================================================================

const SCOPE_CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';
const DEFAULT_SA = 'emulator-default@emulator-project.iam.gserviceaccount.com';

// Service accounts (--service-account, POST /_emulator/service-accounts):
// email -> {email, condition, prefixes: [resource-name prefix] | null, server, port}.
// A token of an account with a condition may only touch the Cloud Storage
// objects whose resource name ("projects/_/buckets/B/objects/NAME") the
// condition allows; listing and bucket calls (resource "projects/_/buckets/B")
// and every Cloud Run call are denied, as IAM does for a role granted on such
// a condition.  Each account has a metadata server of its own (a port on
// 127.0.0.1), which its jobs' tasks are pointed at.
const SERVICE_ACCOUNTS = new Map();

// parseCondition turns 'resource.name.startsWith("X") || ...' into [X, ...].
function parseCondition(text) {
  const out = [];
  for (const term of String(text).split('||')) {
    const m = /^\s*resource\.name\.startsWith\(\s*"([^"\\]*)"\s*\)\s*$/.exec(term);
    if (!m) return null;
    out.push(m[1]);
  }
  return out;
}

// defineServiceAccount creates or updates an account; resolves once its metadata server listens.
function defineServiceAccount(email, condition) {
  if (typeof email !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(email)) throw new ApiError(400, 'invalid', `not a service-account email: ${email}`);
  let prefixes = null;
  if (condition !== null && condition !== undefined) {
    prefixes = parseCondition(condition);
    if (!prefixes) throw new ApiError(400, 'invalid', `unsupported condition (only resource.name.startsWith("...") terms joined by ||): ${condition}`);
  }
  let sa = SERVICE_ACCOUNTS.get(email);
  if (sa) {
    sa.condition = condition || null;
    sa.prefixes = prefixes;
    return Promise.resolve(sa);
  }
  sa = { email, condition: condition || null, prefixes, server: null, port: 0 };
  SERVICE_ACCOUNTS.set(email, sa);
  return new Promise((resolve, reject) => {
    sa.server = http.createServer((req, res) => {
      const rawUrl = req.url || '/';
      const qi = rawUrl.indexOf('?');
      const ctx = { req, res, path: qi >= 0 ? rawUrl.slice(0, qi) : rawUrl, query: new URLSearchParams(qi >= 0 ? rawUrl.slice(qi + 1) : '') };
      STATS.calls['GET metadata'] = (STATS.calls['GET metadata'] || 0) + 1;
      if (!/^\/computeMetadata\/v1(\/.*)?$/.test(ctx.path)) { res.writeHead(404); res.end('Not Found\n'); return; }
      handleMetadata(ctx, sa.email);
    });
    sa.server.on('error', reject);
    sa.server.listen(0, '127.0.0.1', () => { sa.port = sa.server.address().port; resolve(sa); });
  });
}

function serviceAccountJson(sa) {
  return { email: sa.email, condition: sa.condition, metadata_host: `127.0.0.1:${sa.port}` };
}

// metadataHostFor is the metadata server a job's tasks use: its account's, or the main one.
function metadataHostFor(jobName) {
  const job = JOBS.get(jobName);
  const sa = job && job.serviceAccount ? SERVICE_ACCOUNTS.get(job.serviceAccount) : null;
  return sa && sa.port ? `127.0.0.1:${sa.port}` : `127.0.0.1:${PORT}`;
}

// authorize checks a Cloud Storage call against the caller's account's condition;
// object null means a bucket-level call (list, bucket metadata).
function authorize(ctx, bucket, object, permission) {
  const p = ctx.principal;
  const sa = p ? SERVICE_ACCOUNTS.get(p.email) : null;
  if (!sa || !sa.prefixes) return;
  const resource = object === null ? `projects/_/buckets/${bucket}` : `projects/_/buckets/${bucket}/objects/${object}`;
  if (sa.prefixes.some((x) => resource.startsWith(x))) return;
  throw gcsErr(403, 'forbidden', `${p.email} does not have ${permission} access to the Google Cloud Storage ${object === null ? 'bucket' : 'object'}. Permission '${permission}' denied on resource (or it may not exist).`);
}
const TOKENS = new Map();            // access token -> {expiresAt, scopes, email}
const KEYS = [];                     // {publicKey, email, keyId}

function loadKeyFile(file) {
  let text;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) { die(`--test-key-file ${file}: ${e.message}`); }
  let pem = null, email = null, keyId = null;
  if (text.trimStart().startsWith('-----BEGIN')) {
    pem = text;
  } else {
    let j;
    try { j = JSON.parse(text); } catch (e) { die(`--test-key-file ${file}: not JSON or PEM`); }
    pem = j.private_key || j.public_key;
    email = j.client_email || null;
    keyId = j.private_key_id || null;
    if (!pem) die(`--test-key-file ${file}: no private_key or public_key`);
  }
  let publicKey;
  try { publicKey = crypto.createPublicKey(pem); } catch (e) { die(`--test-key-file ${file}: ${e.message}`); }
  KEYS.push({ publicKey, email, keyId });
}

function issueToken(scopes, email) {
  if (TOKENS.size > 50000) {
    const t = Date.now();
    for (const [k, v] of TOKENS) if (v.expiresAt <= t) TOKENS.delete(k);
  }
  const token = 'ya29.emu-' + crypto.randomBytes(24).toString('base64url');
  TOKENS.set(token, { expiresAt: Date.now() + CFG.tokenTtl * 1000, scopes, email });
  return { access_token: token, expires_in: CFG.tokenTtl, token_type: 'Bearer' };
}

const b64urlJson = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));

function validAudiences() {
  return new Set([
    `${baseUrl()}/token`, `http://localhost:${PORT}/token`,
    'https://oauth2.googleapis.com/token', 'https://www.googleapis.com/oauth2/v4/token',
    'https://accounts.google.com/o/oauth2/token',
  ]);
}

// POST /token: the JWT bearer grant (RFC 7523) as Google implements it.
function handleToken(ctx) {
  const ct = (ctx.req.headers['content-type'] || '').toLowerCase();
  let form;
  const text = ctx.body.toString('utf8');
  if (ct.startsWith('application/json')) {
    try { form = JSON.parse(text); } catch { throw new ApiError(400, 'invalid_request', 'Malformed JSON body.'); }
  } else {
    form = Object.fromEntries(new URLSearchParams(text));
  }
  const oauth = (error, desc) => new ApiError(400, error, desc);
  if (!form.grant_type) throw oauth('invalid_request', 'Missing required parameter: grant_type');
  if (form.grant_type !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
    throw oauth('unsupported_grant_type', `Invalid grant_type: ${form.grant_type}`);
  }
  if (!form.assertion) throw oauth('invalid_request', 'Missing required parameter: assertion');
  const parts = String(form.assertion).split('.');
  if (parts.length !== 3) throw oauth('invalid_grant', 'Invalid JWT: malformed token.');
  let header, claims;
  try { header = b64urlJson(parts[0]); claims = b64urlJson(parts[1]); } catch {
    throw oauth('invalid_grant', 'Invalid JWT: malformed token.');
  }
  if (header.alg !== 'RS256') throw oauth('invalid_grant', 'Invalid JWT: unsupported signing algorithm.');
  if (typeof claims.iss !== 'string' || !claims.iss) throw oauth('invalid_grant', 'Invalid JWT: missing iss.');
  if (KEYS.length > 0) {
    const candidates = KEYS.filter((k) => !k.email || k.email === claims.iss);
    if (candidates.length === 0) throw oauth('invalid_grant', 'Invalid grant: account not found');
    const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
    const sig = Buffer.from(parts[2], 'base64url');
    const ok = candidates.some((k) => (!header.kid || !k.keyId || header.kid === k.keyId)
      && crypto.verify('RSA-SHA256', signed, k.publicKey, sig));
    if (!ok) throw oauth('invalid_grant', 'Invalid JWT Signature.');
  }
  if (!validAudiences().has(claims.aud)) throw oauth('invalid_grant', 'Invalid JWT: Failed audience check.');
  const now = Math.floor(Date.now() / 1000);
  const { iat, exp } = claims;
  if (!Number.isInteger(iat) || !Number.isInteger(exp) || exp <= iat || exp - iat > 3600
      || exp <= now || iat > now + 300) {
    throw oauth('invalid_grant', 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.');
  }
  if (typeof claims.scope !== 'string' || !claims.scope.trim()) {
    throw oauth('invalid_scope', 'Invalid OAuth scope or ID token audience provided.');
  }
  return sendJson(ctx, 200, issueToken(claims.scope.trim().split(/\s+/), claims.iss));
}

// GET /computeMetadata/v1/...: a small GCE metadata server, for account email
// (the main port's: the unrestricted default account).
function handleMetadata(ctx, email = DEFAULT_SA) {
  const { req, res } = ctx;
  if (req.headers['metadata-flavor'] !== 'Google' || req.headers['x-forwarded-for']) {
    res.writeHead(403, { 'Content-Type': 'text/html; charset=UTF-8', 'Metadata-Flavor': 'Google' });
    res.end('Missing required header "Metadata-Flavor": "Google"\n');
    return;
  }
  const p = ctx.path.replace(/\/+$/, '');
  const text = (s) => { res.writeHead(200, { 'Content-Type': 'application/text', 'Metadata-Flavor': 'Google' }); res.end(s); };
  if (p === '/computeMetadata/v1/instance/service-accounts/default/token') {
    const scopes = ctx.query.get('scopes') ? ctx.query.get('scopes').split(',') : [SCOPE_CLOUD_PLATFORM];
    const tok = issueToken(scopes, email);
    res.writeHead(200, { 'Content-Type': 'application/json', 'Metadata-Flavor': 'Google' });
    res.end(JSON.stringify(tok));
    return;
  }
  if (p === '/computeMetadata/v1/instance/service-accounts/default/email') return text(email);
  if (p === '/computeMetadata/v1/project/project-id') return text('emulator-project');
  if (p === '/computeMetadata/v1/project/numeric-project-id') return text('123456789012');
  if (p === '/computeMetadata/v1/instance/region') return text('projects/123456789012/regions/us-central1');
  if (p === '/computeMetadata/v1' || p === '/computeMetadata/v1/instance') return text('');
  res.writeHead(404, { 'Content-Type': 'text/html; charset=UTF-8', 'Metadata-Flavor': 'Google' });
  res.end('Not Found\n');
}

// Google APIs also accept a "self-signed JWT" as the bearer token: a JWT the
// service account signs itself, with a scope or an audience claim (the official
// clients send one when given a service-account key and useJWTAccessWithScope).
const SELF_SIGNED = new Map();       // jwt -> {expiresAt, scopes}
function selfSignedJwt(token) {
  if (KEYS.length === 0 || !token.startsWith('eyJ')) return null;
  const hit = SELF_SIGNED.get(token);
  if (hit) return hit;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  let header, claims;
  try { header = b64urlJson(parts[0]); claims = b64urlJson(parts[1]); } catch { return null; }
  if (header.alg !== 'RS256' || typeof claims.iss !== 'string') return null;
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  const sig = Buffer.from(parts[2], 'base64url');
  const ok = KEYS.some((k) => (!k.email || k.email === claims.iss) && (!header.kid || !k.keyId || header.kid === k.keyId)
    && crypto.verify('RSA-SHA256', signed, k.publicKey, sig));
  if (!ok) return null;
  const now = Math.floor(Date.now() / 1000);
  if (!Number.isInteger(claims.exp) || !Number.isInteger(claims.iat) || claims.exp - claims.iat > 3600 || claims.iat > now + 300) return null;
  let scopes;
  if (typeof claims.scope === 'string' && claims.scope.trim()) scopes = claims.scope.trim().split(/\s+/);
  else if (typeof claims.aud === 'string' && /^https?:\/\//.test(claims.aud)) scopes = [SCOPE_CLOUD_PLATFORM];
  else return null;
  const entry = { expiresAt: claims.exp * 1000, scopes, email: claims.iss };
  if (SELF_SIGNED.size > 10000) SELF_SIGNED.clear();
  SELF_SIGNED.set(token, entry);
  return entry;
}

// Check the bearer token of a Cloud Run or GCS request.
function checkAuth(ctx) {
  if (!CFG.auth) return;
  const h = ctx.req.headers.authorization || '';
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  const gcs = ctx.api === 'gcs';
  if (!m) {
    if (gcs) throw gcsErr(401, 'required', 'Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object. Permission \'storage.objects.get\' denied on resource (or it may not exist).', { locationType: 'header', location: 'Authorization' });
    throw runErr(401, 'UNAUTHENTICATED', 'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.');
  }
  const t = TOKENS.get(m[1]) || selfSignedJwt(m[1]);
  if (!t || t.expiresAt <= Date.now()) {
    if (gcs) throw gcsErr(401, 'authError', 'Invalid Credentials', { locationType: 'header', location: 'Authorization' });
    throw runErr(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.');
  }
  const ok = t.scopes.some((s) => s === SCOPE_CLOUD_PLATFORM
    || (gcs && s.startsWith('https://www.googleapis.com/auth/devstorage.')));
  if (!ok) {
    if (gcs) throw gcsErr(403, 'insufficientPermissions', 'Insufficient Permission');
    throw runErr(403, 'PERMISSION_DENIED', 'Request had insufficient authentication scopes.');
  }
  ctx.principal = t;
  const sa = SERVICE_ACCOUNTS.get(t.email);
  if (!gcs && sa && sa.prefixes) {
    throw runErr(403, 'PERMISSION_DENIED', `Permission denied on resource (or it may not exist): ${t.email} has no Cloud Run role.`);
  }
}

// ===========================================================================
// 6. GCS
// ===========================================================================

// bucket name -> {name, created, objects: Map(name -> obj), sorted: string[]|null}
const BUCKETS = new Map();
const RESUMABLE = new Map();         // upload_id -> session
const MAX_UPLOAD = 1024 * 1024 * 1024;

function initBuckets() {
  BUCKETS.clear();
  for (const b of CFG.buckets) BUCKETS.set(b, { name: b, created: Date.now(), objects: new Map(), sorted: null });
}

function getBucket(name) {
  const b = BUCKETS.get(name);
  if (!b) throw gcsErr(404, 'notFound', 'The specified bucket does not exist.');
  return b;
}

// Percent-decode a bucket or object name taken from a URL path.
function decName(s) {
  try { return decodeURIComponent(s); } catch { throw gcsErr(400, 'invalid', 'Invalid percent-encoding in the resource name.'); }
}

function encName(name) {
  return encodeURIComponent(name);
}

function objectResource(b, o) {
  const etag = Buffer.from([0x08, ...varint(o.generation), 0x10, ...varint(o.metageneration)]).toString('base64');
  const r = {
    kind: 'storage#object',
    id: `${b.name}/${o.name}/${o.generation}`,
    selfLink: `${baseUrl()}/storage/v1/b/${b.name}/o/${encName(o.name)}`,
    mediaLink: `${baseUrl()}/download/storage/v1/b/${b.name}/o/${encName(o.name)}?generation=${o.generation}&alt=media`,
    name: o.name,
    bucket: b.name,
    generation: String(o.generation),
    metageneration: String(o.metageneration),
    contentType: o.contentType,
    storageClass: 'STANDARD',
    size: String(o.data.length),
    md5Hash: o.md5Hash,
    crc32c: o.crc32c,
    etag,
    timeCreated: o.timeCreated,
    updated: o.timeCreated,
    timeStorageClassUpdated: o.timeCreated,
    timeFinalized: o.timeCreated,
  };
  for (const k of ['contentEncoding', 'contentDisposition', 'contentLanguage', 'cacheControl', 'customTime']) {
    if (o[k] !== undefined) r[k] = o[k];
  }
  if (o.metadata && Object.keys(o.metadata).length) r.metadata = o.metadata;
  return r;
}

function bucketResource(b) {
  return {
    kind: 'storage#bucket', selfLink: `${baseUrl()}/storage/v1/b/${b.name}`, id: b.name, name: b.name,
    projectNumber: '123456789012', metageneration: '1', location: 'US-CENTRAL1', storageClass: 'STANDARD',
    etag: 'CAE=', timeCreated: nowIso(b.created), updated: nowIso(b.created), locationType: 'region',
    iamConfiguration: { uniformBucketLevelAccess: { enabled: true }, publicAccessPrevention: 'enforced' },
  };
}

// Parse the generation preconditions of a request.
function parsePreconditions(q) {
  const out = {};
  for (const k of ['ifGenerationMatch', 'ifGenerationNotMatch', 'ifMetagenerationMatch', 'ifMetagenerationNotMatch']) {
    const v = q.get(k);
    if (v === null) continue;
    if (!/^-?\d+$/.test(v)) throw gcsErr(400, 'invalid', `Invalid argument for parameter ${k}: ${v}`);
    out[k] = Number(v);
  }
  return out;
}

// Check preconditions against the live object (or undefined).  Reads report a
// failed *NotMatch as 304, as GCS does; writes report 412.
function checkPreconditions(pre, o, isRead) {
  const gen = o ? o.generation : 0;
  const fail = (what) => gcsErr(412, 'conditionNotMet', `At least one of the pre-conditions you specified did not hold.`, { locationType: 'header', location: what });
  if (pre.ifGenerationMatch !== undefined && pre.ifGenerationMatch !== gen) throw fail('If-Match');
  if (pre.ifMetagenerationMatch !== undefined && (!o || pre.ifMetagenerationMatch !== o.metageneration)) throw fail('If-Match');
  if (pre.ifGenerationNotMatch !== undefined && pre.ifGenerationNotMatch === gen) {
    if (isRead) throw new ApiError(304, 'notModified', 'Not Modified');
    throw fail('If-None-Match');
  }
  if (pre.ifMetagenerationNotMatch !== undefined && o && pre.ifMetagenerationNotMatch === o.metageneration) {
    if (isRead) throw new ApiError(304, 'notModified', 'Not Modified');
    throw fail('If-None-Match');
  }
}

function validateObjectName(name) {
  if (name === null || name === undefined || name === '') throw gcsErr(400, 'required', 'Required');
  if (Buffer.byteLength(name) > 1024) throw gcsErr(400, 'invalid', 'The object name is too long.');
  if (/[\r\n]/.test(name) || name === '.' || name === '..' || name.startsWith('.well-known/acme-challenge/')) {
    throw gcsErr(400, 'invalid', 'The specified object name is not valid.');
  }
}

function getLiveObject(b, name, q) {
  const o = b.objects.get(name);
  if (!o) throw gcsErr(404, 'notFound', `No such object: ${b.name}/${name}`);
  const g = q.get('generation');
  if (g !== null && String(o.generation) !== g) throw gcsErr(404, 'notFound', `No such object: ${b.name}/${name}`);
  return o;
}

// Create a new generation of an object (all uploads end here).
function storeObject(b, name, data, meta, pre) {
  validateObjectName(name);
  checkPreconditions(pre, b.objects.get(name), false);
  const md5Hash = md5Base64(data);
  const crc = crc32cBase64(data);
  if (meta.md5Hash !== undefined && meta.md5Hash !== md5Hash) {
    throw gcsErr(400, 'invalid', `Provided MD5 hash "${meta.md5Hash}" doesn't match calculated MD5 hash "${md5Hash}".`);
  }
  if (meta.crc32c !== undefined && meta.crc32c !== crc) {
    throw gcsErr(400, 'invalid', `Provided CRC32C "${meta.crc32c}" doesn't match calculated CRC32C "${crc}".`);
  }
  const o = {
    name, data, generation: nextGeneration(), metageneration: 1,
    contentType: meta.contentType || 'application/octet-stream',
    md5Hash, crc32c: crc, timeCreated: nowIso(),
    metadata: meta.metadata && typeof meta.metadata === 'object' ? meta.metadata : undefined,
  };
  for (const k of ['contentEncoding', 'contentDisposition', 'contentLanguage', 'cacheControl', 'customTime']) {
    if (typeof meta[k] === 'string') o[k] = meta[k];
  }
  if (!b.objects.has(name)) b.sorted = null;
  b.objects.set(name, o);
  persistObject(b, o);
  return o;
}

function deleteObject(b, name) {
  b.objects.delete(name);
  b.sorted = null;
  persistDelete(b, name);
}

// Optional persistence (--state-dir): one data file and one metadata file per
// object, named by a hash of the object name.
function objFile(b, name) {
  return path.join(CFG.stateDir, 'objects', b.name, crypto.createHash('sha256').update(name).digest('hex'));
}
function persistObject(b, o) {
  if (!CFG.stateDir) return;
  const f = objFile(b, o.name);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f + '.data', o.data);
  const { data, ...meta } = o;
  fs.writeFileSync(f + '.json', JSON.stringify(meta));
}
function persistDelete(b, name) {
  if (!CFG.stateDir) return;
  const f = objFile(b, name);
  fs.rmSync(f + '.data', { force: true });
  fs.rmSync(f + '.json', { force: true });
}
function loadPersisted() {
  if (!CFG.stateDir) return;
  for (const b of BUCKETS.values()) {
    const dir = path.join(CFG.stateDir, 'objects', b.name);
    let files = [];
    try { files = fs.readdirSync(dir); } catch { continue; }
    for (const f of files) {
      if (!f.endsWith('.json')) continue;
      try {
        const meta = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
        meta.data = fs.readFileSync(path.join(dir, f.replace(/\.json$/, '.data')));
        b.objects.set(meta.name, meta);
        if (meta.generation > lastGeneration) lastGeneration = meta.generation;
      } catch (e) { log(`state-dir: skipping ${f}: ${e.message}`); }
    }
  }
}

// multipart/related parsing (upload with metadata).
function parseMultipart(body, contentType) {
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType || '');
  if (!m) throw gcsErr(400, 'invalid', 'Missing boundary in multipart body.');
  const delim = Buffer.from('--' + (m[1] || m[2]));
  const parts = [];
  let pos = body.indexOf(delim);
  if (pos < 0) throw gcsErr(400, 'invalid', 'Malformed multipart body.');
  for (;;) {
    pos += delim.length;
    if (body.slice(pos, pos + 2).toString() === '--') break;          // closing delimiter
    // skip the line break after the delimiter
    if (body[pos] === 0x0D && body[pos + 1] === 0x0A) pos += 2; else if (body[pos] === 0x0A) pos += 1;
    const next = body.indexOf(delim, pos);
    if (next < 0) throw gcsErr(400, 'invalid', 'Malformed multipart body.');
    let end = next;
    if (body[end - 2] === 0x0D && body[end - 1] === 0x0A) end -= 2; else if (body[end - 1] === 0x0A) end -= 1;
    const part = body.slice(pos, end);
    let hdrEnd = part.indexOf('\r\n\r\n'), sep = 4;
    if (hdrEnd < 0) { hdrEnd = part.indexOf('\n\n'); sep = 2; }
    const headers = {};
    let content;
    if (hdrEnd < 0) {
      content = part;                  // no headers at all
    } else {
      for (const line of part.slice(0, hdrEnd).toString('utf8').split(/\r?\n/)) {
        const c = line.indexOf(':');
        if (c > 0) headers[line.slice(0, c).trim().toLowerCase()] = line.slice(c + 1).trim();
      }
      content = part.slice(hdrEnd + sep);
    }
    parts.push({ headers, content });
    pos = next;
  }
  return parts;
}

function gcsUpload(ctx, bucketName) {
  const { q } = ctx;
  const b = getBucket(bucketName);
  const type = q.get('uploadType');
  const pre = parsePreconditions(q);
  if (q.get('upload_id') !== null) return resumableChunk(ctx, b);
  if (!type) throw gcsErr(400, 'invalid', 'Upload requests must include an uploadType URL parameter and a URL-encoded object name.');
  if (type === 'media') {
    const name = q.get('name');
    if (!name) throw gcsErr(400, 'required', 'Required');
    ctx.objectName = name;
    authorize(ctx, b.name, name, 'storage.objects.create');
    const o = storeObject(b, name, ctx.body, { contentType: ctx.req.headers['content-type'] }, pre);
    return sendJson(ctx, 200, objectResource(b, o));
  }
  if (type === 'multipart') {
    const parts = parseMultipart(ctx.body, ctx.req.headers['content-type']);
    if (parts.length !== 2) throw gcsErr(400, 'invalid', `Multipart upload must have exactly 2 parts, got ${parts.length}.`);
    let meta;
    try { meta = JSON.parse(parts[0].content.toString('utf8') || '{}'); } catch {
      throw gcsErr(400, 'parseError', 'Parse Error');
    }
    if (!meta || typeof meta !== 'object') throw gcsErr(400, 'parseError', 'Parse Error');
    if (!meta.contentType && parts[1].headers['content-type']) meta.contentType = parts[1].headers['content-type'];
    const name = q.get('name') || meta.name;
    ctx.objectName = String(name);
    authorize(ctx, b.name, String(name), 'storage.objects.create');
    const o = storeObject(b, name, parts[1].content, meta, pre);
    return sendJson(ctx, 200, objectResource(b, o));
  }
  if (type === 'resumable') return resumableStart(ctx, b, pre);
  throw gcsErr(400, 'invalid', `Invalid upload type: ${type}`);
}

// Resumable uploads: POST starts a session, PUT sends data.
function resumableStart(ctx, b, pre) {
  let meta = {};
  const text = ctx.body.toString('utf8').trim();
  if (text) {
    try { meta = JSON.parse(text); } catch { throw gcsErr(400, 'parseError', 'Parse Error'); }
  }
  const name = ctx.q.get('name') || meta.name;
  ctx.objectName = name;
  validateObjectName(name);
  authorize(ctx, b.name, name, 'storage.objects.create');
  if (!meta.contentType && ctx.req.headers['x-upload-content-type']) meta.contentType = ctx.req.headers['x-upload-content-type'];
  checkPreconditions(pre, b.objects.get(name), false);
  const id = crypto.randomBytes(16).toString('hex');
  RESUMABLE.set(id, { bucket: b.name, name, meta, pre, chunks: [], received: 0, created: Date.now() });
  const loc = `${baseUrl()}/upload/storage/v1/b/${b.name}/o?uploadType=resumable&name=${encName(name)}&upload_id=${id}`;
  ctx.res.writeHead(200, { Location: loc, 'X-GUploader-UploadID': id, 'Content-Length': 0 });
  ctx.res.end();
}

function resumableChunk(ctx, b) {
  const id = ctx.q.get('upload_id');
  const s = RESUMABLE.get(id);
  if (!s || s.bucket !== b.name) throw gcsErr(404, 'notFound', 'No such upload session.');
  ctx.objectName = s.name;
  authorize(ctx, b.name, s.name, 'storage.objects.create');
  if (ctx.method === 'DELETE') {
    RESUMABLE.delete(id);
    ctx.res.writeHead(499, { 'Content-Length': 0 });
    ctx.res.end();
    return;
  }
  // Content-Range forms: "bytes A-B/T", "bytes A-B/*" (more to come),
  // "bytes A-*/T" and "bytes A-*/*" (the rest of the data is this body: the
  // official Node client's single-request form), "bytes */T", "bytes */*"
  // (status query or finalize).  No header: the body is the whole object.
  const range = ctx.req.headers['content-range'];
  let total = null, final = false;
  if (range) {
    const m = /^bytes (\*|(\d+)-(\d+|\*))\/(\*|\d+)$/.exec(range.trim());
    if (!m) throw gcsErr(400, 'invalid', `Invalid Content-Range: ${range}`);
    if (m[4] !== '*') total = Number(m[4]);
    if (m[1] !== '*') {
      const start = Number(m[2]);
      if (m[3] === '*') final = true;
      else if (Number(m[3]) - start + 1 !== ctx.body.length) throw gcsErr(400, 'invalid', 'Content-Range does not match the body length.');
      if (start > s.received) throw gcsErr(400, 'invalid', 'Content-Range starts past the bytes received.');
      const skip = s.received - start;   // resent bytes are ignored
      if (skip < ctx.body.length) {
        s.chunks.push(ctx.body.slice(skip));
        s.received += ctx.body.length - skip;
      }
    }
  } else {
    s.chunks.push(ctx.body);
    s.received += ctx.body.length;
    final = true;
  }
  if (final && total === null) total = s.received;
  if (total !== null && s.received >= total) {
    const data = Buffer.concat(s.chunks).slice(0, total);
    const meta = { ...s.meta };
    for (const h of String(ctx.req.headers['x-goog-hash'] || '').split(',')) {
      const eq = h.indexOf('=');
      if (eq < 0) continue;
      const k = h.slice(0, eq).trim(), v = h.slice(eq + 1).trim();
      if (k === 'crc32c') meta.crc32c = v;
      if (k === 'md5') meta.md5Hash = v;
    }
    RESUMABLE.delete(id);
    const o = storeObject(b, s.name, data, meta, s.pre);
    return sendJson(ctx, 200, objectResource(b, o));
  }
  const headers = { 'Content-Length': 0 };
  if (s.received > 0) headers.Range = `bytes=0-${s.received - 1}`;
  ctx.res.writeHead(308, headers);
  ctx.res.end();
}

function gcsGetObject(ctx, bucketName, objectName) {
  ctx.objectName = objectName;
  authorize(ctx, bucketName, objectName, 'storage.objects.get');
  const b = getBucket(bucketName);
  const o = getLiveObject(b, objectName, ctx.q);
  checkPreconditions(parsePreconditions(ctx.q), o, true);
  if (ctx.q.get('alt') === 'media' || ctx.route.name === 'media') return sendMedia(ctx, b, o);
  return sendJson(ctx, 200, objectResource(b, o));
}

function sendMedia(ctx, b, o) {
  const headers = {
    'Content-Type': o.contentType,
    ETag: `"${o.md5Hash ? Buffer.from(o.md5Hash, 'base64').toString('hex') : o.generation}"`,
    'x-goog-generation': String(o.generation),
    'x-goog-metageneration': String(o.metageneration),
    'x-goog-hash': `crc32c=${o.crc32c},md5=${o.md5Hash}`,
    'x-goog-stored-content-length': String(o.data.length),
    'x-goog-stored-content-encoding': o.contentEncoding || 'identity',
    'Cache-Control': 'no-cache, no-store, max-age=0, must-revalidate',
    'Accept-Ranges': 'bytes',
  };
  if (o.contentEncoding) headers['Content-Encoding'] = o.contentEncoding;
  const range = ctx.req.headers.range;
  let data = o.data, status = 200;
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    const size = o.data.length;
    let start, end;
    if (m && (m[1] !== '' || m[2] !== '')) {
      if (m[1] === '') { start = Math.max(0, size - Number(m[2])); end = size - 1; }
      else { start = Number(m[1]); end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1); }
      if (start >= size || start > end) {
        ctx.res.writeHead(416, { 'Content-Range': `bytes */${size}`, 'Content-Type': 'text/html' });
        ctx.res.end('Request range not satisfiable');
        return;
      }
      data = o.data.slice(start, end + 1);
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    }
  }
  headers['Content-Length'] = data.length;
  if (ctx.method !== 'HEAD') {
    ctx.downloadBytes = data.length;
    STATS.gcs.bytes_downloaded += data.length;
  }
  ctx.res.writeHead(status, headers);
  ctx.res.end(ctx.method === 'HEAD' ? undefined : data);
}

function gcsDeleteObject(ctx, bucketName, objectName) {
  ctx.objectName = objectName;
  authorize(ctx, bucketName, objectName, 'storage.objects.delete');
  const b = getBucket(bucketName);
  const o = getLiveObject(b, objectName, ctx.q);
  checkPreconditions(parsePreconditions(ctx.q), o, false);
  deleteObject(b, objectName);
  ctx.res.writeHead(204, { 'Content-Length': 0 });
  ctx.res.end();
}

function sortedNames(b) {
  if (!b.sorted) b.sorted = [...b.objects.keys()].sort(cmpNames);
  return b.sorted;
}

function gcsList(ctx, bucketName) {
  ctx.objectName = ctx.q.get('prefix') || '';
  authorize(ctx, bucketName, null, 'storage.objects.list');
  const b = getBucket(bucketName);
  const q = ctx.q;
  const prefix = q.get('prefix') || '';
  const delimiter = q.get('delimiter') || '';
  const startOffset = q.get('startOffset') || '';
  const endOffset = q.get('endOffset') || '';
  const inclTrailing = q.get('includeTrailingDelimiter') === 'true';
  let max = 1000;
  if (q.get('maxResults') !== null) {
    if (!/^\d+$/.test(q.get('maxResults'))) throw gcsErr(400, 'invalid', `Invalid value for maxResults: ${q.get('maxResults')}`);
    max = Math.min(1000, Number(q.get('maxResults')));
    if (max === 0) max = 1000;
  }
  let after = null;
  if (q.get('pageToken')) {
    try {
      const t = JSON.parse(Buffer.from(q.get('pageToken'), 'base64url').toString('utf8'));
      after = String(t.k);
    } catch { throw gcsErr(400, 'invalid', 'Invalid page token.'); }
  }
  const names = sortedNames(b);
  // lower bound: first name >= prefix (and >= startOffset)
  const floor = cmpNames(startOffset, prefix) > 0 ? startOffset : prefix;
  let lo = 0, hi = names.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (cmpNames(names[mid], floor) < 0) lo = mid + 1; else hi = mid; }
  const items = [], prefixes = [];
  let lastKey = null, count = 0, more = false;
  for (let i = lo; i < names.length; i++) {
    const name = names[i];
    if (!name.startsWith(prefix)) break;
    if (endOffset && cmpNames(name, endOffset) >= 0) break;
    let key = name, isPrefix = false;
    if (delimiter) {
      const d = name.indexOf(delimiter, prefix.length);
      if (d >= 0) { key = name.slice(0, d + delimiter.length); isPrefix = true; }
    }
    if (after !== null && cmpNames(key, after) <= 0) continue;
    if (key === lastKey) continue;
    if (count >= max) { more = true; break; }
    if (isPrefix) {
      prefixes.push(key);
      if (inclTrailing && b.objects.has(key)) items.push(objectResource(b, b.objects.get(key)));
    } else {
      items.push(objectResource(b, b.objects.get(name)));
    }
    lastKey = key;
    count++;
  }
  const out = { kind: 'storage#objects' };
  if (more) out.nextPageToken = Buffer.from(JSON.stringify({ k: lastKey })).toString('base64url');
  if (prefixes.length) out.prefixes = prefixes;
  if (items.length) out.items = items;
  return sendJson(ctx, 200, out);
}

function gcsGetBucket(ctx, bucketName) {
  authorize(ctx, bucketName, null, 'storage.buckets.get');
  return sendJson(ctx, 200, bucketResource(getBucket(bucketName)));
}

function gcsListBuckets(ctx) {
  authorize(ctx, '_', null, 'storage.buckets.list');
  return sendJson(ctx, 200, { kind: 'storage#buckets', items: [...BUCKETS.values()].map(bucketResource) });
}

// ===========================================================================
// 7. Cloud Run
// ===========================================================================

const JOBS = new Map();              // job short name -> job
const EXECUTIONS = new Map();        // full execution name -> exec
const EXEC_BY_ID = new Map();        // execution id (short) -> exec
const OPERATIONS = new Map();        // full operation name -> op
const TASK_QUEUE = [];               // tasks waiting for a slot
let runningTasks = 0;
let execSeq = 0;
let shuttingDown = false;

const JOB_CREATED = Date.now();

function initJobs() {
  JOBS.clear();
  for (const name of CFG.jobs) {
    JOBS.set(name, { name, uid: crypto.randomUUID(), created: JOB_CREATED, executionCount: 0, latest: null,
      serviceAccount: CFG.jobSa[name] || null });
  }
}

const JOB_TIMEOUT_S = 600;
const EXECUTOR_IMAGE = 'us-docker.pkg.dev/emulator/cloudrun-sandbox/executor:latest';

function jobEtag(job) {
  return `"${crypto.createHash('sha1').update(job.uid).digest('base64url').slice(0, 20)}"`;
}

function jobEnvList() {
  return Object.entries(CFG.env).map(([name, value]) => ({ name, value }));
}

function jobResource(project, location, job) {
  const r = {
    name: `projects/${project}/locations/${location}/jobs/${job.name}`,
    uid: job.uid, generation: '1',
    createTime: nowIso(job.created), updateTime: nowIso(job.created),
    creator: 'emulator@emulator-project.iam.gserviceaccount.com',
    lastModifier: 'emulator@emulator-project.iam.gserviceaccount.com',
    launchStage: 'GA',
    template: {
      taskCount: 1,
      template: {
        containers: [{ image: EXECUTOR_IMAGE, command: [CFG.executor], env: jobEnvList(), resources: { limits: { cpu: '1000m', memory: '512Mi' } } }],
        maxRetries: CFG.maxRetries, timeout: fmtDuration(JOB_TIMEOUT_S),
        serviceAccount: job.serviceAccount || DEFAULT_SA,
        executionEnvironment: 'EXECUTION_ENVIRONMENT_GEN2',
      },
    },
    observedGeneration: '1',
    terminalCondition: { type: 'Ready', state: 'CONDITION_SUCCEEDED', lastTransitionTime: nowIso(job.created) },
    executionCount: job.executionCount,
    reconciling: false,
    etag: jobEtag(job),
  };
  if (job.latest) {
    const e = job.latest;
    r.latestCreatedExecution = {
      name: e.name, createTime: nowIso(e.created),
      completionTime: e.completed ? nowIso(e.completed) : undefined,
      completionStatus: { running: 'EXECUTION_RUNNING', succeeded: 'EXECUTION_SUCCEEDED', failed: 'EXECUTION_FAILED', cancelled: 'EXECUTION_CANCELLED' }[e.state],
    };
  }
  return r;
}

function getJob(project, location, jobName) {
  const job = JOBS.get(jobName);
  if (!job) throw runErr(404, 'NOT_FOUND', `Resource 'projects/${project}/locations/${location}/jobs/${jobName}' was not found`);
  return job;
}

// --- strict request validation ---------------------------------------------

function expectObject(v, fieldPath) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw badValue(fieldPath, `Invalid value at '${fieldPath}': expected an object.`);
  }
}

// Accept lowerCamelCase and the proto's snake_case names, as Google does.
function normalizeFields(obj, fields, fieldPath) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) {
    const camel = k.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
    if (!fields.includes(camel)) throw badField(fieldPath, k);
    if (camel in out) throw badValue(fieldPath, `Invalid JSON payload received. Field '${camel}' given twice at '${fieldPath || 'request'}'.`);
    out[camel] = v;
  }
  return out;
}

function parseInt32(v, fieldPath) {
  if (typeof v === 'number' && Number.isInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return Number(v);
  throw badValue(fieldPath, `Invalid value at '${fieldPath}' (TYPE_INT32), ${JSON.stringify(v)}`);
}

function parseBool(v, fieldPath) {
  if (typeof v === 'boolean') return v;
  throw badValue(fieldPath, `Invalid value at '${fieldPath}' (TYPE_BOOL), ${JSON.stringify(v)}`);
}

function parseString(v, fieldPath) {
  if (typeof v === 'string') return v;
  throw badValue(fieldPath, `Invalid value at '${fieldPath}' (TYPE_STRING), ${JSON.stringify(v)}`);
}

function parseDuration(v, fieldPath) {
  if (typeof v !== 'string' || !DURATION_RE.test(v)) {
    throw badValue(fieldPath, `Invalid value at '${fieldPath}' (type.googleapis.com/google.protobuf.Duration), ${JSON.stringify(v)}`);
  }
  return durationSeconds(v);
}

function parseJsonBody(ctx) {
  const text = ctx.body.toString('utf8');
  if (!text.trim()) return {};
  let v;
  try { v = JSON.parse(text); } catch (e) {
    throw runErr(400, 'INVALID_ARGUMENT', `Invalid JSON payload received. ${e.message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw runErr(400, 'INVALID_ARGUMENT', 'Invalid JSON payload received. Expected an object.');
  }
  return v;
}

const RESERVED_ENV = /^(CLOUD_RUN_[A-Z_]*|K_SERVICE|K_REVISION|K_CONFIGURATION|PORT)$/;

// RunJobRequest body -> {validateOnly, etag, args|null, clearArgs, env, taskCount|null, timeout|null}
function parseRunJobBody(body) {
  const b = normalizeFields(body, ['validateOnly', 'etag', 'overrides'], '');
  const out = { validateOnly: false, etag: null, args: null, clearArgs: false, env: [], taskCount: null, timeout: null };
  if (b.validateOnly !== undefined) out.validateOnly = parseBool(b.validateOnly, 'validate_only');
  if (b.etag !== undefined) out.etag = parseString(b.etag, 'etag');
  if (b.overrides === undefined || b.overrides === null) return out;
  expectObject(b.overrides, 'overrides');
  const ov = normalizeFields(b.overrides, ['containerOverrides', 'taskCount', 'timeout'], 'overrides');
  if (ov.taskCount !== undefined && ov.taskCount !== null) {
    const n = parseInt32(ov.taskCount, 'overrides.task_count');
    if (n < 0 || n > 10000) throw badValue('overrides.task_count', `overrides.task_count must be between 1 and 10000, got ${n}.`);
    if (n > 0) out.taskCount = n;                 // 0 is proto3's "unset"
  }
  if (ov.timeout !== undefined && ov.timeout !== null) {
    const s = parseDuration(ov.timeout, 'overrides.timeout');
    if (s <= 0 || s > 168 * 3600) throw badValue('overrides.timeout', `overrides.timeout must be greater than 0s and at most 168h, got ${ov.timeout}.`);
    out.timeout = s;
  }
  if (ov.containerOverrides !== undefined && ov.containerOverrides !== null) {
    if (!Array.isArray(ov.containerOverrides)) throw badValue('overrides.container_overrides', "Invalid value at 'overrides.container_overrides': expected a list.");
    if (ov.containerOverrides.length > 1) throw badValue('overrides.container_overrides', 'The job has one container; at most one container override may be given.');
    ov.containerOverrides.forEach((co, i) => {
      const p = `overrides.container_overrides[${i}]`;
      expectObject(co, p);
      const c = normalizeFields(co, ['name', 'args', 'env', 'clearArgs'], p);
      if (c.name !== undefined) parseString(c.name, `${p}.name`);
      if (c.clearArgs !== undefined) out.clearArgs = parseBool(c.clearArgs, `${p}.clear_args`);
      if (c.args !== undefined && c.args !== null) {
        if (!Array.isArray(c.args)) throw badValue(`${p}.args`, `Invalid value at '${p}.args': expected a list of strings.`);
        out.args = c.args.map((a, j) => parseString(a, `${p}.args[${j}]`));
      }
      if (out.clearArgs && out.args && out.args.length) {
        throw badValue(`${p}.clear_args`, `${p}: clear_args cannot be set when args are given.`);
      }
      if (c.env !== undefined && c.env !== null) {
        if (!Array.isArray(c.env)) throw badValue(`${p}.env`, `Invalid value at '${p}.env': expected a list.`);
        c.env.forEach((ev, j) => {
          const ep = `${p}.env[${j}]`;
          expectObject(ev, ep);
          const e = normalizeFields(ev, ['name', 'value', 'valueSource'], ep);
          if (e.valueSource !== undefined) throw badValue(`${ep}.value_source`, `${ep}.value_source: secret references are not supported by the emulator.`);
          const name = e.name === undefined ? '' : parseString(e.name, `${ep}.name`);
          const value = e.value === undefined ? '' : parseString(e.value, `${ep}.value`);
          if (!name || name.includes('=') || name.includes('\0')) throw badValue(`${ep}.name`, `${ep}.name: environment variable names must be non-empty and contain no '='.`);
          if (value.includes('\0')) throw badValue(`${ep}.value`, `${ep}.value: must not contain NUL.`);
          if (RESERVED_ENV.test(name)) throw badValue(`${ep}.name`, `The following reserved env names were provided: ${name}. These values are automatically set by the system.`);
          out.env.push({ name, value });
        });
      }
      if (out.args) for (const a of out.args) if (a.includes('\0')) throw badValue(`${p}.args`, 'Arguments must not contain NUL.');
    });
  }
  return out;
}

// --- resources ---------------------------------------------------------------

function condition(type, state, extra = {}) {
  return { type, state, lastTransitionTime: extra.time ? nowIso(extra.time) : undefined, message: extra.message, executionReason: extra.executionReason, reason: extra.reason };
}

function taskCounts(exec) {
  const c = { running: 0, succeeded: 0, failed: 0, cancelled: 0, retried: 0 };
  for (const t of exec.tasks) {
    if (t.state in c) c[t.state]++;
    c.retried += t.attempt;
  }
  return c;
}

function executionCompletedCondition(exec) {
  if (exec.state === 'running') {
    if (exec.cancelling) return condition('Completed', 'CONDITION_PENDING', { time: exec.updated, message: 'The execution is being cancelled.', executionReason: 'CANCELLING' });
    return condition('Completed', 'CONDITION_PENDING', { time: exec.created, message: 'The execution is running.', reason: 'WAITING_FOR_OPERATION' });
  }
  const secs = ((exec.completed - exec.created) / 1000).toFixed(2);
  if (exec.state === 'succeeded') return condition('Completed', 'CONDITION_SUCCEEDED', { time: exec.completed, message: `Execution completed successfully in ${secs}s.` });
  if (exec.state === 'cancelled') return condition('Completed', 'CONDITION_FAILED', { time: exec.completed, message: 'The execution was cancelled.', executionReason: 'CANCELLED' });
  return condition('Completed', 'CONDITION_FAILED', { time: exec.completed, message: exec.failureMessage || 'Execution failed.', executionReason: 'NON_ZERO_EXIT_CODE' });
}

function containerSpec(exec) {
  return {
    image: EXECUTOR_IMAGE, command: [exec.executor], args: exec.args,
    env: exec.env, resources: { limits: { cpu: '1000m', memory: '512Mi' } },
  };
}

function executionResource(exec) {
  const c = taskCounts(exec);
  return {
    name: exec.name,
    uid: exec.uid,
    creator: 'emulator@emulator-project.iam.gserviceaccount.com',
    generation: '1',
    createTime: nowIso(exec.created),
    startTime: exec.started ? nowIso(exec.started) : undefined,
    completionTime: exec.completed ? nowIso(exec.completed) : undefined,
    updateTime: nowIso(exec.updated),
    launchStage: 'GA',
    job: exec.jobName,
    parallelism: exec.parallelism,
    taskCount: exec.taskCount,
    template: {
      containers: [containerSpec(exec)],
      maxRetries: exec.maxRetries,
      timeout: fmtDuration(exec.timeout),
      serviceAccount: exec.serviceAccount,
      executionEnvironment: 'EXECUTION_ENVIRONMENT_GEN2',
    },
    reconciling: exec.state === 'running',
    conditions: [
      executionCompletedCondition(exec),
      condition('ResourcesAvailable', exec.started || exec.state !== 'running' ? 'CONDITION_SUCCEEDED' : 'CONDITION_PENDING', { time: exec.started || exec.created }),
      condition('Started', exec.started ? 'CONDITION_SUCCEEDED' : 'CONDITION_PENDING', { time: exec.started || exec.created }),
    ],
    observedGeneration: '1',
    runningCount: c.running,
    succeededCount: c.succeeded,
    failedCount: c.failed,
    cancelledCount: c.cancelled,
    retriedCount: c.retried,
    logUri: `${baseUrl()}/_emulator/executions/${exec.id}/logs`,
    etag: `"${exec.id}-${exec.version}"`,
  };
}

function taskResource(exec, t) {
  const stateMap = {
    pending: 'CONDITION_PENDING', running: 'CONDITION_PENDING', succeeded: 'CONDITION_SUCCEEDED',
    failed: 'CONDITION_FAILED', cancelled: 'CONDITION_FAILED',
  };
  const r = {
    name: `${exec.name}/tasks/${exec.id}-task${t.index}`,
    uid: t.uid, generation: '1',
    createTime: nowIso(exec.created),
    scheduledTime: t.started ? nowIso(t.started) : undefined,
    startTime: t.started ? nowIso(t.started) : undefined,
    completionTime: t.completed ? nowIso(t.completed) : undefined,
    updateTime: nowIso(t.completed || t.started || exec.created),
    job: exec.jobName, execution: exec.id,
    containers: [containerSpec(exec)],
    maxRetries: exec.maxRetries, timeout: fmtDuration(exec.timeout),
    serviceAccount: exec.serviceAccount,
    executionEnvironment: 'EXECUTION_ENVIRONMENT_GEN2',
    reconciling: t.state === 'pending' || t.state === 'running',
    conditions: [condition('Completed', stateMap[t.state], { time: t.completed || t.started || exec.created, message: t.message })],
    observedGeneration: '1',
    index: t.index,
    retried: t.attempt,
    logUri: `${baseUrl()}/_emulator/executions/${exec.id}/logs?task=${t.index}`,
    etag: `"${exec.id}-t${t.index}-${exec.version}"`,
  };
  if (t.result) r.lastAttemptResult = t.result;
  return r;
}

function operationResource(op) {
  const exec = EXECUTIONS.get(op.execName);
  const execJson = exec ? executionResource(exec) : op.snapshot;
  const out = {
    name: op.name,
    metadata: { '@type': 'type.googleapis.com/google.cloud.run.v2.Execution', ...execJson },
    done: false,
  };
  const finished = exec ? exec.state !== 'running' : true;
  if (finished) {
    out.done = true;
    if (op.kind === 'run' && exec && exec.state === 'failed') {
      out.error = { code: RPC_CODES.FAILED_PRECONDITION, message: exec.failureMessage || 'Execution failed.', details: [] };
    } else {
      out.response = { '@type': 'type.googleapis.com/google.cloud.run.v2.Execution', ...execJson };
    }
  }
  return out;
}

function sendRun(ctx, status, obj) {
  let v = pruneDefaults(obj);
  if (ctx.enumInt) v = intEnums(v);
  return sendJson(ctx, status, v);
}

// --- executions and their processes -----------------------------------------

function whichExecutor() {
  const exe = CFG.executor;
  if (exe.includes('/')) {
    const p = path.resolve(exe);
    return fs.existsSync(p) ? p : null;
  }
  for (const dir of (process.env.PATH || '').split(':')) {
    if (!dir) continue;
    const p = path.join(dir, exe);
    try { fs.accessSync(p, fs.constants.X_OK); if (fs.statSync(p).isFile()) return p; } catch { /* next */ }
  }
  return null;
}

function newExecution(project, location, job, req) {
  let id;
  do { id = `${job.name}-${randomId(5)}`; } while (EXEC_BY_ID.has(id));
  const taskCount = req.taskCount || 1;
  const name = `projects/${project}/locations/${location}/jobs/${job.name}/executions/${id}`;
  const envMap = new Map(jobEnvList().map((e) => [e.name, e.value]));
  for (const e of req.env) envMap.set(e.name, e.value);
  const exec = {
    id, name, project, location, jobName: job.name, uid: crypto.randomUUID(), seq: ++execSeq,
    serviceAccount: job.serviceAccount || DEFAULT_SA,
    created: Date.now(), updated: Date.now(), started: null, completed: null,
    taskCount, parallelism: Math.min(taskCount, CFG.maxRunningTasks),
    timeout: req.timeout || JOB_TIMEOUT_S, maxRetries: CFG.maxRetries,
    args: req.args !== null ? req.args : [],
    env: [...envMap].map(([n, v]) => ({ name: n, value: v })),
    executor: CFG.executor,
    state: 'running', cancelling: false, failureMessage: null, version: 1,
    tasks: [], waiters: [],
    log: { chunks: [], size: 0, truncated: false },
  };
  for (let i = 0; i < taskCount; i++) {
    exec.tasks.push({ index: i, uid: crypto.randomUUID(), state: 'pending', attempt: 0, started: null, completed: null, proc: null, result: null, message: undefined, output: [] });
  }
  return exec;
}

function registerExecution(exec) {
  EXECUTIONS.set(exec.name, exec);
  EXEC_BY_ID.set(exec.id, exec);
  STATS.executions.running++;
  // Bounded memory: forget the oldest finished executions.
  if (EXECUTIONS.size > CFG.maxExecutions) {
    for (const [n, e] of EXECUTIONS) {
      if (EXECUTIONS.size <= CFG.maxExecutions) break;
      if (e.state === 'running') continue;
      EXECUTIONS.delete(n);
      EXEC_BY_ID.delete(e.id);
      for (const opName of e.ops || []) OPERATIONS.delete(opName);
    }
  }
}

function touch(exec) {
  exec.updated = Date.now();
  exec.version++;
}

function appendLog(exec, task, stream, chunk) {
  const LIMIT = 1024 * 1024;
  if (CFG.stateDir) {
    try {
      fs.mkdirSync(path.join(CFG.stateDir, 'logs'), { recursive: true });
      fs.appendFileSync(path.join(CFG.stateDir, 'logs', `${exec.id}.log`), chunk);
    } catch { /* best effort */ }
  }
  if (exec.log.size >= LIMIT) { exec.log.truncated = true; return; }
  const piece = chunk.length + exec.log.size > LIMIT ? chunk.slice(0, LIMIT - exec.log.size) : chunk;
  if (piece.length < chunk.length) exec.log.truncated = true;
  exec.log.size += piece.length;
  task.output.push({ stream, data: piece });
}

function bwrapArgs(executorPath) {
  const a = ['--unshare-user', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--die-with-parent',
    '--new-session', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib',
    '--symlink', 'usr/lib64', '/lib64', '--symlink', 'usr/sbin', '/sbin', '--ro-bind', '/etc', '/etc',
    '--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--dir', '/workspace', '--chdir', '/workspace'];
  let real = executorPath;
  try { real = fs.realpathSync(executorPath); } catch { /* bwrap will report it */ }
  if (!real.startsWith('/usr/')) {
    a.push('--ro-bind', real, executorPath);
    // The local executor hands cloud mode to its sibling program; bind it too.
    const sibling = `${real}-cloud`;
    if (fs.existsSync(sibling)) a.push('--ro-bind', sibling, `${executorPath}-cloud`);
  }
  return a;
}

function taskEnv(exec, task) {
  const env = {
    PATH: '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin',
    HOME: '/tmp',
    LANG: 'C.UTF-8',
    STORAGE_EMULATOR_HOST: baseUrl(),
    CLOUDRUN_SANDBOX_STORAGE_ENDPOINT: baseUrl(),
    // The metadata server of the job's service account (a port of its own, or the main one).
    CLOUDRUN_SANDBOX_METADATA_HOST: metadataHostFor(exec.jobName),
    GCE_METADATA_HOST: metadataHostFor(exec.jobName),
    GOOGLE_CLOUD_PROJECT: exec.project,
    // As on Cloud Run, tasks authenticate through the metadata server.
    CLOUDRUN_SANDBOX_CREDENTIALS: CFG.auth ? 'metadata' : 'none',
  };
  for (const e of exec.env) env[e.name] = e.value;
  Object.assign(env, {
    CLOUD_RUN_JOB: exec.jobName,
    CLOUD_RUN_EXECUTION: exec.id,
    CLOUD_RUN_TASK_INDEX: String(task.index),
    CLOUD_RUN_TASK_COUNT: String(exec.taskCount),
    CLOUD_RUN_TASK_ATTEMPT: String(task.attempt),
  });
  return env;
}

function scheduleTasks() {
  while (TASK_QUEUE.length && runningTasks < CFG.maxRunningTasks && !shuttingDown) {
    const { exec, task } = TASK_QUEUE.shift();
    if (task.state !== 'pending') continue;
    startTask(exec, task);
  }
}

function startTask(exec, task) {
  runningTasks++;
  task.state = 'running';
  task.started = task.started || Date.now();
  if (!exec.started) exec.started = Date.now();
  touch(exec);
  const exe = whichExecutor();
  task.result = null;
  if (!exe) {
    const msg = `The container failed to start: executor "${CFG.executor}" not found.`;
    appendLog(exec, task, 'stderr', Buffer.from(`emulator: ${msg}\n`));
    return finishTask(exec, task, { exitCode: 127, signal: null, message: msg });
  }
  const args = exec.args;
  let cmd = exe, argv = args, cwd;
  if (CFG.bwrap) {
    cmd = 'bwrap';
    argv = [...bwrapArgs(exe), exe, ...args];
    cwd = '/';
  } else {
    cwd = fs.mkdtempSync(path.join(os.tmpdir(), `cloudrun-emu-${exec.id}-${task.index}-`));
    task.workdir = cwd;
  }
  let child;
  try {
    child = spawn(cmd, argv, { env: taskEnv(exec, task), cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  } catch (e) {
    return finishTask(exec, task, { exitCode: 127, signal: null, message: `The container failed to start: ${e.message}` });
  }
  task.proc = child;
  task.killReason = null;
  task.timer = setTimeout(() => terminateTask(exec, task, 'timeout'), exec.timeout * 1000);
  child.stdout.on('data', (d) => appendLog(exec, task, 'stdout', d));
  child.stderr.on('data', (d) => appendLog(exec, task, 'stderr', d));
  let done = false;
  const finish = (code, signal, err) => {
    if (done) return;
    done = true;
    let message;
    if (err) message = `The container failed to start: ${err.message}`;
    finishTask(exec, task, { exitCode: code, signal, message });
  };
  child.on('error', (e) => finish(127, null, e));
  child.on('exit', (code, signal) => {
    // A container ends with its entrypoint: nothing it started survives.
    if (!CFG.bwrap) { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } }
    task.exitInfo = { code, signal };
    // Give the pipes a moment to drain, then finish even if a stray holder
    // keeps them open.
    task.closeTimer = setTimeout(() => {
      child.stdout.destroy(); child.stderr.destroy();
      finish(code, signal);
    }, 1000);
  });
  child.on('close', (code, signal) => {
    clearTimeout(task.closeTimer);
    const info = task.exitInfo || { code, signal };
    finish(info.code, info.signal);
  });
}

// Find the processes a bwrap sandbox runs (descendants that are not bwrap).
function processChildren() {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(rest[1]);
      const comm = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push({ pid: Number(d), comm });
    } catch { /* raced */ }
  }
  return kids;
}

function entrypointPids(rootPid) {
  const kids = processChildren();
  const out = [];
  const walk = (pid) => {
    for (const k of kids.get(pid) || []) {
      if (k.comm === 'bwrap') walk(k.pid); else out.push(k.pid);
    }
  };
  walk(rootPid);
  return out;
}

// SIGTERM the task's entrypoint, SIGKILL the sandbox after the grace period.
function terminateTask(exec, task, reason) {
  const child = task.proc;
  if (!child || task.killReason) return;
  task.killReason = reason;
  const sig = (pid, s) => { try { process.kill(pid, s); } catch { /* gone */ } };
  if (CFG.bwrap) {
    const pids = entrypointPids(child.pid);
    if (pids.length === 0) sig(child.pid, 'SIGKILL');
    for (const p of pids) sig(p, 'SIGTERM');
  } else {
    sig(child.pid, 'SIGTERM');
  }
  task.killTimer = setTimeout(() => hardKill(task), CFG.killGraceMs);
}

function hardKill(task) {
  const child = task.proc;
  if (!child) return;
  try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
  try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
}

function finishTask(exec, task, { exitCode, signal, message }) {
  clearTimeout(task.timer);
  clearTimeout(task.killTimer);
  clearTimeout(task.closeTimer);
  if (task.workdir) { fs.rm(task.workdir, { recursive: true, force: true }, () => {}); task.workdir = null; }
  if (task.proc) runningTasks--;
  else if (task.state === 'running') runningTasks--;
  task.proc = null;
  const reason = task.killReason;
  task.killReason = null;
  const sigNum = signal ? os.constants.signals[signal] || 0 : 0;
  const taskName = `${exec.id}-task${task.index}`;
  let outcome, status;
  if (reason === 'cancel' || (exec.cancelling && exitCode !== 0)) {
    outcome = 'cancelled';
    status = { code: RPC_CODES.CANCELLED, message: 'The task was cancelled.' };
  } else if (reason === 'timeout') {
    outcome = 'failed';
    status = { code: RPC_CODES.DEADLINE_EXCEEDED, message: `The configured timeout was reached.` };
  } else if (reason === 'shutdown') {
    outcome = 'failed';
    status = { code: RPC_CODES.ABORTED, message: 'The emulator shut down.' };
  } else if (exitCode === 0 && !signal) {
    outcome = 'succeeded';
    status = { code: 0, message: '' };
  } else {
    outcome = 'failed';
    status = {
      code: RPC_CODES.UNKNOWN,
      message: message || (signal ? `The container was terminated by signal ${signal}.` : `The container exited with an exit code of ${exitCode}.`),
    };
  }
  task.result = { status, exitCode: exitCode ?? 0, termSignal: sigNum };
  touch(exec);
  if (outcome === 'failed' && task.attempt < exec.maxRetries && !exec.cancelling && !shuttingDown) {
    task.attempt++;
    task.state = 'pending';
    TASK_QUEUE.push({ exec, task });
    scheduleTasks();
    return;
  }
  task.state = outcome;
  task.completed = Date.now();
  task.message = status.message || undefined;
  if (outcome === 'failed' && !exec.failureMessage) {
    exec.failureMessage = `Task ${taskName} failed with message: ${status.message}`;
  }
  logExec(`execution ${exec.id} task ${task.index} ${outcome}` + (exitCode !== null && exitCode !== undefined ? ` (exit ${exitCode})` : '') + (signal ? ` (${signal})` : ''));
  maybeFinishExecution(exec);
  scheduleTasks();
}

function maybeFinishExecution(exec) {
  if (exec.state !== 'running' || exec.discarded) return;
  if (exec.tasks.some((t) => t.state === 'pending' || t.state === 'running')) return;
  const c = taskCounts(exec);
  exec.state = exec.cancelling || c.cancelled > 0 ? 'cancelled' : (c.failed > 0 ? 'failed' : 'succeeded');
  exec.completed = Date.now();
  // An execution cancelled before any task started has no startTime.
  if (!exec.started && exec.tasks.some((t) => t.started)) exec.started = exec.completed;
  touch(exec);
  STATS.executions.running--;
  STATS.executions[exec.state]++;
  logExec(`execution ${exec.id} ${exec.state}`);
  const waiters = exec.waiters;
  exec.waiters = [];
  for (const w of waiters) w();
}

function cancelExecution(exec) {
  if (exec.state !== 'running' || exec.cancelling) return;
  exec.cancelling = true;
  if (exec.provisionTimer) { clearTimeout(exec.provisionTimer); exec.provisionTimer = null; }
  touch(exec);
  for (const t of exec.tasks) {
    if (t.state === 'pending') { t.state = 'cancelled'; t.completed = Date.now(); t.message = 'The task was cancelled.'; }
    else if (t.state === 'running') terminateTask(exec, t, 'cancel');
  }
  maybeFinishExecution(exec);
}

// --- handlers ------------------------------------------------------------------

function newOperation(exec, kind, project, location) {
  const name = `projects/${project}/locations/${location}/operations/${crypto.randomUUID()}`;
  const op = { name, execName: exec.name, kind, snapshot: null };
  OPERATIONS.set(name, op);
  (exec.ops = exec.ops || []).push(name);
  return op;
}

function handleRunJob(ctx, [project, location, jobName]) {
  const job = getJob(project, location, jobName);
  const req = parseRunJobBody(parseJsonBody(ctx));
  if (req.etag !== null && req.etag !== jobEtag(job)) {
    throw runErr(409, 'ABORTED', `The etag "${req.etag}" does not match the current etag of the job.`);
  }
  const exec = newExecution(project, location, job, req);
  if (req.validateOnly) {
    const snapshot = executionResource(exec);
    return sendRun(ctx, 200, { name: `projects/${project}/locations/${location}/operations/${crypto.randomUUID()}`, metadata: { '@type': 'type.googleapis.com/google.cloud.run.v2.Execution', ...snapshot }, done: false });
  }
  registerExecution(exec);
  job.executionCount++;
  job.latest = { name: exec.name, created: exec.created, get completed() { return exec.completed; }, get state() { return exec.state; } };
  STATS.jobs_run_calls++;
  const key = exec.args.join(' ');
  STATS.runs_by_arg[key] = (STATS.runs_by_arg[key] || 0) + 1;
  STATS.runs_by_job[job.name] = (STATS.runs_by_job[job.name] || 0) + 1;
  STATS.tasks_per_run.push(exec.taskCount);
  if (STATS.tasks_per_run.length > MAX_TASKS_PER_RUN_KEPT) STATS.tasks_per_run.shift();
  const op = newOperation(exec, 'run', project, location);
  const reply = operationResource(op);          // the state at creation
  // --start-latency: provisioning.  The execution and its tasks stay pending
  // (no startTime, ResourcesAvailable and Started pending) for the drawn delay;
  // a cancel meanwhile cancels the pending tasks, and the tasks never start.
  exec.startLatencyMs = drawLatency(LATENCY.start);
  logExec(`execution ${exec.id} created: ${exec.taskCount} task(s), args ${JSON.stringify(exec.args)}` +
    (exec.startLatencyMs ? `, starts in ${exec.startLatencyMs} ms` : ''));
  if (exec.startLatencyMs > 0) {
    exec.provisionTimer = setTimeout(() => { exec.provisionTimer = null; provisioned(exec); }, exec.startLatencyMs);
  } else {
    provisioned(exec);
  }
  return sendRun(ctx, 200, reply);
}

// provisioned starts an execution's tasks (or, with --instant, completes them).
function provisioned(exec) {
  if (exec.discarded || exec.state !== 'running' || exec.cancelling || shuttingDown) return;
  if (CFG.instant) {
    const t0 = Date.now();
    exec.started = t0;
    writeInstantResult(exec.args);
    for (const t of exec.tasks) {
      t.state = 'succeeded'; t.started = t0; t.completed = t0;
      t.result = { status: { code: 0, message: '' }, exitCode: 0, termSignal: 0 };
    }
    maybeFinishExecution(exec);
    return;
  }
  for (const t of exec.tasks) if (t.state === 'pending') TASK_QUEUE.push({ exec, task: t });
  scheduleTasks();
}

// In --instant mode, an execution of cloudrun-sandbox-executor's cloud mode
// ("cloud BUCKET .../requests/ID.json") leaves the result object the real
// executor would write for a command that printed nothing and changed no
// state, so a client waiting for results measures only its own overhead.
function writeInstantResult(args) {
  if (args.length < 3 || args[0] !== 'cloud') return;
  const b = BUCKETS.get(args[1]);
  if (!b) return;
  const result = { version: 1, status: 'succeeded', exit_code: 0, stdout: '', stderr: '',
    stdout_truncated: false, stderr_truncated: false, stdout_repaired: false,
    stderr_repaired: false, duration_ms: 0, error: null };
  // One request per task: "cloud BUCKET OBJECT0 OBJECT1 ...".
  for (const object of args.slice(2)) {
    const m = /^(.*\/)requests\/(\d+)\.json$/.exec(object);
    if (!m) continue;
    try {
      storeObject(b, `${m[1]}results/${m[2]}.json`, Buffer.from(JSON.stringify(result)), {}, { ifGenerationMatch: 0 });
    } catch (e) { /* a result already there stays */ }
  }
}

function findExecution(project, location, jobName, execId) {
  getJob(project, location, jobName);
  const name = `projects/${project}/locations/${location}/jobs/${jobName}/executions/${execId}`;
  const exec = EXECUTIONS.get(name);
  if (!exec) throw runErr(404, 'NOT_FOUND', `Resource '${name}' was not found`);
  return exec;
}

function handleGetExecution(ctx, [p, l, j, e]) {
  return sendRun(ctx, 200, executionResource(findExecution(p, l, j, e)));
}

function handleDeleteExecution(ctx, [p, l, j, e]) {
  const exec = findExecution(p, l, j, e);
  if (exec.state === 'running') throw runErr(400, 'FAILED_PRECONDITION', `Execution ${exec.id} is still running; cancel it first.`);
  const op = newOperation(exec, 'delete', p, l);
  op.snapshot = executionResource(exec);
  EXECUTIONS.delete(exec.name);
  EXEC_BY_ID.delete(exec.id);
  return sendRun(ctx, 200, operationResource(op));
}

function handleCancelExecution(ctx, [p, l, j, e]) {
  const exec = findExecution(p, l, j, e);
  const body = normalizeFields(parseJsonBody(ctx), ['validateOnly', 'etag'], '');
  if (body.validateOnly !== undefined) parseBool(body.validateOnly, 'validate_only');
  if (body.etag !== undefined) {
    parseString(body.etag, 'etag');
    if (body.etag !== executionResource(exec).etag) throw runErr(409, 'ABORTED', `The etag "${body.etag}" does not match the current etag of the execution.`);
  }
  if (exec.state !== 'running') {
    throw runErr(400, 'FAILED_PRECONDITION', `Execution ${exec.id} has already completed and cannot be cancelled.`);
  }
  const op = newOperation(exec, 'cancel', p, l);
  if (!body.validateOnly) {
    log(`execution ${exec.id} cancel requested`);
    cancelExecution(exec);
  }
  return sendRun(ctx, 200, operationResource(op));
}

function pageParams(ctx) {
  let size = 100;
  const ps = ctx.q.get('pageSize');
  if (ps !== null) {
    if (!/^\d+$/.test(ps)) throw badValue('page_size', `Invalid value at 'page_size' (TYPE_INT32), "${ps}"`);
    size = Math.min(Number(ps) || 100, 1000);
  }
  const tok = ctx.q.get('pageToken');
  let offset = 0;
  if (tok) {
    if (!/^\d+$/.test(tok)) throw runErr(400, 'INVALID_ARGUMENT', 'Invalid page token.');
    offset = Number(tok);
  }
  return { size, offset };
}

function handleListExecutions(ctx, [p, l, j]) {
  getJob(p, l, j);
  const prefix = `projects/${p}/locations/${l}/jobs/${j}/executions/`;
  const all = [...EXECUTIONS.values()].filter((e) => e.name.startsWith(prefix)).sort((a, b) => b.seq - a.seq);
  const { size, offset } = pageParams(ctx);
  const page = all.slice(offset, offset + size);
  const out = { executions: page.map(executionResource) };
  if (offset + size < all.length) out.nextPageToken = String(offset + size);
  return sendRun(ctx, 200, out);
}

function handleListTasks(ctx, [p, l, j, e]) {
  const exec = findExecution(p, l, j, e);
  const { size, offset } = pageParams(ctx);
  const page = exec.tasks.slice(offset, offset + size);
  const out = { tasks: page.map((t) => taskResource(exec, t)) };
  if (offset + size < exec.tasks.length) out.nextPageToken = String(offset + size);
  return sendRun(ctx, 200, out);
}

function handleGetTask(ctx, [p, l, j, e, t]) {
  const exec = findExecution(p, l, j, e);
  const m = new RegExp(`^${exec.id.replace(/[^a-z0-9]/g, '\\$&')}-task(\\d+)$`).exec(t);
  const task = m ? exec.tasks[Number(m[1])] : undefined;
  if (!task) throw runErr(404, 'NOT_FOUND', `Resource '${exec.name}/tasks/${t}' was not found`);
  return sendRun(ctx, 200, taskResource(exec, task));
}

function handleGetJob(ctx, [p, l, j]) {
  return sendRun(ctx, 200, jobResource(p, l, getJob(p, l, j)));
}

function handleListJobs(ctx, [p, l]) {
  return sendRun(ctx, 200, { jobs: [...JOBS.values()].map((j) => jobResource(p, l, j)) });
}

function findOperation(p, l, id) {
  const name = `projects/${p}/locations/${l}/operations/${id}`;
  const op = OPERATIONS.get(name);
  if (!op) throw runErr(404, 'NOT_FOUND', `Operation '${name}' was not found`);
  return op;
}

function handleGetOperation(ctx, [p, l, id]) {
  return sendRun(ctx, 200, operationResource(findOperation(p, l, id)));
}

function handleDeleteOperation(ctx, [p, l, id]) {
  const op = findOperation(p, l, id);
  OPERATIONS.delete(op.name);
  return sendRun(ctx, 200, {});
}

function handleListOperations(ctx, [p, l]) {
  const prefix = `projects/${p}/locations/${l}/operations/`;
  const all = [...OPERATIONS.values()].filter((o) => o.name.startsWith(prefix));
  const { size, offset } = pageParams(ctx);
  const out = { operations: all.slice(offset, offset + size).map(operationResource) };
  if (offset + size < all.length) out.nextPageToken = String(offset + size);
  return sendRun(ctx, 200, out);
}

const WAIT_CAP_S = 30;

function handleWaitOperation(ctx, [p, l, id]) {
  const op = findOperation(p, l, id);
  const body = normalizeFields(parseJsonBody(ctx), ['timeout'], '');
  let timeout = WAIT_CAP_S;
  if (body.timeout !== undefined && body.timeout !== null) timeout = Math.min(parseDuration(body.timeout, 'timeout'), WAIT_CAP_S);
  const exec = EXECUTIONS.get(op.execName);
  if (!exec || exec.state !== 'running' || timeout <= 0) return sendRun(ctx, 200, operationResource(op));
  return new Promise((resolve) => {
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      exec.waiters = exec.waiters.filter((w) => w !== done);
      if (!ctx.res.destroyed) sendRun(ctx, 200, operationResource(op));
      resolve();
    };
    const timer = setTimeout(done, timeout * 1000);
    exec.waiters.push(done);
    ctx.res.on('close', () => { if (!finished) { finished = true; clearTimeout(timer); exec.waiters = exec.waiters.filter((w) => w !== done); resolve(); } });
  });
}

// ===========================================================================
// 8. Emulator hooks
// ===========================================================================

function statsJson(prefix) {
  const out = {
    ...STATS,
    executions: { ...STATS.executions },
    tasks_running: runningTasks,
    tasks_queued: TASK_QUEUE.length,
    executions_provisioning: [...EXECUTIONS.values()].filter((e) => e.provisionTimer).length,
    objects: Object.fromEntries([...BUCKETS.values()].map((b) => [b.name, b.objects.size])),
  };
  if (prefix !== null) out.gcs_prefix = statsForPrefix(prefix);
  return out;
}

// GET /_emulator/stats[?prefix=P]: the counters (and, with prefix, the GCS
// requests and bytes of the object names starting with P).
function handleStats(ctx) {
  return sendJson(ctx, 200, statsJson(ctx.q.get('prefix')));
}

// POST /_emulator/stats/reset[?prefix=P]: answers the counters, then clears them
// (objects, executions and faults stay).
function handleStatsReset(ctx) {
  const out = statsJson(ctx.q.get('prefix'));
  resetStats();
  return sendJson(ctx, 200, out);
}

function latencyJson() {
  return { latency: LATENCY.latency ? LATENCY.latency.text : '0', start_latency: LATENCY.start ? LATENCY.start.text : '0' };
}

// GET|POST /_emulator/latency {"latency": D, "start_latency": D}: the latencies
// in force ("0" or null turns one off; a missing key leaves it as it is).
function handleLatency(ctx) {
  if (ctx.method === 'POST') {
    const body = parseJsonBody(ctx);
    const next = {};
    for (const [k, field] of [['latency', 'latency'], ['start_latency', 'start']]) {
      if (!(k in body)) continue;
      const l = body[k] === null ? null : parseLatency(body[k]);
      if (l === undefined) throw runErr(400, 'INVALID_ARGUMENT', `${k}: expected a duration (8s, 500ms, 1.5s, 2m, 0) or a range [MIN,MAX], got ${JSON.stringify(body[k])}`);
      next[field] = l;
    }
    for (const k of Object.keys(body)) if (k !== 'latency' && k !== 'start_latency') throw runErr(400, 'INVALID_ARGUMENT', `unknown latency setting "${k}"`);
    Object.assign(LATENCY, next);
    log(`latency: ${JSON.stringify(latencyJson())}`);
  }
  return sendJson(ctx, 200, latencyJson());
}

function handleFaults(ctx) {
  if (ctx.method === 'GET') return sendJson(ctx, 200, FAULTS);
  const body = parseJsonBody(ctx);
  setFaults(body);
  log(`faults: ${JSON.stringify(FAULTS)}`);
  return sendJson(ctx, 200, FAULTS);
}

function handleReset(ctx) {
  for (const exec of EXECUTIONS.values()) {
    exec.discarded = true;
    if (exec.provisionTimer) { clearTimeout(exec.provisionTimer); exec.provisionTimer = null; }
    for (const t of exec.tasks) {
      if (t.state === 'running') { t.killReason = 'shutdown'; hardKill(t); }
    }
  }
  EXECUTIONS.clear(); EXEC_BY_ID.clear(); OPERATIONS.clear(); TASK_QUEUE.length = 0;
  RESUMABLE.clear();
  initBuckets();
  if (CFG.stateDir) fs.rmSync(path.join(CFG.stateDir, 'objects'), { recursive: true, force: true });
  initJobs();
  resetStats();
  STATS.executions.running = 0;       // the discarded executions never finish
  setFaults({});
  log('reset');
  return sendJson(ctx, 200, { ok: true });
}

// POST /_emulator/service-accounts {"email", "condition"?}: define or update an account.
async function handleServiceAccounts(ctx) {
  if (ctx.method === 'GET') return sendJson(ctx, 200, { serviceAccounts: [...SERVICE_ACCOUNTS.values()].map(serviceAccountJson) });
  const body = parseJsonBody(ctx);
  const sa = await defineServiceAccount(body.email, body.condition === undefined ? null : body.condition);
  log(`service account ${sa.email}: ${sa.condition || 'unrestricted'}, metadata on 127.0.0.1:${sa.port}`);
  return sendJson(ctx, 200, serviceAccountJson(sa));
}

// POST /_emulator/jobs {"name", "serviceAccount"?}: create a job, or change its account.
function handleJobs(ctx) {
  const list = () => [...JOBS.values()].map((j) => ({ name: j.name, serviceAccount: j.serviceAccount || DEFAULT_SA, metadata_host: metadataHostFor(j.name) }));
  if (ctx.method === 'GET') return sendJson(ctx, 200, { jobs: list() });
  const body = parseJsonBody(ctx);
  if (typeof body.name !== 'string' || !/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(body.name)) throw new ApiError(400, 'invalid', `not a job name: ${body.name}`);
  const email = body.serviceAccount || null;
  if (email && email !== DEFAULT_SA && !SERVICE_ACCOUNTS.has(email)) throw new ApiError(400, 'invalid', `unknown service account ${email}: define it first`);
  if (!CFG.jobs.includes(body.name)) CFG.jobs.push(body.name);
  if (email) CFG.jobSa[body.name] = email; else delete CFG.jobSa[body.name];
  const job = JOBS.get(body.name);
  if (job) job.serviceAccount = email;
  else JOBS.set(body.name, { name: body.name, uid: crypto.randomUUID(), created: Date.now(), executionCount: 0, latest: null, serviceAccount: email });
  log(`job ${body.name}: runs as ${email || DEFAULT_SA}`);
  return sendJson(ctx, 200, list().find((j) => j.name === body.name));
}

function handleExpireTokens(ctx) {
  const n = TOKENS.size;
  TOKENS.clear();
  SELF_SIGNED.clear();
  return sendJson(ctx, 200, { expired: n });
}

function handleLogs(ctx, [id]) {
  const decoded = decodeURIComponent(id);
  const exec = EXEC_BY_ID.get(decoded) || EXECUTIONS.get(decoded);
  if (!exec) throw runErr(404, 'NOT_FOUND', `No execution ${decoded}`);
  const only = ctx.q.get('task');
  const parts = [];
  for (const t of exec.tasks) {
    if (only !== null && String(t.index) !== only) continue;
    const r = t.result;
    parts.push(Buffer.from(`=== task ${t.index} attempt ${t.attempt} ${t.state}${r ? ` exit=${r.exitCode}${r.termSignal ? ` signal=${r.termSignal}` : ''}` : ''} ===\n`));
    for (const c of t.output) parts.push(c.data);
  }
  if (exec.log.truncated) parts.push(Buffer.from('=== log truncated at 1 MB ===\n'));
  const data = Buffer.concat(parts);
  ctx.res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': data.length });
  ctx.res.end(data);
}

function handleHealth(ctx) {
  return sendJson(ctx, 200, { ok: true, port: PORT, auth: CFG.auth, bwrap: CFG.bwrap, instant: CFG.instant, executor: CFG.executor,
    ...latencyJson(),
    serviceAccounts: [...SERVICE_ACCOUNTS.values()].map(serviceAccountJson) });
}

// ===========================================================================
// 9. Router
// ===========================================================================

const SEG = '([^/]+)';
const RUN = `^/v2/projects/${SEG}/locations/${SEG}`;

// name: the endpoint template used in stats and fault filters.
// api: which error style the endpoint speaks.
const ROUTES = [
  // Cloud Run Admin API v2
  { api: 'run', name: 'jobs:run', re: new RegExp(`${RUN}/jobs/([^/:]+):run$`), methods: { POST: handleRunJob } },
  { api: 'run', name: 'jobs', re: new RegExp(`${RUN}/jobs$`), methods: { GET: handleListJobs } },
  { api: 'run', name: 'job', re: new RegExp(`${RUN}/jobs/([^/:]+)$`), methods: { GET: handleGetJob } },
  { api: 'run', name: 'executions', re: new RegExp(`${RUN}/jobs/([^/:]+)/executions$`), methods: { GET: handleListExecutions } },
  { api: 'run', name: 'executions:cancel', re: new RegExp(`${RUN}/jobs/([^/:]+)/executions/([^/:]+):cancel$`), methods: { POST: handleCancelExecution } },
  { api: 'run', name: 'execution', re: new RegExp(`${RUN}/jobs/([^/:]+)/executions/([^/:]+)$`), methods: { GET: handleGetExecution, DELETE: handleDeleteExecution } },
  { api: 'run', name: 'tasks', re: new RegExp(`${RUN}/jobs/([^/:]+)/executions/([^/:]+)/tasks$`), methods: { GET: handleListTasks } },
  { api: 'run', name: 'task', re: new RegExp(`${RUN}/jobs/([^/:]+)/executions/([^/:]+)/tasks/([^/:]+)$`), methods: { GET: handleGetTask } },
  { api: 'run', name: 'operations', re: new RegExp(`${RUN}/operations$`), methods: { GET: handleListOperations } },
  { api: 'run', name: 'operations:wait', re: new RegExp(`${RUN}/operations/([^/:]+):wait$`), methods: { POST: handleWaitOperation } },
  { api: 'run', name: 'operation', re: new RegExp(`${RUN}/operations/([^/:]+)$`), methods: { GET: handleGetOperation, DELETE: handleDeleteOperation } },
  // GCS JSON API (raw paths: object names stay percent-encoded until matched)
  { api: 'gcs', name: 'upload', re: /^\/upload\/storage\/v1\/b\/([^/]+)\/o\/?$/, methods: { POST: (c, m) => gcsUpload(c, decName(m[0])), PUT: (c, m) => gcsUpload(c, decName(m[0])), DELETE: (c, m) => gcsUpload(c, decName(m[0])) } },
  { api: 'gcs', name: 'objects', re: /^\/storage\/v1\/b\/([^/]+)\/o\/?$/, methods: { GET: (c, m) => gcsList(c, decName(m[0])) } },
  { api: 'gcs', name: 'media', re: /^\/download\/storage\/v1\/b\/([^/]+)\/o\/(.+)$/, methods: { GET: (c, m) => gcsGetObject(c, decName(m[0]), decName(m[1])) } },
  { api: 'gcs', name: 'object', re: /^\/storage\/v1\/b\/([^/]+)\/o\/(.+)$/, methods: { GET: (c, m) => gcsGetObject(c, decName(m[0]), decName(m[1])), DELETE: (c, m) => gcsDeleteObject(c, decName(m[0]), decName(m[1])) } },
  // the prefixless form the official Node client downloads from
  { api: 'gcs', name: 'object', re: /^\/b\/([^/]+)\/o\/(.+)$/, methods: { GET: (c, m) => gcsGetObject(c, decName(m[0]), decName(m[1])), DELETE: (c, m) => gcsDeleteObject(c, decName(m[0]), decName(m[1])) } },
  { api: 'gcs', name: 'objects', re: /^\/b\/([^/]+)\/o\/?$/, methods: { GET: (c, m) => gcsList(c, decName(m[0])) } },
  { api: 'gcs', name: 'bucket', re: /^(?:\/storage\/v1)?\/b\/([^/]+)\/?$/, methods: { GET: (c, m) => gcsGetBucket(c, decName(m[0])) } },
  { api: 'gcs', name: 'buckets', re: /^(?:\/storage\/v1)?\/b\/?$/, methods: { GET: (c) => gcsListBuckets(c) } },
  // OAuth and metadata
  { api: 'oauth', name: 'token', re: /^\/(token|oauth2\/v4\/token)$/, methods: { POST: handleToken } },
  { api: 'metadata', name: 'metadata', re: /^\/computeMetadata\/v1(\/.*)?$/, methods: { GET: handleMetadata } },
  // emulator hooks
  { api: 'emu', name: '_emulator/stats', re: /^\/_emulator\/stats$/, methods: { GET: handleStats } },
  { api: 'emu', name: '_emulator/stats/reset', re: /^\/_emulator\/stats\/reset$/, methods: { POST: handleStatsReset } },
  { api: 'emu', name: '_emulator/latency', re: /^\/_emulator\/latency$/, methods: { GET: handleLatency, POST: handleLatency } },
  { api: 'emu', name: '_emulator/faults', re: /^\/_emulator\/faults$/, methods: { GET: handleFaults, POST: handleFaults } },
  { api: 'emu', name: '_emulator/reset', re: /^\/_emulator\/reset$/, methods: { POST: handleReset } },
  { api: 'emu', name: '_emulator/expire-tokens', re: /^\/_emulator\/expire-tokens$/, methods: { POST: handleExpireTokens } },
  { api: 'emu', name: '_emulator/logs', re: /^\/_emulator\/executions\/([^/]+)\/logs$/, methods: { GET: handleLogs } },
  { api: 'emu', name: '_emulator/health', re: /^\/_emulator\/health$/, methods: { GET: handleHealth } },
  { api: 'emu', name: '_emulator/service-accounts', re: /^\/_emulator\/service-accounts$/, methods: { GET: handleServiceAccounts, POST: handleServiceAccounts } },
  { api: 'emu', name: '_emulator/jobs', re: /^\/_emulator\/jobs$/, methods: { GET: handleJobs, POST: handleJobs } },
];

// Query parameters every Google API accepts; Cloud Run rejects others.
const RUN_SYSTEM_PARAMS = new Set(['$alt', 'alt', 'prettyPrint', '$prettyPrint', 'fields', '$fields', 'key',
  'quotaUser', 'access_token', 'callback', '$callback', 'upload_protocol', 'uploadType', '$.xgafv']);
const RUN_QUERY_PARAMS = {
  executions: ['pageSize', 'pageToken', 'showDeleted'], tasks: ['pageSize', 'pageToken', 'showDeleted'],
  jobs: ['pageSize', 'pageToken', 'showDeleted'], operations: ['filter', 'pageSize', 'pageToken'],
  execution: ['validateOnly', 'etag'],
};

function sendJson(ctx, status, obj) {
  const data = Buffer.from(JSON.stringify(obj));
  ctx.res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': data.length });
  ctx.res.end(data);
}

function sendError(ctx, api, e) {
  if (e.httpCode === 304) { ctx.res.writeHead(304); ctx.res.end(); return; }
  const headers = { 'Content-Type': 'application/json; charset=UTF-8' };
  if (e.httpCode === 401) headers['WWW-Authenticate'] = 'Bearer realm="https://accounts.google.com/"';
  const data = Buffer.from(JSON.stringify(errorBody(api === 'gcs' || api === 'oauth' ? api : 'run', e)));
  headers['Content-Length'] = data.length;
  ctx.res.writeHead(e.httpCode, headers);
  ctx.res.end(data);
}

function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) { reject(gcsErr(413, 'uploadTooLarge', 'Request body too large.')); req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// Decode %XX in each segment of a Cloud Run path (%2F stays a literal slash in
// the segment, never a separator).
function decodeRunPath(p) {
  try { return p.split('/').map((s) => decodeURIComponent(s).replace(/\//g, '%2F')).join('/'); } catch { return p; }
}

function matchRoute(rawPath) {
  const runPath = rawPath.startsWith('/v2/') ? decodeRunPath(rawPath) : rawPath;
  for (const r of ROUTES) {
    const m = r.re.exec(r.api === 'run' ? runPath : rawPath);
    if (m) return { route: r, params: m.slice(1) };
  }
  return null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function handle(req, res) {
  const t0 = Date.now();
  const rawUrl = req.url || '/';
  const qi = rawUrl.indexOf('?');
  const rawPath = qi >= 0 ? rawUrl.slice(0, qi) : rawUrl;
  const q = new URLSearchParams(qi >= 0 ? rawUrl.slice(qi + 1) : '');
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  const found = matchRoute(rawPath);
  const route = found ? found.route : null;
  const api = route ? route.api : (rawPath.startsWith('/v2/') ? 'run' : 'gcs');
  let name = route ? route.name : 'unknown';
  if (name === 'object' && method === 'GET' && q.get('alt') === 'media') name = 'media';
  const ctx = { req, res, method: req.method, path: rawPath, q, query: q, api, route, body: Buffer.alloc(0), enumInt: false };
  res.on('finish', () => {
    if (CFG.verbose) log(`${req.method} ${rawUrl} -> ${res.statusCode} (${Date.now() - t0} ms)`);
  });
  if (api !== 'emu') {
    const key = `${method} ${name}`;
    STATS.calls[key] = (STATS.calls[key] || 0) + 1;
    if (route && api === 'gcs') {
      STATS.gcs.requests++;
      STATS.gcs.by_method[req.method] = (STATS.gcs.by_method[req.method] || 0) + 1;
    } else if (api === 'run') {
      STATS.run_requests++;
    }
  }
  if (api === 'gcs') res.on('finish', () => countByName(ctx));
  try {
    // --latency: the request waits before it is handled at all (faults,
    // auth, preconditions then apply as without it, in arrival order).
    if ((api === 'run' || api === 'gcs') && LATENCY.latency) {
      const d = drawLatency(LATENCY.latency);
      if (d > 0) await sleep(d);
    }
    if (!route) {
      if (api === 'run') throw runErr(404, 'NOT_FOUND', `The requested URL ${rawPath} was not found on this server.`);
      throw gcsErr(404, 'notFound', 'Not Found');
    }
    const handler = route.methods[method];
    if (!handler) {
      res.setHeader('Allow', Object.keys(route.methods).join(', '));
      if (api === 'gcs') throw gcsErr(405, 'methodNotAllowed', `Method ${req.method} is not allowed on this resource.`);
      throw runErr(405, 'UNIMPLEMENTED', `Method ${req.method} is not allowed on ${rawPath}.`);
    }
    // Faults (never on /_emulator/*).
    let fault = null;
    if (api !== 'emu') {
      const f = pickFault(method, name);
      if (f.delay) await sleep(f.delay);
      fault = f.fault;
      if (fault) STATS.faults_injected[fault] = (STATS.faults_injected[fault] || 0) + 1;
      if (fault === 'reset') {
        if (CFG.verbose) log(`${req.method} ${rawUrl} -> injected reset`);
        req.socket.destroy();
        return;
      }
      if (fault === 'hang') {
        // Frozen: no answer, ever (the socket closes when the faults change).
        if (CFG.verbose) log(`${req.method} ${rawUrl} -> injected hang`);
        HUNG.add(req.socket);
        req.socket.on('close', () => HUNG.delete(req.socket));
        return;
      }
    }
    ctx.body = await readBody(req, MAX_UPLOAD);
    if (name === 'upload') {
      ctx.uploadBytes = ctx.body.length;
      STATS.gcs.bytes_uploaded += ctx.body.length;
    }
    if (fault && fault !== 'reset_after') throw faultError(api, fault);
    if (fault === 'reset_after') {
      // The request takes effect but its response is lost.
      const destroy = () => { req.socket.destroy(); return res; };
      res.writeHead = destroy; res.end = destroy; res.write = () => true;
    }
    if (api === 'run' || api === 'gcs') checkAuth(ctx);
    if (api === 'run') {
      const alt = q.get('$alt') || q.get('alt');
      if (alt && !/^json(;enum-encoding=(int|string))?$/.test(alt)) throw runErr(400, 'INVALID_ARGUMENT', `Invalid value for $alt: ${alt}`);
      ctx.enumInt = !!alt && alt.includes('enum-encoding=int');
      const allowed = RUN_QUERY_PARAMS[name] || [];
      for (const k of q.keys()) {
        if (!RUN_SYSTEM_PARAMS.has(k) && !allowed.includes(k)) {
          throw runErr(400, 'INVALID_ARGUMENT', `Invalid JSON payload received. Unknown name "${k}": Cannot bind query parameter. Field '${k}' could not be found in request message.`);
        }
      }
    }
    await handler(ctx, found.params);
  } catch (e) {
    if (e instanceof ApiError) {
      if (!res.headersSent) sendError(ctx, api, e);
      return;
    }
    log(`internal error on ${req.method} ${rawUrl}: ${e && e.stack}`);
    if (!res.headersSent) sendError(ctx, api, api === 'gcs' ? gcsErr(500, 'backendError', 'Internal Error') : runErr(500, 'INTERNAL', 'Internal error encountered.'));
  }
}

// ===========================================================================
// 10. Server start and shutdown
// ===========================================================================

function probeBwrap() {
  const r = spawnSync('bwrap', [...bwrapArgs('/usr/bin/true'), '/usr/bin/true'], { stdio: 'ignore', timeout: 10000 });
  return r.status === 0;
}

async function main() {
  for (const f of CFG.keyFiles) loadKeyFile(f);
  for (const { email, condition } of CFG.serviceAccounts) {
    try { await defineServiceAccount(email, condition); } catch (e) { die(`--service-account ${email}: ${e.message}`); }
  }
  for (const [job, email] of Object.entries(CFG.jobSa)) {
    if (email !== DEFAULT_SA && !SERVICE_ACCOUNTS.has(email)) die(`--job ${job}=${email}: no --service-account ${email}`);
  }
  if (CFG.bwrap !== false && !CFG.instant) {
    const works = probeBwrap();
    if (CFG.bwrap === true && !works) log('warning: --bwrap given but bwrap does not work here; tasks will fail to start');
    if (CFG.bwrap === null) CFG.bwrap = works;
  }
  CFG.bwrap = !!CFG.bwrap;
  initBuckets();
  initJobs();
  loadPersisted();

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e) => { log(`unhandled: ${e && e.stack}`); try { res.destroy(); } catch { /* */ } });
  });
  server.keepAliveTimeout = 65000;
  server.headersTimeout = 66000;
  server.requestTimeout = 0;
  server.on('clientError', (err, socket) => { try { socket.destroy(); } catch { /* */ } });
  server.listen(CFG.port, '127.0.0.1', () => {
    PORT = server.address().port;
    process.stdout.write(`listening on http://127.0.0.1:${PORT}\n`);
    log(`ready: auth=${CFG.auth ? 'on' : 'off'} bwrap=${CFG.bwrap} instant=${CFG.instant} executor=${CFG.executor} ` +
      `latency=${latencyJson().latency} start-latency=${latencyJson().start_latency} ` +
      `jobs=${CFG.jobs.join(',')} buckets=${CFG.buckets.join(',')} keys=${KEYS.length}`);
    if (CFG.auth && KEYS.length === 0) log('note: no --test-key-file: /token accepts JWTs without checking their signature');
  });
  server.on('error', (e) => die(`cannot listen: ${e.message}`));

  const shutdown = (sig) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log(`${sig}: shutting down`);
    for (const exec of EXECUTIONS.values()) {
      for (const t of exec.tasks) if (t.proc) { t.killReason = 'shutdown'; hardKill(t); }
    }
    server.close();
    server.closeAllConnections();
    for (const sa of SERVICE_ACCOUNTS.values()) if (sa.server) { sa.server.close(); sa.server.closeAllConnections(); }
    setTimeout(() => process.exit(0), 100);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => shutdown('SIGHUP'));
}

main();
