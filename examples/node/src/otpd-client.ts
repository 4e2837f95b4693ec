// A small typed client of otpd's otp.v1.OtpService over the Connect protocol
// (listen.api), for Node services: @connectrpc/connect-node with the
// messages and the service descriptor that protoc-gen-es generated from
// proto/otp/v1/otp.proto (src/gen), and google.rpc error details generated
// from the vendored googleapis error_details.proto.
//
// It sends a bearer token on every call (an interceptor), gives every
// SendCode and DeliverCode an idempotency key (so that its retries can never
// send twice), retries UNAVAILABLE after the delay of its RetryInfo, and
// turns every error into an OtpdError that says what went wrong: the
// BadRequest field violations, the RetryInfo delay of a limit, the ErrorInfo
// reason. A rate limit (RESOURCE_EXHAUSTED) is never retried: it is the
// user's to see, with its delay.

import { randomUUID } from "node:crypto";
import * as net from "node:net";

import { create, type MessageInitShape } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createClient,
  type CallOptions,
  type Client,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { createConnectTransport } from "@connectrpc/connect-node";

import {
  BadRequestSchema,
  ErrorInfoSchema,
  QuotaFailureSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";
import {
  CancelCodeRequestSchema,
  DeliverCodeRequestSchema,
  GetCodeStatusRequestSchema,
  OtpService,
  SendCodeRequestSchema,
  VerifyCodeRequestSchema,
  type CancelCodeResponse,
  type DeliverCodeResponse,
  type GetCodeStatusResponse,
  type SendCodeResponse,
  type VerifyCodeResponse,
} from "./gen/otp/v1/otp_pb.js";

export * from "./gen/otp/v1/otp_pb.js";

export interface OtpdClientOptions {
  /**
   * otpd's listen.api, such as "http://127.0.0.1:8080" (or "https://..." when
   * otpd has a tls block). With socketPath, only its host travels (as the
   * Host header or :authority); "http://localhost" will do.
   */
  baseUrl?: string;
  /**
   * A transport of your own instead of the connect-node one that baseUrl,
   * token, httpVersion, socketPath, useJson and interceptors describe (tests
   * use createRouterTransport): bring its interceptors (bearerToken) with it.
   */
  transport?: Transport;
  /** A token of otpd's auth.tokens, sent as "Authorization: Bearer <token>". */
  token?: string;
  /**
   * "1.1" (the default) or "2". otpd serves HTTP/2 without TLS only with
   * prior knowledge (h2c), which is what connect-node's "2" speaks on an
   * http:// URL.
   */
  httpVersion?: "1.1" | "2";
  /**
   * A unix socket to connect to instead of the host of baseUrl, for otpd as
   * a sidecar (listen.api: "unix:///run/otpd/api.sock"): a path, or a
   * unix:// URL.
   */
  socketPath?: string;
  /** The Connect JSON encoding instead of binary protobuf (the default). */
  useJson?: boolean;
  /** The deadline of a call, retries included, in milliseconds (10 s). */
  timeoutMs?: number;
  /** Attempts per call at most (3); 1 turns retries off. */
  maxAttempts?: number;
  /** The longest RetryInfo delay a retry waits for (5 s); a longer one is returned. */
  maxRetryDelayMs?: number;
  /** More interceptors, run after the token's. */
  interceptors?: Interceptor[];
}

/** One BadRequest field violation: which request field, and what is wrong. */
export interface FieldViolation {
  field: string;
  description: string;
}

/**
 * OtpdError is a failed otpd call: the Connect code, otpd's message, and
 * the google.rpc details otpd attached, decoded with their generated types.
 */
export class OtpdError extends Error {
  /** The Connect code (Code.ResourceExhausted, ...). */
  readonly code: Code;
  /** The code as the Connect protocol spells it ("resource_exhausted"). */
  readonly codeName: string;
  /** otpd's message, without the "[code]" prefix of ConnectError. */
  readonly rawMessage: string;
  /** RetryInfo.retry_delay in milliseconds, when otpd sent one. */
  readonly retryDelayMs: number | undefined;
  /** BadRequest.field_violations (INVALID_ARGUMENT). */
  readonly fieldViolations: FieldViolation[];
  /** ErrorInfo.reason (RATE_LIMITED, MISSING_TOKEN, ...), when otpd sent one. */
  readonly reason: string | undefined;
  /** ErrorInfo.metadata (for a limit: {limit: "per_recipient"}, ...). */
  readonly metadata: Record<string, string>;
  /** QuotaFailure violations' subjects and descriptions (a limit). */
  readonly quotaViolations: { subject: string; description: string }[];
  /** How many attempts the call made. */
  readonly attempts: number;
  override readonly cause: ConnectError;

  constructor(method: string, err: ConnectError, attempts: number) {
    const retry = err.findDetails(RetryInfoSchema)[0];
    const badRequest = err.findDetails(BadRequestSchema)[0];
    const info = err.findDetails(ErrorInfoSchema)[0];
    const quota = err.findDetails(QuotaFailureSchema)[0];
    const retryDelayMs = retry?.retryDelay ? durationMs(retry.retryDelay) : undefined;
    const fieldViolations = (badRequest?.fieldViolations ?? []).map((v) => ({ field: v.field, description: v.description }));
    const codeName = codeToString(err.code);

    let text = `otpd ${method}: ${codeName}: ${err.rawMessage}`;
    if (fieldViolations.length > 0) {
      text += ` (${fieldViolations.map((v) => `${v.field}: ${v.description}`).join("; ")})`;
    }
    if (err.code === Code.ResourceExhausted && retryDelayMs !== undefined && !/retry/i.test(err.rawMessage)) {
      text += `; retry in ${retryDelayMs < 1000 ? `${retryDelayMs}ms` : `${(retryDelayMs / 1000).toFixed(1)}s`}`;
    }
    super(text, { cause: err });
    this.name = "OtpdError";
    this.code = err.code;
    this.codeName = codeName;
    this.rawMessage = err.rawMessage;
    this.retryDelayMs = retryDelayMs;
    this.fieldViolations = fieldViolations;
    this.reason = info?.reason || undefined;
    this.metadata = { ...(info?.metadata ?? {}) };
    this.quotaViolations = (quota?.violations ?? []).map((v) => ({ subject: v.subject, description: v.description }));
    this.attempts = attempts;
    this.cause = err;
  }
}

/** A google.protobuf.Duration in milliseconds. */
export function durationMs(d: Duration): number {
  return Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6);
}

