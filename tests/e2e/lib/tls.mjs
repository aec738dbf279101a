// A test PKI made with the openssl binary: a CA of the test's own and server certificates for
// 127.0.0.1 signed by it, so HTTPS tests trust exactly what they made, never the system store.
import { spawnSync } from 'node:child_process';
import { writeFileSync, renameSync, readFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { join } from 'node:path';

function openssl(args, cwd) {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8', timeout: 30000 });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  return r.stdout;
}

const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

export class TestCA {
  // Makes the CA (key and self-signed certificate, ca.pem) in dir.
  constructor(dir) {
    this.dir = dir;
    this.certPath = join(dir, 'ca.pem');
    openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
      '-subj', '/CN=arun test CA'], dir);
    writeFileSync(join(dir, 'index.txt'), '');
    // `openssl ca` rather than `x509 -req`: it takes explicit start and end dates (an expired
    // certificate for the tests of refusals).
    writeFileSync(join(dir, 'ca.cnf'), [
      '[ca]', 'default_ca = test', '[test]', 'database = index.txt', 'new_certs_dir = .',
      'serial = serial', 'default_md = sha256', 'policy = any', 'unique_subject = no',
      'x509_extensions = server', 'email_in_dn = no',
      '[any]', 'commonName = supplied',
      '[server]', 'subjectAltName = IP:127.0.0.1, DNS:localhost', 'basicConstraints = CA:FALSE',
      'extendedKeyUsage = serverAuth', ''].join('\n'));
    this.pem = readFileSync(this.certPath);
  }

  // Issues a certificate for 127.0.0.1 with serial (hex, first digit below 8) and a new key,
  // written to certPath and keyPath by rename, as a renewal tool replaces them. start and end
  // (YYYYMMDDHHMMSSZ) default to now and two days on.
  issue({ serial, certPath, keyPath, start, end }) {
    const d = this.dir;
    openssl(['req', ...ec, '-keyout', 'next.key', '-out', 'next.csr', '-subj', '/CN=127.0.0.1'], d);
    writeFileSync(join(d, 'serial'), `${serial}\n`);
    const dates = start ? ['-startdate', start, '-enddate', end] : ['-days', '2'];
    openssl(['ca', '-batch', '-config', 'ca.cnf', '-cert', 'ca.pem', '-keyfile', 'ca.key',
      '-in', 'next.csr', '-out', 'next.pem', '-notext', ...dates], d);
    renameSync(join(d, 'next.key'), keyPath);
    renameSync(join(d, 'next.pem'), certPath);
  }
}

// The serial (upper-case hex) of the certificate a new TLS connection to 127.0.0.1:port gets,
// verified against ca.
export function peerSerial(port, ca) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, ALPNProtocols: ['http/1.1'] }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.end();
      resolve(serial);
    });
    s.on('error', reject);
  });
}

// GET url over HTTPS trusting ca; resolves {status, json}.
export function httpsGetJson(url, ca) {
  return new Promise((resolve, reject) => {
    https.get(url, { ca, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, json: body ? JSON.parse(body) : null }));
    }).on('error', reject);
  });
}
