// A real OpenID Connect provider (the certified `oidc-provider` package) on loopback, for
// the end-to-end tests: authorization code flow with PKCE for OHIF, a login form of its
// own that checks passwords, JWT access tokens for the audience the gate expects, carrying
// the roles and the claims the policy reads (realm_access.roles, name, patient_id), as
// Keycloak does in production.
//
// Configuration: one JSON argument
//   {"port", "audience", "clients": [{"client_id", "redirect_uris", "post_logout_redirect_uris"}],
//    "users": {"login": {"password", "claims": {...}}}, "access_token_ttl"}
// Prints one JSON line {"issuer", "jwks_uri"} when it listens; stops on SIGTERM or when
// stdin closes.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const VIEWER = resolve(dirname(fileURLToPath(import.meta.url)), '../../../viewer');
const { default: Provider } = await import(
  pathToFileURL(join(VIEWER, 'node_modules/oidc-provider/lib/index.js')).href);

const options = JSON.parse(process.argv[2] || '{}');
const port = Number(options.port);
const issuer = `http://127.0.0.1:${port}`;
const audience = options.audience || 'neuronova';
const resource = `urn:neuronova:${audience}`;
const users = options.users || {};
const scope = 'openid profile';

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'e2e-rs256', use: 'sig', alg: 'RS256' };

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function userClaims(accountId) {
  const user = users[accountId];
  return user ? { sub: accountId, ...(user.claims || {}) } : undefined;
}

const configuration = {
  clients: (options.clients || []).map((client) => ({
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    application_type: 'web',
    ...client,
  })),
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], profile: ['name', 'patient_id', 'realm_access', 'preferred_username'] },
  scopes: ['openid', 'profile', 'offline_access'],
  ttl: { AccessToken: Number(options.access_token_ttl || 600), IdToken: 600, Session: 3600, Grant: 3600,
         Interaction: 600, AuthorizationCode: 60 },
  features: {
    devInteractions: { enabled: false },  // our own login form below checks passwords
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // OHIF sends no `resource` parameter: every access token is for NeuroNova.
      defaultResource: async () => resource,
      useGrantedResource: async () => true,
      getResourceServerInfo: async () => ({
        scope,
        audience,
        accessTokenTTL: Number(options.access_token_ttl || 600),
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  // The claims the gate reads, in the access token (Keycloak puts realm roles there too).
  extraTokenClaims: async (ctx, token) => {
    const claims = token.accountId ? userClaims(token.accountId) : undefined;
    if (!claims) return undefined;
    const { sub, ...rest } = claims;
    return rest;
  },
  findAccount: async (ctx, id) => (users[id] ? { accountId: id, claims: async () => userClaims(id) } : undefined),
  // A first-party client: no consent screen, the grant is made on login.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(scope);
    grant.addOIDCClaims(['name', 'patient_id', 'realm_access']);
    grant.addResourceScope(resource, scope);
    await grant.save();
    return grant;
  },
  interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
  clientBasedCORS: (ctx, origin, client) => client.redirectUris.some((uri) => new URL(uri).origin === origin),
  renderError: async (ctx, out, error) => {
    ctx.type = 'html';
    ctx.body = `<!doctype html><title>Error</title><h1>${escapeHtml(out.error)}</h1><p>${escapeHtml(out.error_description || '')}</p>`;
  },
};

const provider = new Provider(issuer, configuration);
const handle = provider.callback();
let logins = 0;

function loginPage(uid, message) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Sign in - Test IdP</title></head>
<body><h1>Test identity provider</h1><p id="message">${escapeHtml(message || '')}</p>
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>User <input id="username" name="username" autocomplete="username" autofocus></label>
<label>Password <input id="password" name="password" type="password" autocomplete="current-password"></label>
<button id="sign-in" type="submit">Sign in</button></form></body></html>`;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(req, res) {
  const match = req.url.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/);
  if (!match) return false;
  const details = await provider.interactionDetails(req, res);
  if (match[1] !== details.uid) throw new Error('interaction mismatch');
  if (req.method === 'GET') {
    if (details.prompt.name === 'login') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(loginPage(details.uid));
    } else {
      // consent for a first-party client: granted (loadExistingGrant made the grant)
      await provider.interactionFinished(req, res, { consent: {} }, { mergeWithLastSubmission: true });
    }
    return true;
  }
  if (req.method === 'POST' && match[2]) {
    const form = await readForm(req);
    const login = form.get('username') || '';
    const user = users[login];
    if (!user || user.password !== form.get('password')) {
      res.writeHead(401, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(loginPage(details.uid, 'Wrong user name or password.'));
      return true;
    }
    logins++;
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return true;
  }
  return false;
}

const server = createServer(async (req, res) => {
  try {
    if (req.url === '/test/stats') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ logins }));
      return;
    }
    if (req.url.startsWith('/interaction/') && await interaction(req, res)) return;
    handle(req, res);
  } catch (error) {
    res.writeHead(500, { 'Content-Type': 'text/plain' });
    res.end(String(error));
  }
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks` }) + '\n');
});

function stop() {
  server.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
