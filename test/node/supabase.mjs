// Drives otpd's POST /hooks/supabase/sms and /hooks/supabase/email as
// Supabase Auth's Send SMS and Send Email hooks do: the JSON body, and the
// Standard Webhooks headers webhook-id, webhook-timestamp and
// webhook-signature as made by the standardwebhooks package's sign(); with
// several secrets, the signatures are joined with ", " as Supabase Auth
// does.
//
// cmd/otpd/blackbox_node_test.go runs it and makes every assertion. Input
// (environment):
//   OTPD_API_URL  base URL of otpd's listen.api
//   OTPD_CALLS    JSON array, run in order, each
//                 {"name", "hook": "sms"|"email", "body": object,
//                  "secrets": ["v1,whsec_..."] (sign with each),
//                  "id": webhook-id, "age"?: seconds to move the timestamp
//                  into the past, "tamper"?: true to sign another body}
// Output: one JSON line per call on stdout,
//   {"name", "status", "contentType", "body"}
import { Webhook } from 'standardwebhooks';
import { need } from './env.mjs';

const api = need('OTPD_API_URL').replace(/\/$/, '');
const calls = JSON.parse(need('OTPD_CALLS'));

for (const call of calls) {
  const payload = JSON.stringify(call.body);
  const timestamp = new Date(Date.now() - (call.age ?? 0) * 1000);
  const signed = call.tamper ? payload.replace(/}$/, ' }') : payload;
  // Supabase Auth's config holds "v1,whsec_<base64>"; the library takes
  // "whsec_<base64>".
  const signatures = call.secrets.map((s) =>
    new Webhook(s.replace(/^v1,/, '')).sign(call.id, timestamp, signed),
  );
  const res = await fetch(`${api}/hooks/supabase/${call.hook}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': call.id,
      'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
      'webhook-signature': signatures.join(', '),
    },
    body: payload,
  });
  const out = {
    name: call.name,
    status: res.status,
    contentType: res.headers.get('content-type'),
    body: await res.text(),
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}
