// A small typed HTTP client for the partner API, with retries, timeouts, pagination and
// structured errors. It runs in browsers and in Node 18+, using the global fetch.

export type HttpMethod = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface ClientOptions {
  baseUrl: string;
  apiKey: string;
  /** Milliseconds before a single attempt is abandoned. */
  timeoutMs?: number;
  /** Attempts for retryable failures, the first one included. */
  maxAttempts?: number;
  /** Base delay of the exponential back-off, in milliseconds. */
  backoffMs?: number;
  userAgent?: string;
  fetchImpl?: typeof fetch;
  onRetry?: (info: RetryInfo) => void;
}

export interface RetryInfo {
  attempt: number;
  delayMs: number;
  reason: string;
  method: HttpMethod;
  path: string;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  idempotencyKey?: string;
  signal?: AbortSignal;
}

export interface Page<T> {
  data: T[];
  hasMore: boolean;
  nextCursor: string | null;
}

export class ApiError extends Error {
  readonly status: number;
  readonly type: string;
  readonly code: string | undefined;
  readonly param: string | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(status: number, body: ErrorBody | undefined, retryAfterMs?: number) {
    const message = body?.error?.message ?? `HTTP ${status}`;
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = body?.error?.type ?? "unknown";
    this.code = body?.error?.code;
    this.param = body?.error?.param;
    this.retryAfterMs = retryAfterMs;
  }

  get retryable(): boolean {
    return this.status === 409 || this.status === 429 || this.status >= 500;
  }
}

export class TimeoutError extends Error {
  constructor(readonly path: string, readonly timeoutMs: number) {
    super(`Request to ${path} timed out after ${timeoutMs} ms`);
    this.name = "TimeoutError";
  }
}

interface ErrorBody {
  error?: {
    type?: string;
    code?: string;
    param?: string;
    message?: string;
  };
}

const DEFAULTS = {
  timeoutMs: 30_000,
  maxAttempts: 3,
  backoffMs: 500,
  userAgent: "partner-client/2.4",
};

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason ?? new Error("aborted"));
      return;
    }
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason ?? new Error("aborted"));
      },
      { once: true },
    );
  });
}

function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  return undefined;
}

