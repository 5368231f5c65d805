// A real OpenID provider (npm oidc-provider, panva's certified implementation) issuing
// DPoP-bound JWT access tokens (features.dPoP: the token carries cnf.jkt), and a real DPoP
// client (npm dpop, panva's RFC 9449 implementation) that obtains one with the
// client-credentials grant and then makes a proof for each request asked of it.
//
// Prints one JSON line: {"issuer", "jwks_url", "access_token", "token_type"}. Then reads
// lines "METHOD URL" on stdin and answers each with a proof (ath bound to the token).
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import Provider from 'oidc-provider';
import * as dpop from 'dpop';

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const signing = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'ES256', kid: 'people-ec' };

// The issuer identifier is the URL it is reached at: the port first, then the provider.
let handler = (_req, res) => res.end();
const server = createServer((req, res) => handler(req, res));
server.listen(0, '127.0.0.1');
await new Promise((resolve) => server.once('listening', resolve));
const base = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(base, {
  clients: [{
    client_id: 'shop',
    client_secret: 'shop-secret',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    id_token_signed_response_alg: 'ES256',
  }],
  jwks: { keys: [signing] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://api.example.com',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        audience: 'web',
        scope: 'orders:read',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
});

handler = provider.callback();

const keypair = await dpop.generateKeyPair('ES256');
const tokenUrl = `${base}/token`;
const body = new URLSearchParams({ grant_type: 'client_credentials', resource: 'https://api.example.com', scope: 'orders:read' });
const basic = Buffer.from('shop:shop-secret').toString('base64');
const ask = async (nonce) => fetch(tokenUrl, {
  method: 'POST',
  headers: {
    authorization: `Basic ${basic}`,
    'content-type': 'application/x-www-form-urlencoded',
    dpop: await dpop.generateProof(keypair, tokenUrl, 'POST', nonce),
  },
  body,
});
let res = await ask();
if (res.status === 400 && res.headers.get('dpop-nonce')) {
  res = await ask(res.headers.get('dpop-nonce'));
}
const token = await res.json();
if (!token.access_token) {
  console.error(JSON.stringify(token));
  process.exit(1);
}
console.log(JSON.stringify({
  issuer: base,
  jwks_url: `${base}/jwks`,
  access_token: token.access_token,
  token_type: token.token_type,
}));

for await (const line of createInterface({ input: process.stdin })) {
  const [htm, htu] = line.trim().split(' ');
  if (!htm) continue;
  console.log(await dpop.generateProof(keypair, htu, htm, undefined, token.access_token));
}
server.close();
