// A local OpenID Connect provider for vitalwatch's tests: panva's oidc-provider (OpenID Certified),
// configured from JSON, with a minimal login form a WebDriver-driven browser can fill in.
//
//   node provider.mjs --config FILE        # or: --config-json '{"clients": [...], ...}'
//
// Prints `LISTENING <issuer>` on stdout once it accepts connections (port 0 = a free port).
// Configuration (every key optional except clients):
//   host            "127.0.0.1"
//   port            0 (a free port)
//   issuer          "http://<host>:<port>" (must name this listener if given)
//   clients         [{client_id, client_secret, redirect_uris: [...], token_endpoint_auth_method
//                     ("client_secret_basic" | "client_secret_post"), id_token_signed_response_alg
//                     ("RS256" | "ES256"), ...any other oidc-provider client metadata}]
//   users           [{sub, password, email, name, preferred_username, ...any other claim
//                     (groups, roles, ...)}]: the login form checks username (= sub, email or
//                     preferred_username) and password
//   auto_login      a user's sub: the login prompt is answered with that account, no form
//   scopes_claims   {scope: [claims]} added to the standard ones (openid, email, profile);
//                   default {"groups": ["groups"], "roles": ["roles"]}
//   id_token_ttl    seconds (default 600)
//   claims_in_id_token  true (default): the requested scopes' claims are in the ID token; false:
//                   the ID token carries only sub (and nonce, ...), the rest is at userinfo
//                   (oidc-provider's default, and that of some real providers)
//   clock_offset_seconds  shifts the provider's clock (negative: tokens issued in the past, e.g.
//                   already expired), to test a relying party's time checks
//
// Authorization code flow only, PKCE (S256) required for every client, ID tokens signed RS256 (or
// ES256 per client) with keys generated at start-up; consent is granted for the requested scopes
// (first-party clients). Tests only: no persistence, no TLS.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

function fail(msg) {
  process.stderr.write(`[oidc-provider] ERROR: ${msg}\n`);
  process.exit(2);
}

function readConfig(argv) {
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--config') return JSON.parse(readFileSync(argv[i + 1], 'utf8'));
    if (argv[i] === '--config-json') return JSON.parse(argv[i + 1]);
  }
  fail('usage: node provider.mjs --config FILE | --config-json JSON');
  return undefined;
}

let cfg;
try {
  cfg = readConfig(process.argv.slice(2));
} catch (e) {
  fail(`bad configuration: ${e.message}`);
}
if (!Array.isArray(cfg.clients) || cfg.clients.length === 0) fail('configuration needs at least one client');
const users = Array.isArray(cfg.users) ? cfg.users : [];

if (Number.isFinite(cfg.clock_offset_seconds) && cfg.clock_offset_seconds !== 0) {
  const realNow = Date.now.bind(Date);
  const offsetMs = cfg.clock_offset_seconds * 1000;
  Date.now = () => realNow() + offsetMs;
}

const findUser = (login) => users.find(
  (u) => u.sub === login || (u.email && u.email === login) || (u.preferred_username && u.preferred_username === login),
);

