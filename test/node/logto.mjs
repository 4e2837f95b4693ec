// Drives otpd's POST /hooks/logto/sms and /hooks/logto/email with Logto's
// own HTTP connectors from npm (@logto/connector-http-sms,
// @logto/connector-http-email), created and called as Logto core does:
// the package's default export is a factory that core calls with
// {getConfig}, getConfig(id) returns the connector's stored config
// ({endpoint, authorization}), and core calls
// sendMessage({to, type, payload, ip?}) without a second argument.
//
// cmd/otpd/blackbox_node_test.go runs it and makes every assertion. Input
// (environment):
//   OTPD_API_URL  base URL of otpd's listen.api, e.g. http://127.0.0.1:41234
//   OTPD_TOKEN    the connector's authorization is "Bearer $OTPD_TOKEN"
//   OTPD_CALLS    JSON array, run in order, each
//                 {"name", "connector": "sms"|"email",
//                  "authorization"?: string (replaces the default; "" omits it),
//                  "data": {to, type, payload, ip?}}
// Output: one JSON line per call on stdout,
//   {"name", "ok": true, "status", "body"}                 sendMessage resolved
//   {"name", "ok": false, "error": {name, code, message, data}}  it threw
import createHttpSmsConnector from '@logto/connector-http-sms';
import createHttpEmailConnector from '@logto/connector-http-email';
import { need } from './env.mjs';

const factories = { sms: createHttpSmsConnector, email: createHttpEmailConnector };

const api = need('OTPD_API_URL').replace(/\/$/, '');
const token = need('OTPD_TOKEN');
const calls = JSON.parse(need('OTPD_CALLS'));

for (const call of calls) {
  const createConnector = factories[call.connector];
  if (!createConnector) {
    console.error(`${call.name}: unknown connector ${call.connector}`);
    process.exit(2);
  }
  const config = { endpoint: `${api}/hooks/logto/${call.connector}` };
  const authorization = call.authorization ?? `Bearer ${token}`;
  if (authorization !== '') {
    config.authorization = authorization;
  }
  // As Logto core: getConfig reads the connector's config from its store.
  const connector = await createConnector({ getConfig: async () => config });
  let out;
  try {
    const res = await connector.sendMessage(call.data);
    out = { name: call.name, ok: true, status: res.statusCode, body: res.body };
  } catch (error) {
    out = {
      name: call.name,
      ok: false,
      error: {
        name: error?.constructor?.name,
        code: error?.code,
        message: String(error?.message ?? error),
        data: error?.data instanceof Error ? { message: error.data.message } : error?.data,
      },
    };
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}