function buildQuery(query: RequestOptions["query"]): string {
  if (!query) return "";
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    params.append(key, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

function jitter(delay: number): number {
  // Full jitter keeps many clients that failed together from retrying together.
  return Math.floor(Math.random() * delay);
}

export class Client {
  private readonly options: Required<Omit<ClientOptions, "onRetry" | "fetchImpl">>;
  private readonly fetchImpl: typeof fetch;
  private readonly onRetry?: (info: RetryInfo) => void;

  constructor(options: ClientOptions) {
    if (!options.apiKey) throw new Error("apiKey is required");
    if (!/^https?:\/\//.test(options.baseUrl)) {
      throw new Error("baseUrl must start with http:// or https://");
    }
    this.options = {
      baseUrl: options.baseUrl.replace(/\/+$/, ""),
      apiKey: options.apiKey,
      timeoutMs: options.timeoutMs ?? DEFAULTS.timeoutMs,
      maxAttempts: Math.max(1, options.maxAttempts ?? DEFAULTS.maxAttempts),
      backoffMs: options.backoffMs ?? DEFAULTS.backoffMs,
      userAgent: options.userAgent ?? DEFAULTS.userAgent,
    };
    this.fetchImpl = options.fetchImpl ?? fetch;
    this.onRetry = options.onRetry;
  }

  get<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("GET", path, options);
  }

  post<T>(path: string, body: unknown, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("POST", path, { ...options, body });
  }

  patch<T>(path: string, body: unknown, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("PATCH", path, { ...options, body });
  }

  delete<T>(path: string, options: RequestOptions = {}): Promise<T> {
    return this.request<T>("DELETE", path, options);
  }

  async request<T>(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<T> {
    const url = `${this.options.baseUrl}${path}${buildQuery(options.query)}`;
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.options.apiKey}`,
      Accept: "application/json",
      "User-Agent": this.options.userAgent,
      ...options.headers,
    };
    let body: string | undefined;
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.body);
    }
    if (options.idempotencyKey) {
      headers["Idempotency-Key"] = options.idempotencyKey;
    } else if (method === "POST") {
      // A POST without a key cannot be retried safely after a network error.
      headers["Idempotency-Key"] = crypto.randomUUID();
    }

    let lastError: unknown;
    for (let attempt = 1; attempt <= this.options.maxAttempts; attempt++) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), this.options.timeoutMs);
      const onAbort = () => controller.abort();
      options.signal?.addEventListener("abort", onAbort, { once: true });
      try {
        const response = await this.fetchImpl(url, {
          method,
          headers,
          body,
          signal: controller.signal,
        });
        if (response.ok) {
          if (response.status === 204) return undefined as T;
          return (await response.json()) as T;
        }
        let errorBody: ErrorBody | undefined;
        try {
          errorBody = (await response.json()) as ErrorBody;
        } catch {
          errorBody = undefined;
        }
        const error = new ApiError(
          response.status,
          errorBody,
          parseRetryAfter(response.headers.get("Retry-After")),
        );
        if (!error.retryable || attempt === this.options.maxAttempts) throw error;
        lastError = error;
        const delay = error.retryAfterMs ?? jitter(this.options.backoffMs * 2 ** (attempt - 1));
        this.onRetry?.({ attempt, delayMs: delay, reason: `HTTP ${response.status}`, method, path });
        await sleep(delay, options.signal);
      } catch (error) {
        if (error instanceof ApiError) throw error;
        if (options.signal?.aborted) throw error;
        const timedOut = controller.signal.aborted;
        lastError = timedOut ? new TimeoutError(path, this.options.timeoutMs) : error;
        if (attempt === this.options.maxAttempts) throw lastError;
        const delay = jitter(this.options.backoffMs * 2 ** (attempt - 1));
        this.onRetry?.({
          attempt,
          delayMs: delay,
          reason: timedOut ? "timeout" : "network error",
          method,
          path,
        });
        await sleep(delay, options.signal);
      } finally {
        clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
      }
    }
    throw lastError;
  }

  async *paginate<T>(path: string, options: RequestOptions = {}): AsyncGenerator<T> {
    let cursor: string | null = null;
    do {
      const query = { ...options.query, ...(cursor ? { cursor } : {}) };
      const page: Page<T> = await this.get<Page<T>>(path, { ...options, query });
      for (const item of page.data) yield item;
      cursor = page.hasMore ? page.nextCursor : null;
    } while (cursor);
  }

  async collect<T>(path: string, options: RequestOptions = {}, limit = 10_000): Promise<T[]> {
    const items: T[] = [];
    for await (const item of this.paginate<T>(path, options)) {
      items.push(item);
      if (items.length >= limit) break;
    }
    return items;
  }
}

// ---- resources -------------------------------------------------------------------------------

export interface Customer {
  id: string;
  displayName: string;
  billingEmail: string;
  country: string | null;
  metadata: Record<string, string>;
}

export interface Invoice {
  id: string;
  customer: string;
  status: "draft" | "open" | "paid" | "void" | "uncollectible";
  total: number;
  currency: string;
  lines: InvoiceLine[];
}

export interface InvoiceLine {
  description: string;
  quantity: number;
  unitAmount: number;
  amount: number;
}

export class Customers {
  constructor(private readonly client: Client) {}

  create(input: Omit<Customer, "id">, idempotencyKey?: string): Promise<Customer> {
    return this.client.post<Customer>("/v2/customers", input, { idempotencyKey });
  }

  retrieve(id: string): Promise<Customer> {
    return this.client.get<Customer>(`/v2/customers/${encodeURIComponent(id)}`);
  }

  update(id: string, changes: Partial<Omit<Customer, "id">>): Promise<Customer> {
    return this.client.patch<Customer>(`/v2/customers/${encodeURIComponent(id)}`, changes);
  }

  list(query: { email?: string; limit?: number } = {}): AsyncGenerator<Customer> {
    return this.client.paginate<Customer>("/v2/customers", { query });
  }
}

export class Invoices {
  constructor(private readonly client: Client) {}

  retrieve(id: string): Promise<Invoice> {
    return this.client.get<Invoice>(`/v2/invoices/${encodeURIComponent(id)}`);
  }

  listForCustomer(customer: string, status?: Invoice["status"]): AsyncGenerator<Invoice> {
    return this.client.paginate<Invoice>("/v2/invoices", { query: { customer, status } });
  }

  async outstandingTotal(customer: string): Promise<Map<string, number>> {
    const totals = new Map<string, number>();
    for await (const invoice of this.listForCustomer(customer, "open")) {
      totals.set(invoice.currency, (totals.get(invoice.currency) ?? 0) + invoice.total);
    }
    return totals;
  }

  void(id: string): Promise<Invoice> {
    return this.client.post<Invoice>(`/v2/invoices/${encodeURIComponent(id)}/void`, {});
  }
}

export function formatAmount(amount: number, currency: string, locale = "en-GB"): string {
  const digits = ["JPY", "KRW", "VND", "CLP"].includes(currency.toUpperCase()) ? 0 : 2;
  return new Intl.NumberFormat(locale, {
    style: "currency",
    currency,
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(amount / 10 ** digits);
}

export function summarise(invoice: Invoice): string {
  const lines = invoice.lines.map(
    (line) =>
      `  ${line.quantity} x ${line.description.padEnd(32)} ${formatAmount(line.amount, invoice.currency)}`,
  );
  return [
    `Invoice ${invoice.id} (${invoice.status})`,
    ...lines,
    `  ${"Total".padEnd(37)} ${formatAmount(invoice.total, invoice.currency)}`,
  ].join("\n");
}
