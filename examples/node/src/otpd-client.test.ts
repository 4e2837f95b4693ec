// Unit tests of OtpdClient against an in-process fake otpd
// (createRouterTransport: the Connect protocol, details encoded and decoded
// as on the wire). node --test dist/otpd-client.test.js; cmd/otpd's
// TestNodeConnectClientUnit runs them.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Code, ConnectError, createRouterTransport, type HandlerContext } from "@connectrpc/connect";

import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { bearerToken, OtpdClient, OtpdError, OtpService, UsageType, VerifyResult } from "./otpd-client.js";

type Call = { method: string; idempotencyKey: string; authorization: string | null; at: number };

// fake returns a client of an otpd whose answers to each call are, in
// order, the given errors and then success; calls records what it got.
type Method = "sendCode" | "verifyCode" | "deliverCode" | "cancelCode" | "getCodeStatus";

function fake(answers: Partial<Record<Method, ConnectError[]>>, maxRetryDelayMs?: number) {
  const calls: Call[] = [];
  const next = (method: Method, key: string, ctx: HandlerContext) => {
    calls.push({ method, idempotencyKey: key, authorization: ctx.requestHeader.get("authorization"), at: Date.now() });
    const err = answers[method]?.shift();
    if (err) {
      throw err;
    }
  };
  const transport = createRouterTransport(
    ({ service }) => {
      service(OtpService, {
        sendCode(req, ctx) {
          next("sendCode", req.idempotencyKey, ctx);
          return { provider: "fake", verificationId: "v1" };
        },
        deliverCode(req, ctx) {
          next("deliverCode", req.idempotencyKey, ctx);
          return { provider: "fake" };
        },
        verifyCode(req, ctx) {
          next("verifyCode", "", ctx);
          return { result: req.code === "123456" ? VerifyResult.OK : VerifyResult.MISMATCH };
        },
        cancelCode(_req, ctx) {
          next("cancelCode", "", ctx);
          return { cancelled: true };
        },
        getCodeStatus(_req, ctx) {
          next("getCodeStatus", "", ctx);
          return { live: true, attemptsRemaining: 4, validCodes: 2, resendAfter: { seconds: 1_900_000_000n, nanos: 0 } };
        },
      });
    },
    { transport: { interceptors: [bearerToken("t0ken")] } },
  );
  const otpd = new OtpdClient({ transport, ...(maxRetryDelayMs === undefined ? {} : { maxRetryDelayMs }) });
  return { otpd, calls };
}

function retryInfo(ms: number) {
  return { desc: RetryInfoSchema, value: { retryDelay: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 } } };
}

const unavailable = (ms: number) => new ConnectError("redis is down", Code.Unavailable, undefined, [retryInfo(ms)]);
const limited = (ms: number) =>
  new ConnectError("rate limited by resend_interval", Code.ResourceExhausted, undefined, [
    retryInfo(ms),
    { desc: ErrorInfoSchema, value: { reason: "RATE_LIMITED", domain: "otpd", metadata: { limit: "resend_interval" } } },
  ]);

test("unavailable is retried after its RetryInfo delay, with the same idempotency key and the token", async () => {
  const { otpd, calls } = fake({ sendCode: [unavailable(30), unavailable(30)] });
  const r = await otpd.sendCode({ recipient: "+14155550123", usageType: UsageType.SIGN_IN });
  assert.equal(r.provider, "fake");
  assert.equal(calls.length, 3);
  assert.ok(calls[0]!.idempotencyKey.length > 0, "a generated idempotency key");
  assert.ok(calls.every((c) => c.idempotencyKey === calls[0]!.idempotencyKey), "retries carry the same key");
  assert.ok(calls.every((c) => c.authorization === "Bearer t0ken"));
  assert.ok(calls[1]!.at - calls[0]!.at >= 25 && calls[2]!.at - calls[1]!.at >= 25, "waited for RetryInfo");
});

test("aborted (the same send still in flight) is retried with the same key, as the Go client does", async () => {
  const inFlight = new ConnectError("an idempotent send with this key is in flight", Code.Aborted, undefined, [retryInfo(20)]);
  const { otpd, calls } = fake({ sendCode: [inFlight] });
  const r = await otpd.sendCode({ recipient: "+14155550123", usageType: UsageType.SIGN_IN });
  assert.equal(r.provider, "fake");
  assert.equal(calls.length, 2);
  assert.equal(calls[1]!.idempotencyKey, calls[0]!.idempotencyKey);
});