function keys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, kid: `rs-${randomBytes(6).toString('hex')}`, use: 'sig', alg: 'RS256' },
    { ...ec, kid: `es-${randomBytes(6).toString('hex')}`, use: 'sig', alg: 'ES256' },
  ];
}

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, clientId, error) {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - test OpenID provider</title></head>
<body>
<h1>Sign in</h1>
<p id="client">to ${escapeHtml(clientId)}</p>
${error ? `<p id="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="username">Username</label> <input id="username" name="username" type="text" required>
<label for="password">Password</label> <input id="password" name="password" type="password">
<button id="login" type="submit">Sign in</button>
</form>
<form id="abort-form" method="post" action="/interaction/${escapeHtml(uid)}/abort">
<button id="abort" type="submit">Cancel</button>
</form>
</body></html>`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const c of req) {
    size += c.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(c);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, body, type = 'text/html; charset=utf-8') {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

const server = createServer();
server.listen(Number(cfg.port ?? 0), cfg.host ?? '127.0.0.1', () => {
  const { address, port } = server.address();
  const issuer = cfg.issuer ?? `http://${address}:${port}`;

  const scopesClaims = { groups: ['groups'], roles: ['roles'], ...(cfg.scopes_claims ?? {}) };
  const provider = new Provider(issuer, {
    clients: cfg.clients.map((c) => ({
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...c,
    })),
    jwks: { keys: keys() },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username', 'given_name', 'family_name', 'locale', 'zoneinfo'],
      ...scopesClaims,
    },
    // Scope claims in the ID token itself (not only at userinfo): what a relying party that reads
    // only the ID token needs.
    conformIdTokenClaims: cfg.claims_in_id_token === false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: false } },
    enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256'] },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 120,
      IdToken: Number(cfg.id_token_ttl ?? 600),
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, id) {
      const user = users.find((u) => u.sub === id);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        async claims() {
          const { password: _password, ...claims } = user;
          return claims;
        },
      };
    },
    // First-party clients: consent is granted for what they ask.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        const existing = await ctx.oidc.provider.Grant.find(grantId);
        if (existing) return existing;
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
      await grant.save();
      return grant;
    },
  });
  const callback = provider.callback();

  async function interaction(req, res, parts) {
    const details = await provider.interactionDetails(req, res);
    const { uid, prompt, params } = details;
    if (parts.length === 1 && req.method === 'GET') {
      if (prompt.name === 'login' && cfg.auto_login) {
        if (!users.some((u) => u.sub === cfg.auto_login)) fail(`auto_login names no user: ${cfg.auto_login}`);
        await provider.interactionFinished(req, res, { login: { accountId: cfg.auto_login } }, { mergeWithLastSubmission: false });
        return;
      }
      if (prompt.name === 'login') {
        send(res, 200, loginPage(uid, params.client_id));
        return;
      }
      // Consent (normally granted by loadExistingGrant): grant what was asked.
      const grant = new provider.Grant({ clientId: params.client_id, accountId: details.session.accountId });
      grant.addOIDCScope(String(params.scope ?? 'openid'));
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    if (parts[1] === 'login' && req.method === 'POST') {
      const form = await readForm(req);
      const user = findUser(form.get('username') ?? '');
      if (!user || (user.password ?? '') !== (form.get('password') ?? '')) {
        send(res, 200, loginPage(uid, params.client_id, 'Invalid username or password.'));
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
      return;
    }
    if (parts[1] === 'abort' && req.method === 'POST') {
      await provider.interactionFinished(
        req,
        res,
        { error: 'access_denied', error_description: 'End-User aborted interaction' },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    send(res, 404, 'not found', 'text/plain');
  }

  server.on('request', (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path.startsWith('/interaction/')) {
      const parts = path.slice('/interaction/'.length).split('/');
      interaction(req, res, parts).catch((e) => {
        process.stderr.write(`[oidc-provider] interaction error: ${e.message}\n`);
        if (!res.headersSent) send(res, 400, `interaction error: ${e.message}`, 'text/plain');
      });
      return;
    }
    callback(req, res);
  });
  provider.on('server_error', (_ctx, e) => process.stderr.write(`[oidc-provider] server error: ${e.stack}\n`));
  // Why a request was refused (the HTTP answer only says e.g. `invalid_grant`).
  for (const ev of ['grant.error', 'authorization.error', 'end_session.error', 'jwks.error', 'discovery.error']) {
    provider.on(ev, (_ctx, e) => process.stderr.write(`[oidc-provider] ${ev}: ${e.message}${e.error_detail ? ` (${e.error_detail})` : ''}\n`));
  }
  process.stdout.write(`LISTENING ${issuer}\n`);
});
server.on('error', (e) => fail(`cannot listen: ${e.message}`));

for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
