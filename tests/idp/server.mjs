// A real OAuth 2.0 authorization server for tokenwatch's end-to-end test:
// oidc-provider with client credentials, introspection (RFC 7662) and
// revocation (RFC 7009), on loopback. Prints "listening <issuer>" once up.
//
// Clients:
//   victim-app  mints opaque access tokens with client_credentials (the
//               token a thief steals)
//   tokenwatch  revokes and introspects; oidc-provider's default policy
//               refuses (400) a client revoking another client's token, so
//               revocation.allowedPolicy lets this one client do it.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const secret = process.env.TOKENWATCH_SECRET || 'tokenwatch-secret-0123456789';
const victimSecret = process.env.VICTIM_SECRET || 'victim-secret-0123456789';

const http = await import('node:http');
const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'victim-app',
      client_secret: victimSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: 'orders',
    },
    {
      client_id: 'tokenwatch',
      client_secret: secret,
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  scopes: ['orders'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client) => client.clientId === 'tokenwatch',
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) =>
        client.clientId === 'tokenwatch' || token.clientId === client.clientId,
    },
  },
});
provider.proxy = false;
server.on('request', provider.callback());
console.log(`listening ${issuer}`);
