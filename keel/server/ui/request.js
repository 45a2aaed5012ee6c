// The request the form describes: everything that decides the output, and nothing of the
// page's own (logprobs are asked for when sending). Permalinks and "Copy as" are made
// from it, so what is shared is exactly what ran.

const $ = (id) => document.getElementById(id);
const NUMBERS = {
  max_new_tokens: ["max-new-tokens", parseInt],
  temperature: ["temperature", parseFloat],
  seed: ["seed", parseInt],
  top_p: ["top-p", parseFloat],
  top_k: ["top-k", parseInt],
  min_p: ["min-p", parseFloat],
};

export class FormError extends Error {}

const lines = (text) => text.split("\n").map((line) => line.trim()).filter(Boolean);
const checked = (name) => document.querySelector(`input[name=${name}]:checked`).value;

export function messageRow(role = "user", content = "") {
  const item = document.createElement("li");
  const index = document.querySelectorAll("#messages li").length + 1;
  item.innerHTML = `
    <select aria-label="Role of message ${index}">
      <option>system</option><option>user</option><option>assistant</option>
    </select>
    <textarea rows="2" aria-label="Content of message ${index}"></textarea>
    <button type="button" class="secondary" aria-label="Remove message ${index}">✕</button>`;
  item.querySelector("select").value = role;
  item.querySelector("textarea").value = content;
  item.querySelector("button").addEventListener("click", () => item.remove());
  return item;
}

export function showInputKind(kind) {
  $("prompt-input").hidden = kind !== "prompt";
  $("chat-input").hidden = kind !== "chat";
}

export function showStructure(kind) {
  for (const name of ["schema", "regex", "choices"]) $(`${name}-input`).hidden = kind !== name;
}

export function readForm() {
  const request = {};
  if (checked("input-kind") === "chat") {
    request.messages = [...document.querySelectorAll("#messages li")].map((item) => ({
      role: item.querySelector("select").value,
      content: item.querySelector("textarea").value,
    }));
    if (!request.messages.length) throw new FormError("Add at least one chat message.");
  } else {
    request.prompt = $("prompt").value;
    if ($("raw").checked) request.raw = true;
  }
  request.model = $("model").value;
  for (const [name, [id, parse]] of Object.entries(NUMBERS)) {
    const value = parse($(id).value);
    if (Number.isNaN(value)) throw new FormError(`${name} must be a number.`);
    request[name] = value;
  }
  const stop = lines($("stop").value);
  if (stop.length) request.stop = stop;
  request.cache = $("use-cache").checked;
  const structure = checked("structure");
  if (structure === "schema") {
    try {
      request.schema = JSON.parse($("schema").value);
    } catch (error) {
      throw new FormError(`The JSON Schema is not JSON: ${error.message}`);
    }
  } else if (structure === "regex") {
    request.regex = $("regex").value;
  } else if (structure === "choices") {
    request.choices = lines($("choices").value);
  }
  return request;
}

export function fillForm(request, defaults) {
  const chat = Array.isArray(request.messages);
  document.querySelector(`input[name=input-kind][value=${chat ? "chat" : "prompt"}]`).checked = true;
  showInputKind(chat ? "chat" : "prompt");
  $("messages").replaceChildren(
    ...(chat ? request.messages : []).map((m) => messageRow(m.role, m.content)));
  if (!chat) $("prompt").value = request.prompt ?? "";
  $("raw").checked = Boolean(request.raw);
  if (request.model) {
    const known = [...$("model").options].some((option) => option.value === request.model);
    if (!known) $("model").add(new Option(request.model, request.model));
    $("model").value = request.model;
  }
  for (const [name, [id]] of Object.entries(NUMBERS)) {
    $(id).value = request[name] ?? defaults[name];
  }
  const stop = request.stop === undefined ? [] : [].concat(request.stop);
  $("stop").value = stop.join("\n");
  $("use-cache").checked = request.cache !== false;
  const structure = ["schema", "regex", "choices"].find((name) => request[name] !== undefined);
  document.querySelector(`input[name=structure][value=${structure ?? "none"}]`).checked = true;
  showStructure(structure ?? "none");
  if (structure === "schema") $("schema").value = JSON.stringify(request.schema, null, 2);
  if (structure === "regex") $("regex").value = request.regex;
  if (structure === "choices") $("choices").value = request.choices.join("\n");
}

// -- permalinks: the whole request in the URL fragment (never sent to the server) --------

export function toFragment(request) {
  const bytes = new TextEncoder().encode(JSON.stringify(request));
  const text = btoa(String.fromCharCode(...bytes));
  return "#r=" + text.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export function fromFragment(hash) {
  const match = /^#r=([A-Za-z0-9_-]+)$/.exec(hash);
  if (!match) return null;
  const text = atob(match[1].replaceAll("-", "+").replaceAll("_", "/"));
  const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

// -- "Copy as" --------------------------------------------------------------------------

function python(value, indent = "") {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number" || typeof value === "string") return JSON.stringify(value);
  const inner = indent + "    ";
  if (Array.isArray(value)) {
    return `[${value.map((item) => python(item, inner)).join(", ")}]`;
  }
  const items = Object.entries(value).map(([key, item]) => `${JSON.stringify(key)}: ${python(item, inner)}`);
  return `{${items.join(", ")}}`;
}

const quoteShell = (text) => "'" + text.replaceAll("'", "'\\''") + "'";

export function asCurl(request, origin, withKey) {
  const key = withKey ? ` \\\n  -H "Authorization: Bearer $KEEL_API_KEY"` : "";
  return `curl -sS ${origin}/v1/generate \\\n  -H 'Content-Type: application/json'${key} \\\n` +
    `  -d ${quoteShell(JSON.stringify(request))}`;
}

export function asPython(request) {
  const { prompt, ...options } = request;
  const args = [prompt === undefined ? "None" : python(prompt)];
  for (const [name, value] of Object.entries(options)) args.push(`${name}=${python(value)}`);
  return `import keel\n\nprint(keel.generate(\n    ${args.join(",\n    ")},\n))`;
}

export function asOpenAI(request, origin, withKey) {
  // the cache is keel's own switch: OpenAI routes always use it
  const { prompt, messages, raw, model, max_new_tokens, schema, regex, choices, cache, ...rest } =
    request;
  const chat = !raw;
  const args = [`model=${python(model)}`];
  if (chat) args.push(`messages=${python(messages ?? [{ role: "user", content: prompt }])}`);
  else args.push(`prompt=${python(prompt)}`);
  args.push(`max_tokens=${max_new_tokens}`);
  const extra = {};
  for (const [name, value] of Object.entries(rest)) {
    if (["temperature", "seed", "top_p", "stop"].includes(name)) args.push(`${name}=${python(value)}`);
    else extra[name] = value;
  }
  if (schema !== undefined) extra.structured_outputs = { json: schema };
  if (regex !== undefined) extra.structured_outputs = { regex };
  if (choices !== undefined) extra.structured_outputs = { choice: choices };
  if (Object.keys(extra).length) args.push(`extra_body=${python(extra)}`);
  const key = withKey ? 'os.environ["KEEL_API_KEY"]' : '"unused"';
  const call = chat ? "chat.completions" : "completions";
  const answer = chat ? "choices[0].message.content" : "choices[0].text";
  return `import os\n\nfrom openai import OpenAI\n\n` +
    `client = OpenAI(base_url="${origin}/v1", api_key=${key})\n` +
    `response = client.${call}.create(\n    ${args.join(",\n    ")},\n)\nprint(response.${answer})`;
}
