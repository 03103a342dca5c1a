// The page's two connections: the gateway's REST API (envelope {data, meta}) and the WebSocket
// event stream (auth → subscribe → events with seq; reconnect with `since`; resync on a gap).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor(base, { token = () => null, onUnauthorized = () => {} } = {}) {
    this.base = base;
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, { body, headers = {}, auth = true } = {}) {
    const sent = { ...headers };
    const token = auth ? this.token() : null;
    if (token) sent.Authorization = `Bearer ${token}`;
    if (body !== undefined) sent["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(this.base + path, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (err) {
      throw new ApiError(0, "unreachable", `gateway unreachable (${err.message})`);
    }
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    if (!response.ok) {
      const error = payload && payload.error ? payload.error : {};
      const failure = new ApiError(
        response.status,
        error.code || "http_" + response.status,
        error.message || `HTTP ${response.status}`,
      );
      if (response.status === 401 && path !== "/api/auth/login") this.onUnauthorized(failure);
      throw failure;
    }
    return payload;
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body, headers) {
    return this.request("POST", path, { body, headers });
  }

  patch(path, body) {
    return this.request("PATCH", path, { body });
  }

  async login(apiToken) {
    const answer = await this.request("POST", "/api/auth/login", { body: { token: apiToken } });
    return answer.data;
  }

  // No token: /health is public, and a plain GET needs no CORS preflight on every poll.
  async health() {
    return this.request("GET", "/health", { auth: false });
  }
}

const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5000;
const PING_EVERY_MS = 15000;
const SILENT_LIMIT_MS = 35000;

// One logical subscription over as many WebSocket connections as it takes. Every event is
// handed over once, in seq order: after a reconnect the server replays from `since`, and
// anything at or below the last seq seen is a duplicate and dropped.
export class Stream {
  constructor(url, { token, events, onEvent, onResync, onState, onAuthFailed }) {
    this.url = url;
    this.token = token;
    this.events = events;
    this.onEvent = onEvent;
    this.onResync = onResync;
    this.onState = onState;
    this.onAuthFailed = onAuthFailed;
    this.lastSeq = 0;
    this.state = "connecting";
    this.lastMessageAt = 0;
    this.since = null;
    this.ws = null;
    this.stopped = false;
    this.retryMs = RECONNECT_MIN_MS;
    this.timer = null;
    this.pinger = null;
    this.disconnectedAt = null;
    this.subscribedOnce = false;
  }

  setState(state, detail = "") {
    this.state = state;
    this.onState(state, detail);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    if (this.ws) this.ws.close(1000, "logout");
    this.ws = null;
  }

  connect() {
    if (this.stopped) return;
    this.setState(this.lastSeq ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.scheduleReconnect(String(err));
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.lastMessageAt = Date.now();
      if (this.token()) ws.send(JSON.stringify({ type: "auth", token: this.token() }));
      else this.subscribe();
    };
    ws.onmessage = (message) => this.receive(message.data);
    ws.onclose = (close) => {
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pinger);
      const why = close.reason ? `${close.code} ${close.reason}` : `code ${close.code}`;
      this.scheduleReconnect(why);
    };
    ws.onerror = () => {};
  }

  subscribe() {
    const message = { type: "subscribe", events: this.events };
    // since: 0 would ask for the whole replay buffer; a first connection wants only new events
    // (the initial state comes from REST).
    if (this.lastSeq > 0) message.since = this.lastSeq;
    this.ws.send(JSON.stringify(message));
  }

  scheduleReconnect(why) {
    if (this.stopped) return;
    if (this.disconnectedAt === null) this.disconnectedAt = Date.now();
    this.setState("disconnected", why);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), this.retryMs);
    this.retryMs = Math.min(RECONNECT_MAX_MS, this.retryMs * 2);
  }

  receive(raw) {
    this.lastMessageAt = Date.now();
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      return;
    }
    switch (message.type) {
      case "authenticated":
        this.subscribe();
        break;
      case "subscribed":
        // A reconnect before any event carried a seq cannot ask for `since`: whatever happened
        // meanwhile is only in the REST state, so reload it.
        if (this.subscribedOnce && this.lastSeq === 0) this.onResync("reconnected before any event");
        this.subscribedOnce = true;
        this.retryMs = RECONNECT_MIN_MS;
        this.disconnectedAt = null;
        this.setState("live");
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.keepAlive(), PING_EVERY_MS);
        break;
      case "event":
        if (typeof message.seq === "number" && message.seq <= this.lastSeq) return;
        if (typeof message.seq === "number") this.lastSeq = message.seq;
        this.onEvent(message);
        break;
      case "resync":
        // The replay buffer no longer reaches back to our seq: the REST state is the truth.
        this.onResync(message.reason || "replay buffer exceeded");
        break;
      case "error":
        if (/authentication|expired/i.test(message.error || "")) {
          this.onAuthFailed(message.error);
        } else {
          this.onState(this.state, message.error);
        }
        break;
      default:
        break;
    }
  }

  keepAlive() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastMessageAt > SILENT_LIMIT_MS) {
      // A half-open connection never closes by itself: drop it and reconnect with since.
      this.ws.close(4000, "silent");
      return;
    }
    this.ws.send(JSON.stringify({ type: "ping" }));
  }
}