/** The "Authorization: Bearer <token>" header on every call. */
export function bearerToken(token: string): Interceptor {
  return (next) => async (req) => {
    req.header.set("Authorization", `Bearer ${token}`);
    return await next(req);
  };
}

/**
 * otpdTransport is the connect-node transport of opts: the Connect protocol
 * over HTTP/1.1 or HTTP/2 (h2c on http://), to baseUrl or a unix socket,
 * with the bearer token.
 */
export function otpdTransport(opts: OtpdClientOptions): Transport {
  if (!opts.baseUrl) {
    throw new Error("OtpdClient: baseUrl or transport is required");
  }
  const interceptors = [...(opts.token ? [bearerToken(opts.token)] : []), ...(opts.interceptors ?? [])];
  const socketPath = opts.socketPath?.replace(/^unix:\/\//, "");
  const common = { baseUrl: opts.baseUrl, interceptors, useBinaryFormat: !opts.useJson };
  if (opts.httpVersion === "2") {
    return createConnectTransport({
      ...common,
      httpVersion: "2",
      // http2.connect dials host:port unless given the connection.
      nodeOptions: socketPath ? { createConnection: () => net.connect({ path: socketPath }) } : {},
    });
  }
  return createConnectTransport({
    ...common,
    httpVersion: "1.1",
    // http.request takes a unix socket as socketPath.
    nodeOptions: socketPath ? { socketPath } : {},
  });
}

/**
 * OtpdClient calls one otpd over the Connect protocol. It is safe for
 * concurrent use; with httpVersion "2" all calls share one connection.
 */
export class OtpdClient {
  readonly raw: Client<typeof OtpService>;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly maxRetryDelayMs: number;

  constructor(opts: OtpdClientOptions) {
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.maxAttempts = opts.maxAttempts ?? 3;
    this.maxRetryDelayMs = opts.maxRetryDelayMs ?? 5_000;
    if (this.maxAttempts < 1) {
      throw new Error("OtpdClient: maxAttempts must be at least 1");
    }
    this.raw = createClient(OtpService, opts.transport ?? otpdTransport(opts));
  }

  /**
   * sendCode has otpd generate, store and deliver a code. A request without
   * idempotencyKey gets a random one, which its retries carry.
   */
  async sendCode(req: MessageInitShape<typeof SendCodeRequestSchema>, opts?: CallOptions): Promise<SendCodeResponse> {
    const msg = create(SendCodeRequestSchema, req);
    msg.idempotencyKey ||= randomUUID();
    return this.call("SendCode", opts, (o) => this.raw.sendCode(msg, o));
  }

  /**
   * deliverCode has otpd deliver a code the caller made (and verifies
   * itself). A request without idempotencyKey gets a random one.
   */
  async deliverCode(req: MessageInitShape<typeof DeliverCodeRequestSchema>, opts?: CallOptions): Promise<DeliverCodeResponse> {
    const msg = create(DeliverCodeRequestSchema, req);
    msg.idempotencyKey ||= randomUUID();
    return this.call("DeliverCode", opts, (o) => this.raw.deliverCode(msg, o));
  }

  /**
   * verifyCode checks a code. A wrong code is an answer (MISMATCH), not an
   * error. Retrying UNAVAILABLE is safe: otpd answers it only when the
   * verification changed nothing.
   */
  async verifyCode(req: MessageInitShape<typeof VerifyCodeRequestSchema>, opts?: CallOptions): Promise<VerifyCodeResponse> {
    const msg = create(VerifyCodeRequestSchema, req);
    return this.call("VerifyCode", opts, (o) => this.raw.verifyCode(msg, o));
  }

  /**
   * cancelCode kills the live code of a recipient and usage type (sign-out,
   * an account change); cancelled says whether one was there. Retrying is
   * safe: a cancel is idempotent.
   */
  async cancelCode(req: MessageInitShape<typeof CancelCodeRequestSchema>, opts?: CallOptions): Promise<CancelCodeResponse> {
    const msg = create(CancelCodeRequestSchema, req);
    return this.call("CancelCode", opts, (o) => this.raw.cancelCode(msg, o));
  }

  /**
   * getCodeStatus tells whether a code is live, until when, with how many
   * attempts left, and when a new one can be sent (resendAfter, the real
   * cooldown for a sign-in page). It changes nothing; retrying is safe.
   */
  async getCodeStatus(req: MessageInitShape<typeof GetCodeStatusRequestSchema>, opts?: CallOptions): Promise<GetCodeStatusResponse> {
    const msg = create(GetCodeStatusRequestSchema, req);
    return this.call("GetCodeStatus", opts, (o) => this.raw.getCodeStatus(msg, o));
  }

  // call runs one RPC until it succeeds, fails with anything but
  // UNAVAILABLE or ABORTED (the same idempotent send still in flight, as
  // the Go client), runs out of attempts, or its next RetryInfo delay is too
  // long or would end after the call's deadline.
  private async call<T>(method: string, opts: CallOptions | undefined, rpc: (o: CallOptions) => Promise<T>): Promise<T> {
    const deadline = Date.now() + (opts?.timeoutMs ?? this.timeoutMs);
    for (let attempt = 1; ; attempt++) {
      const left = deadline - Date.now();
      try {
        return await rpc({ ...opts, timeoutMs: Math.max(1, left) });
      } catch (e) {
        const err = ConnectError.from(e);
        const retryable = err.code === Code.Unavailable || err.code === Code.Aborted;
        if (!retryable || attempt >= this.maxAttempts) {
          throw new OtpdError(method, err, attempt);
        }
        const retry = err.findDetails(RetryInfoSchema)[0];
        const wait = retry?.retryDelay ? durationMs(retry.retryDelay) : 100;
        if (wait > this.maxRetryDelayMs || Date.now() + wait >= deadline || opts?.signal?.aborted) {
          throw new OtpdError(method, err, attempt);
        }
        await sleep(wait, opts?.signal);
      }
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}
