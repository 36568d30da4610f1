// A real OpenID provider for Verdict's end-to-end tests: oidc-provider (an
// OpenID Certified implementation) on 127.0.0.1, with one confidential
// client that gets JWT access tokens through the client_credentials grant.
//
//   node provider.js [PORT]      (or OIDC_PORT; 0 or nothing picks a free port)
//
// The client is client_id "payments" with the secret in OIDC_CLIENT_SECRET
// (or the second argument), authenticated with client_secret_basic or
// client_secret_post. Resource indicators (RFC 8707) choose the audience:
//
//   resource=urn:verdict:orders   JWT access token, aud urn:verdict:orders, RS256
//   resource=urn:verdict:callers  JWT access token, aud urn:verdict:callers, RS256
//                                 (a service token: it proves the calling service)
//   resource=urn:other:api        JWT access token, aud urn:other:api, ES256
//
// Every access token also carries roles: ["viewer"]. The signing keys (one
// RSA, one P-256) are generated at start and live only in memory.
//
// The first line on stdout is the issuer URL, http://127.0.0.1:PORT, printed
// once the provider answers. With OIDC_EXIT_ON_STDIN_CLOSE=1 the process
// exits when its stdin closes, so it cannot outlive the test that started it.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);
const secret = process.argv[3] ?? process.env.OIDC_CLIENT_SECRET;
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`provider.js: bad port ${process.argv[2] ?? process.env.OIDC_PORT}`);
  process.exit(2);
}
if (!secret) {
  console.error('provider.js: set OIDC_CLIENT_SECRET (or pass the secret as the second argument)');
  process.exit(2);
}

const resources = {
  'urn:verdict:orders': { scope: 'orders:read orders:write inventory:reserve', alg: 'RS256' },
  'urn:verdict:callers': { scope: 'inventory:reserve', alg: 'RS256' },
  'urn:other:api': { scope: 'other:read', alg: 'ES256' },
};

function signingKey(type, options) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), use: 'sig' };
}

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: 'payments',
      client_secret: secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    jwks: {
      keys: [
        signingKey('rsa', { modulusLength: 2048 }),
        signingKey('ec', { namedCurve: 'P-256' }),
      ],
    },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => undefined, // no resource: an opaque token, not for Verdict
        useGrantedResource: () => false,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          const rs = resources[resourceIndicator];
          if (!rs) {
            throw new errors.InvalidTarget();
          }
          return {
            audience: resourceIndicator,
            scope: rs.scope,
            accessTokenFormat: 'jwt',
            accessTokenTTL: 5 * 60,
            jwt: { sign: { alg: rs.alg } },
          };
        },
      },
    },
    ttl: { ClientCredentials: 5 * 60 },
    extraTokenClaims: () => ({ roles: ['viewer'] }),
  });
  provider.on('server_error', (ctx, err) => console.error('provider.js: server error:', err));
  server.on('request', provider.callback());
  process.stdout.write(`${issuer}\n`);
});
server.on('error', (err) => {
  console.error(`provider.js: ${err.message}`);
  process.exit(1);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (process.env.OIDC_EXIT_ON_STDIN_CLOSE === '1') {
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}
