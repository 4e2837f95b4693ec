// example.ts: send a code with otpd, read it back, verify it.
//
//   node dist/example.js +14155550123          send, ask for the code on stdin, verify it
//   node dist/example.js --selftest            the scenario cmd/otpd's black-box test runs
//
// Environment: OTPD_API_URL (http://127.0.0.1:8080), OTPD_TOKEN, OTPD_API_SOCKET
// (a unix socket instead of the URL's host), OTPD_HTTP_VERSION ("1.1" or "2"),
// OTPD_JSON=1 (the Connect JSON encoding instead of binary protobuf).
// --selftest also reads OTPD_RECIPIENT and prints one JSON line per step.

import * as readline from "node:readline/promises";

import { timestampDate } from "@bufbuild/protobuf/wkt";

import { OtpdClient, OtpdError, UsageType, VerifyResult, type OtpdClientOptions } from "./otpd-client.js";

function options(env: NodeJS.ProcessEnv, withToken = true): OtpdClientOptions {
  const httpVersion = env.OTPD_HTTP_VERSION === "2" ? "2" : "1.1";
  return {
    baseUrl: env.OTPD_API_URL || (env.OTPD_API_SOCKET ? "http://localhost" : "http://127.0.0.1:8080"),
    token: withToken ? env.OTPD_TOKEN || undefined : undefined,
    socketPath: env.OTPD_API_SOCKET || undefined,
    httpVersion,
    useJson: env.OTPD_JSON === "1",
  };
}

// errorJSON is what a step prints of an error.
function errorJSON(e: unknown) {
  if (!(e instanceof OtpdError)) {
    return { code: "not_otpd_error", message: String(e) };
  }
  return {
    code: e.codeName,
    message: e.message,
    reason: e.reason,
    metadata: e.metadata,
    retryDelayMs: e.retryDelayMs,
    fieldViolations: e.fieldViolations,
    attempts: e.attempts,
  };
}

// demo sends a code to recipient, asks for it on stdin and verifies it.
async function demo(recipient: string): Promise<number> {
  const otpd = new OtpdClient(options(process.env));
  const usageType = UsageType.SIGN_IN;
  try {
    const sent = await otpd.sendCode({ recipient, usageType });
    console.log(
      `sent by ${sent.provider} (id ${sent.verificationId}), valid until ${sent.expiresAt ? timestampDate(sent.expiresAt).toISOString() : "?"}`,
    );
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
    const code = (await rl.question("code: ")).trim();
    rl.close();
    const v = await otpd.verifyCode({ recipient, usageType, code });
    console.log(`${VerifyResult[v.result]} (attempts remaining: ${v.attemptsRemaining})`);
    return v.result === VerifyResult.OK ? 0 : 1;
  } catch (e) {
    // OtpdError's message names the code, the field violations of a bad
    // request and the delay of a limit.
    console.error(e instanceof Error ? e.message : e);
    return 1;
  }
}

// selftest is the scenario of cmd/otpd/blackbox_node_connect_test.go. It
// prints one JSON line per step; the code of the first send arrives on
// stdin, written by the test, which reads it from otpd's console provider.
async function selftest(): Promise<number> {
  const env = process.env;
  const recipient = env.OTPD_RECIPIENT || "+14155550100";
  const otpd = new OtpdClient(options(env));
  const usageType = UsageType.SIGN_IN;
  const print = (line: object) => console.log(JSON.stringify(line));
  const step = async (name: string, fn: () => Promise<object>) => {
    try {
      print({ step: name, ...(await fn()) });
    } catch (e) {
      print({ step: name, error: errorJSON(e) });
    }
  };
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

  await step("send", async () => {
    const r = await otpd.sendCode({ recipient, usageType, locale: "en" });
    return {
      provider: r.provider,
      verificationId: r.verificationId,
      expiresAt: r.expiresAt ? timestampDate(r.expiresAt).toISOString() : null,
    };
  });
  const next = await lines.next();
  const code = next.done ? "" : String(next.value).trim();
  // A wrong code of the right shape: the last digit changed.
  const wrong = code.slice(0, -1) + String((Number(code.slice(-1)) + 1) % 10);
  await step("verify_wrong", async () => {
    const v = await otpd.verifyCode({ recipient, usageType, code: wrong });
    return { result: VerifyResult[v.result], attemptsRemaining: v.attemptsRemaining };
  });
  await step("verify", async () => {
    const v = await otpd.verifyCode({ recipient, usageType, code });
    return { result: VerifyResult[v.result], attemptsRemaining: v.attemptsRemaining };
  });
  // The resend cooldown (limits.resend_interval) refuses a second send at
  // once: resource_exhausted with a RetryInfo delay, never retried.
  await step("send_again", async () => {
    const r = await otpd.sendCode({ recipient, usageType });
    return { provider: r.provider };
  });
  await step("send_bad_request", async () => {
    const r = await otpd.sendCode({ recipient: "not a number", usageType: UsageType.UNSPECIFIED });
    return { provider: r.provider };
  });
  // DeliverCode: the caller's code, delivered (the test reads it back from
  // otpd's console provider).
  await step("deliver", async () => {
    const r = await otpd.deliverCode({ recipient: env.OTPD_DELIVER_RECIPIENT || "dev@example.com", usageType: UsageType.BIND_MFA, code: "Xy42Q7" });
    return { provider: r.provider, resendAfter: r.resendAfter ? timestampDate(r.resendAfter).toISOString() : null };
  });
  // A client without the token: verifyCode changes nothing either way.
  await step("no_token", async () => {
    const anon = new OtpdClient(options(env, false));
    const v = await anon.verifyCode({ recipient, usageType, code });
    return { result: VerifyResult[v.result] };
  });
  print({ step: "done" });
  return 0;
}

const args = process.argv.slice(2);
let exitCode: number;
if (args[0] === "--selftest") {
  exitCode = await selftest();
} else if (args.length === 1 && !args[0]!.startsWith("-")) {
  exitCode = await demo(args[0]!);
} else {
  console.error("usage: node dist/example.js <recipient> | --selftest");
  exitCode = 2;
}
process.exitCode = exitCode;
