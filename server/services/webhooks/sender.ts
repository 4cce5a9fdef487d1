import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { Target } from './target';

/** What a receiver answered: its status, or why there was none. */
export interface SendResult {
  responseCode: number | null;
  error: string | null;
  ms: number;
}

/** Bytes of a response read before it is dropped: only the status counts. */
const RESPONSE_BYTES_READ = 4096;

/**
 * POSTs `body` to the checked target, connecting to the address the guard checked (TLS still
 * verifies the URL's host name). Never follows redirects: a 3xx is an answer like any other.
 */
export function send(target: Target, headers: Record<string, string>, body: string, timeoutMs: number): Promise<SendResult> {
  const started = performance.now();
  const pinned: LookupFunction = (_host, options, callback) => {
    if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: Array<{ address: string; family: number }>) => void)(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
  const client = target.url.protocol === 'https:' ? https : http;
  return new Promise((resolve) => {
    let settled = false;
    const done = (result: Omit<SendResult, 'ms'>) => {
      if (settled) return;
      settled = true;
      resolve({ ...result, ms: Math.round(performance.now() - started) });
    };
    const req = client.request(
      target.url,
      { method: 'POST', lookup: pinned, timeout: timeoutMs, headers: { 'content-type': 'application/json', 'user-agent': 'Downstream-Webhooks/1', 'content-length': Buffer.byteLength(body), ...headers } },
      (res) => {
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > RESPONSE_BYTES_READ) res.destroy();
        });
        res.on('close', () => done({ responseCode: res.statusCode ?? null, error: null }));
        res.on('error', () => done({ responseCode: res.statusCode ?? null, error: null }));
      },
    );
    // The whole exchange, not only idle time, must end within the timeout.
    const timer = setTimeout(() => {
      req.destroy();
      done({ responseCode: null, error: `no answer within ${timeoutMs} ms` });
    }, timeoutMs);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (err) => done({ responseCode: null, error: err.message }));
    req.on('close', () => clearTimeout(timer));
    req.end(body);
  });
}
