// The console as arun serves it (src/http/assets.c, console/): the page at / and its assets,
// with the headers a browser relies on (content type, cache, CSP), each encoding decoding to the
// same bytes, 304 on a matching ETag, and the page reachable without a key under auth.mode keys
// (the APIs it calls check their own access). The page's behaviour is tests/browser's.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { gunzipSync, brotliDecompressSync } from 'node:zlib';
import { Arun } from './lib/arun.mjs';

// GET (or another method) with headers; resolves to {status, headers, body: Buffer} as sent.
function get(url, headers = {}, method = 'GET') {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the console served at /', () => {
  let arun;
  before(async () => { arun = await new Arun({ config: 'auth:\n  mode: keys\n' }).start(); });
  after(async () => { await arun.cleanup(); });

  test('GET / is the page, revalidated on every load, with a CSP, and needs no key', async () => {
    const r = await get(`${arun.url}/`);
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(r.headers['cache-control'], 'no-cache');
    assert.equal(r.headers['content-security-policy'], "default-src 'self'");
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    assert.match(r.headers.etag, /^"[^"]+"$/);
    const html = r.body.toString('utf8');
    assert.match(html, /<!doctype html>/i);
    assert.match(html, /<title>arun console<\/title>/);
    // Nothing is fetched from elsewhere: every script and stylesheet is one of arun's.
    for (const m of html.matchAll(/(?:src|href)="([^"]+)"/g)) {
      assert.match(m[1], /^\/[^/]/, `${m[1]} is not served by arun`);
    }
  });

  test('the script is served hashed and immutable, as identity, gzip and br of the same bytes', async () => {
    const html = (await get(`${arun.url}/`)).body.toString('utf8');
    const js = /<script[^>]+src="(\/assets\/[^"]+\.js)"/.exec(html);
    assert.ok(js, `no module script in ${html}`);
    const plain = await get(`${arun.url}${js[1]}`);
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['content-type'], 'text/javascript; charset=utf-8');
    assert.equal(plain.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal(plain.headers.vary, 'Accept-Encoding');
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.ok(plain.body.length > 0);

    const gz = await get(`${arun.url}${js[1]}`, { 'accept-encoding': 'gzip' });
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.ok(gz.body.length < plain.body.length);
    assert.deepEqual(gunzipSync(gz.body), plain.body);

    const br = await get(`${arun.url}${js[1]}`, { 'accept-encoding': 'gzip, deflate, br' });
    assert.equal(br.headers['content-encoding'], 'br');
    assert.ok(br.body.length <= gz.body.length);
    assert.deepEqual(brotliDecompressSync(br.body), plain.body);
    assert.equal(br.headers.etag, plain.headers.etag); // one validator for the bytes, whatever the coding

    const head = await get(`${arun.url}${js[1]}`, { 'accept-encoding': 'br' }, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal(Number(head.headers['content-length']), br.body.length);
  });

  test('a browser that has the page gets 304 and no body', async () => {
    const first = await get(`${arun.url}/`, { 'accept-encoding': 'br' });
    const again = await get(`${arun.url}/`, { 'if-none-match': first.headers.etag, 'accept-encoding': 'br' });
    assert.equal(again.status, 304);
    assert.equal(again.body.length, 0);
    assert.equal(again.headers.etag, first.headers.etag);
    const other = await get(`${arun.url}/`, { 'if-none-match': '"not-this-build"' });
    assert.equal(other.status, 200);
  });

  test('an asset that is not in the binary is a 404 in the OpenAI shape; the API still needs a key', async () => {
    const r = await get(`${arun.url}/assets/nothing-here.js`);
    assert.equal(r.status, 404);
    assert.equal(JSON.parse(r.body).error.type, 'not_found_error');
    const api = await get(`${arun.url}/v1/engines`);
    assert.equal(api.status, 401);
  });
});