test("each send gets its own idempotency key; a given one is kept", async () => {
  const { otpd, calls } = fake({});
  await otpd.sendCode({ recipient: "+14155550123", usageType: UsageType.SIGN_IN });
  await otpd.deliverCode({ recipient: "+14155550123", usageType: UsageType.SIGN_IN, code: "1234" });
  await otpd.sendCode({ recipient: "+14155550123", usageType: UsageType.SIGN_IN, idempotencyKey: "mine" });
  assert.equal(calls.length, 3);
  assert.notEqual(calls[0]!.idempotencyKey, calls[1]!.idempotencyKey);
  assert.ok(calls[1]!.idempotencyKey.length > 0);
  assert.equal(calls[2]!.idempotencyKey, "mine");
});

test("resource_exhausted is never retried, even with a short RetryInfo, and carries its delay", async () => {
  const { otpd, calls } = fake({ sendCode: [limited(10)] });
  const err = await otpd.sendCode({ recipient: "+14155550123", usageType: UsageType.SIGN_IN }).catch((e: unknown) => e);
  assert.ok(err instanceof OtpdError);
  assert.equal(err.code, Code.ResourceExhausted);
  assert.equal(err.codeName, "resource_exhausted");
  assert.equal(err.retryDelayMs, 10);
  assert.equal(err.reason, "RATE_LIMITED");
  assert.deepEqual(err.metadata, { limit: "resend_interval" });
  assert.equal(err.attempts, 1);
  assert.equal(calls.length, 1);
  assert.match(err.message, /^otpd SendCode: resource_exhausted: rate limited by resend_interval; retry in 10ms$/);
});

test("unavailable gives up after maxAttempts, or at once when its delay is too long", async () => {
  let { otpd, calls } = fake({ verifyCode: [unavailable(1), unavailable(1), unavailable(1), unavailable(1)] });
  let err = await otpd.verifyCode({ recipient: "+14155550123", usageType: UsageType.SIGN_IN, code: "123456" }).catch((e: unknown) => e);
  assert.ok(err instanceof OtpdError);
  assert.equal(err.codeName, "unavailable");
  assert.equal(err.attempts, 3);
  assert.equal(calls.length, 3);

  ({ otpd, calls } = fake({ sendCode: [unavailable(200)] }, 100));
  err = await otpd.sendCode({ recipient: "+14155550123", usageType: UsageType.SIGN_IN }).catch((e: unknown) => e);
  assert.ok(err instanceof OtpdError);
  assert.equal(err.attempts, 1);
  assert.equal(err.retryDelayMs, 200);
});

test("a bad request names its fields", async () => {
  const bad = new ConnectError("invalid request", Code.InvalidArgument, undefined, [
    {
      desc: BadRequestSchema,
      value: { fieldViolations: [{ field: "recipient", description: "must be an E.164 phone number" }] },
    },
  ]);
  const { otpd } = fake({ sendCode: [bad] });
  const err = await otpd.sendCode({ recipient: "nope", usageType: UsageType.SIGN_IN }).catch((e: unknown) => e);
  assert.ok(err instanceof OtpdError);
  assert.deepEqual(err.fieldViolations, [{ field: "recipient", description: "must be an E.164 phone number" }]);
  assert.equal(err.message, "otpd SendCode: invalid_argument: invalid request (recipient: must be an E.164 phone number)");
  assert.ok(err.cause instanceof ConnectError);
});

test("a wrong code is an answer, not an error", async () => {
  const { otpd } = fake({});
  const v = await otpd.verifyCode({ recipient: "+14155550123", usageType: UsageType.SIGN_IN, code: "000000" });
  assert.equal(v.result, VerifyResult.MISMATCH);
});

test("cancelCode and getCodeStatus retry unavailable as verifyCode does, never a rate limit", async () => {
  const { otpd, calls } = fake({ cancelCode: [unavailable(10)], getCodeStatus: [unavailable(10)] });
  const c = await otpd.cancelCode({ recipient: "+14155550123", usageType: UsageType.SIGN_IN });
  assert.equal(c.cancelled, true);
  const st = await otpd.getCodeStatus({ recipient: "+14155550123", usageType: UsageType.SIGN_IN });
  assert.equal(st.live, true);
  assert.equal(st.attemptsRemaining, 4);
  assert.equal(st.validCodes, 2);
  assert.equal(st.resendAfter?.seconds, 1_900_000_000n);
  assert.deepEqual(
    calls.map((c) => [c.method, c.authorization]),
    [
      ["cancelCode", "Bearer t0ken"],
      ["cancelCode", "Bearer t0ken"],
      ["getCodeStatus", "Bearer t0ken"],
      ["getCodeStatus", "Bearer t0ken"],
    ],
  );
  const limitedOnce = fake({ getCodeStatus: [limited(10)] });
  const err = await limitedOnce.otpd.getCodeStatus({ recipient: "+14155550123", usageType: UsageType.SIGN_IN }).catch((e: unknown) => e);
  assert.ok(err instanceof OtpdError);
  assert.equal(limitedOnce.calls.length, 1);
});
