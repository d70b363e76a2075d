// A real OpenID Connect provider for the single sign-on tests (oidc-provider, a certified
// implementation), on 127.0.0.1 only. Started by the pytest fixture `oidc_provider`
// (tests/conftest.py): `node provider.js` with PORT in the environment (0: any free port);
// it prints "ready <issuer>" once it listens.
//
// Test clients (secret "polku-test-secret", redirect URI: /login/sso/callback on any
// 127.0.0.1 port, since the chat servers of the tests listen on free ports):
//   polku        the chat server
//   other-app    another application of the same organisation (its ID tokens are for it)
//   polku-short  as polku, but its ID tokens expire after 2 seconds
// Test users (the development sign-in form takes any password):
//   anna.sso   group polku-counsellors     ville.sso  group polku-admins
//   outsider   group finance (no role in Polku)
import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const SECRET = 'polku-test-secret';
const USERS = {
  'anna.sso': { name: 'Anna Sso', email: 'anna.sso@example.fi', groups: ['polku-counsellors'] },
  'ville.sso': { name: 'Ville Sso', email: 'ville.sso@example.fi', groups: ['polku-admins', 'staff'] },
  outsider: { name: 'Outi Outsider', email: 'outi@example.fi', groups: ['finance'] },
};

function client(id) {
  return {
    client_id: id,
    client_secret: SECRET,
    redirect_uris: ['http://127.0.0.1:8080/login/sso/callback'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  };
}

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [client('polku'), client('other-app'), client('polku-short')],
    cookies: { keys: ['polku-oidc-test-cookie-key-not-secret'] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email'],
      groups: ['groups'],
    },
    scopes: ['openid', 'profile', 'email', 'groups'],
    conformIdTokenClaims: false, // the ID token carries the claims (as Entra ID's does)
    pkce: { required: () => true },
    ttl: {
      IdToken: (ctx, token, c) => (c.clientId === 'polku-short' ? 2 : 3600),
      AccessToken: 600,
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    async findAccount(ctx, sub) {
      const user = USERS[sub] || { name: sub, email: `${sub}@example.fi`, groups: [] };
      return {
        accountId: sub,
        async claims() {
          return { sub, name: user.name, preferred_username: sub, email: user.email, groups: user.groups };
        },
      };
    },
    // No consent screen for the organisation's own applications.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope('openid profile email groups');
      await grant.save();
      return grant;
    },
    features: { devInteractions: { enabled: true } },
  });
  // The tests' chat servers listen on free ports: any 127.0.0.1 port, this one path.
  provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(value) {
    try {
      const url = new URL(value);
      return url.protocol === 'http:' && url.hostname === '127.0.0.1' && url.pathname === '/login/sso/callback'
        && !url.search && !url.hash;
    } catch (err) {
      return false;
    }
  };
  server.on('request', provider.callback());
  process.stdout.write(`ready ${issuer}\n`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
