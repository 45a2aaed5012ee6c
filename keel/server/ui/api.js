// The server's routes as the page uses them: /v1/stream (server-sent events, parsed by the
// vendored eventsource-parser), /v1/generate and /v1/models. Every failure becomes an
// ApiError with the HTTP status and the server's own message.
import { EventSourceParserStream } from "./vendor/eventsource-parser/stream.js";

const TITLES = {
  400: "Bad request",
  401: "Unauthorized: enter the server's API key above",
  404: "Not found",
  408: "Request timed out",
  413: "Request too large",
  422: "Structured output could not be finished",
  429: "The server is busy",
  503: "The server is not ready",
};

export class ApiError extends Error {
  constructor(status, message, code, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  describe() {
    const title = this.status ? `${this.status} ${TITLES[this.status] ?? "Error"}` : "Error";
    const retry = this.retryAfter ? ` (retry after ${this.retryAfter} s)` : "";
    return `${title}${retry}\n${this.message}`;
  }
}

function headers(key) {
  const made = { "Content-Type": "application/json" };
  if (key) made.Authorization = `Bearer ${key}`;
  return made;
}

async function failure(response) {
  let message = response.statusText;
  let code;
  try {
    const body = await response.json();
    const error = body.error ?? body;
    message = error.message ?? JSON.stringify(body);
    code = error.code;
  } catch {
    // a body that is not JSON: the status line says enough
  }
  return new ApiError(response.status, message, code, response.headers.get("Retry-After"));
}

export async function listModels(key) {
  const response = await fetch("/v1/models", { headers: headers(key) });
  if (!response.ok) throw await failure(response);
  return (await response.json()).data.map((model) => model.id);
}

export async function generateOnce(request, key) {
  const response = await fetch("/v1/generate", {
    method: "POST", headers: headers(key), body: JSON.stringify(request),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// Streams one generation: onToken(data) per token event; resolves with the `complete`
// event's data. Aborting `signal` closes the connection, which cancels the generation on
// the server.
export async function streamGenerate(request, key, onToken, signal) {
  const response = await fetch("/v1/stream", {
    method: "POST", headers: headers(key), body: JSON.stringify(request), signal,
  });
  if (!response.ok) throw await failure(response);
  const events = response.body
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(new EventSourceParserStream());
  for await (const event of events) {
    const data = JSON.parse(event.data);
    if (event.event === "token") onToken(data);
    else if (event.event === "complete") return data;
    else if (event.event === "error") {
      throw new ApiError(null, `${data.message} (${data.tokens_before_error} tokens were generated)`, data.error_type);
    }
  }
  throw new ApiError(null, "the stream ended without a result", "incomplete_stream");
}
