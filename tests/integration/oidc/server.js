// A real OpenID Connect provider (oidc-provider) for Tollway's OIDC integration tests.
//
// Usage: node server.js PORT   (or PORT=... node server.js); listens on 127.0.0.1 only.
// The issuer is http://127.0.0.1:PORT. Confidential clients get RS256 JWT access tokens for
// the resource https://tollway.test (the default) or https://other.test through the
// client_credentials grant, with email/groups/roles claims per client.
//
// Test-only admin endpoints (loopback callers only):
//   POST /_admin/rotate                 new signing key; the JWKS keeps the previous one too
//   POST /_admin/disable?client_id=ID   the IdP stops issuing tokens to that client
//   POST /_admin/groups?client_id=ID&groups=a,b   the groups claim of that client's next tokens
//                                       (empty: none), as when a user leaves a group
//   GET  /_admin/state                  the active kid, the published kids, disabled clients
// Keys and clients live in oidc-provider's static configuration, so each change rebuilds the
// provider; JWT access tokens are self-contained, so tokens issued before stay verifiable.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';

import { Provider, errors } from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.js PORT');
  process.exit(2);
}
const host = '127.0.0.1';
const issuer = `http://${host}:${port}`;

const DEFAULT_RESOURCE = 'https://tollway.test';
const RESOURCES = new Set([DEFAULT_RESOURCE, 'https://other.test']);

// client_id -> [secret, claims added to its access tokens, access token lifetime in seconds]
const CLIENTS = {
  'alice-cli': ['alice-secret', { email: 'alice@example.com', groups: ['research', 'ml'], roles: ['viewer', 'team_admin'] }, 300],
  'ops-bot': ['ops-secret', { email: 'ops@example.com', groups: ['platform', 'tollway-admins'] }, 300],
  'bob-cli': ['bob-secret', { email: 'bob@example.com', groups: 'research' }, 300],
  // Lifetimes are whole seconds from a floored iat: 2 s leaves at least 1 s to verify once.
  'short-lived': ['short-secret', { email: 'short@example.com', groups: [] }, 2],
  // Groups changed by tests through /_admin/groups.
  'carol-cli': ['carol-secret', { email: 'Carol@Example.com', name: 'Carol', groups: ['research', 'ml'] }, 300],
  'dana-cli': ['dana-secret', { email: 'dana@example.com', groups: ['research'] }, 300],
};

function newSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
}

const state = { keys: [newSigningKey()], disabled: new Set() };
const activeKid = () => state.keys[0].kid;

function buildProvider() {
  const clients = Object.entries(CLIENTS)
    .filter(([clientId]) => !state.disabled.has(clientId))
    .map(([clientId, [secret]]) => ({
      client_id: clientId,
      client_secret: secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    }));
  return new Provider(issuer, {
    clients,
    jwks: { keys: state.keys },
    cookies: { keys: ['tollway-test-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? DEFAULT_RESOURCE,
        getResourceServerInfo: async (_ctx, resource, client) => {
          if (!RESOURCES.has(resource)) throw new errors.InvalidTarget();
          return {
            scope: 'api',
            audience: resource,
            accessTokenFormat: 'jwt',
            accessTokenTTL: CLIENTS[client.clientId][2],
            jwt: { sign: { alg: 'RS256', kid: activeKid() } },
          };
        },
      },
    },
    extraTokenClaims: async (_ctx, token) => CLIENTS[token.clientId]?.[1],
  });
}

let handle = buildProvider().callback();

function admin(req, res) {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/_admin/rotate' && req.method === 'POST') {
    // Keep the previous key published so tokens signed with it verify until they expire.
    state.keys = [newSigningKey(), state.keys[0]];
  } else if (url.pathname === '/_admin/disable' && req.method === 'POST') {
    const clientId = url.searchParams.get('client_id');
    if (!(clientId in CLIENTS)) {
      res.writeHead(404).end();
      return;
    }
    state.disabled.add(clientId);
  } else if (url.pathname === '/_admin/groups' && req.method === 'POST') {
    const clientId = url.searchParams.get('client_id');
    if (!(clientId in CLIENTS)) {
      res.writeHead(404).end();
      return;
    }
    const groups = url.searchParams.get('groups') ?? '';
    CLIENTS[clientId][1] = { ...CLIENTS[clientId][1], groups: groups ? groups.split(',') : [] };
  } else if (url.pathname !== '/_admin/state') {
    res.writeHead(404).end();
    return;
  }
  if (req.method === 'POST') handle = buildProvider().callback();
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({
    issuer,
    active_kid: activeKid(),
    published_kids: state.keys.map((key) => key.kid),
    disabled_clients: [...state.disabled],
  }));
}

const server = createServer((req, res) => {
  if (req.url.startsWith('/_admin/')) {
    const remote = req.socket.remoteAddress;
    if (remote !== '127.0.0.1' && remote !== '::ffff:127.0.0.1') {
      res.writeHead(403).end();
      return;
    }
    admin(req, res);
    return;
  }
  handle(req, res);
});

server.listen(port, host, () => {
  console.log(`oidc test provider ready: ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
