// The playground: run the form's request as a stream, show tokens and stats, and prove the
// result reproducible (Verify replays it with the cache off and compares token ids).
import { ApiError, generateOnce, listModels, streamGenerate } from "./api.js";
import { forget, loadHistory, remember } from "./history.js";
import {
  FormError, asCurl, asOpenAI, asPython, fillForm, fromFragment, messageRow, readForm,
  showInputKind, showStructure, toFragment,
} from "./request.js";
import { addToken, clearTokens, tokenIds, tokenTexts } from "./tokens.js";

const $ = (id) => document.getElementById(id);
const settings = JSON.parse($("keel-settings").textContent);
const KEY_STORE = "keel.apiKey";
let running = null; // the AbortController of the generation in flight
let lastRun = null; // {request, stopped}

const apiKey = () => $("api-key").value.trim();

function setStatus(text) {
  $("status").textContent = text;
}

function showError(error) {
  const box = $("error");
  box.hidden = false;
  box.textContent = error instanceof ApiError ? error.describe() : String(error.message ?? error);
}

function clearOutput() {
  clearTokens();
  $("error").hidden = true;
  $("value").hidden = true;
  $("verify-result").textContent = "";
  $("verify-result").className = "verify";
  $("fingerprint-full").textContent = "";
  for (const cell of document.querySelectorAll("#stats dd")) cell.textContent = "–";
}

function showStats(done) {
  const cells = Object.fromEntries(
    [...document.querySelectorAll("#stats dd")].map((cell) => [cell.dataset.stat, cell]));
  cells.prompt_tokens.textContent = done.prompt_tokens;
  cells.ttft.textContent = `${done.time_to_first_token_ms.toFixed(1)} ms`;
  cells.tps.textContent = done.tokens_per_second.toFixed(1);
  cells.finish_reason.textContent = done.finish_reason + (done.stop_string ? ` (${JSON.stringify(done.stop_string)})` : "");
  cells.cached.textContent = done.cached ? "hit (replayed from the cache)" : "miss (generated now)";
  cells.fingerprint.textContent = done.fingerprint;
  $("fingerprint-full").textContent = JSON.stringify(done.fingerprint_details, null, 2);
}

function showValue(request) {
  if (request.schema === undefined) return;
  // the text carries keel's <json-output> tags around the JSON
  const text = tokenTexts().join("");
  const inner = /<json-output>([\s\S]*)<\/json-output>/.exec(text)?.[1] ?? text;
  try {
    $("value").textContent = JSON.stringify(JSON.parse(inner), null, 2);
  } catch {
    $("value").textContent = text;
  }
  $("value").hidden = false;
}

function setRunning(active) {
  $("generate").disabled = active;
  $("stop-button").disabled = !active;
  $("verify").disabled = active || lastRun === null;
}

async function run() {
  const request = formRequest();
  if (!request) return;
  clearOutput();
  lastRun = null;
  running = new AbortController();
  setRunning(true);
  setStatus("Generating…");
  let count = 0;
  const onToken = (data) => {
    addToken(data);
    count += 1;
    setStatus(`Generating… ${count} tokens`);
  };
  try {
    const sent = { ...request, logprobs: true, top_logprobs: 5 };
    const done = await streamGenerate(sent, apiKey(), onToken, running.signal);
    lastRun = { request, stopped: false };
    showStats(done);
    showValue(request);
    setStatus(`Done: ${done.total_tokens} tokens, ${done.completion_reason}.`);
    rememberRun(request, done.fingerprint);
  } catch (error) {
    if (error.name === "AbortError") {
      lastRun = { request, stopped: true };
      setStatus(`Stopped after ${count} tokens; the server cancelled the generation.`);
    } else {
      setStatus("Failed.");
      showError(error);
    }
  } finally {
    running = null;
    setRunning(false);
  }
}

async function verify() {
  const { request, stopped } = lastRun;
  const ran = tokenIds();
  const texts = tokenTexts();
  $("verify").disabled = true;
  setStatus("Replaying the same request with the cache off…");
  try {
    // a stopped run is checked on the tokens it has: the replay stops there too
    const replayed = stopped ? { ...request, max_new_tokens: Math.max(ran.length, 1) } : request;
    const replay = await generateOnce({ ...replayed, cache: false }, apiKey());
    const again = replay.token_ids;
    const result = $("verify-result");
    const first = ran.findIndex((id, i) => id !== again[i]);
    if (first === -1 && again.length === ran.length) {
      const scope = stopped ? ` (the ${ran.length} tokens before Stop)` : ` (${ran.length} tokens)`;
      result.textContent = `Identical: the replay generated the same tokens${scope}, fingerprint ${replay.fingerprint}.`;
      result.className = "verify same";
    } else {
      const at = first === -1 ? Math.min(ran.length, again.length) : first;
      const theirs = replay.token_ids[at];
      result.textContent = `Differs at token ${at}: this run has ${JSON.stringify(texts[at] ?? "(end)")} ` +
        `(id ${ran[at] ?? "none"}), the replay has id ${theirs ?? "none"}.`;
      result.className = "verify differs";
    }
    setStatus("Verified.");
  } catch (error) {
    setStatus("Verify failed.");
    showError(error);
  } finally {
    $("verify").disabled = false;
  }
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false; // no clipboard (permissions, insecure origin): the text is shown instead
  }
}

// The form's request, or null once the reason it has none is shown.
function formRequest() {
  try {
    return readForm();
  } catch (error) {
    if (!(error instanceof FormError)) throw error;
    showError(error);
    return null;
  }
}

async function permalink() {
  const request = formRequest();
  if (!request) return;
  history.replaceState(null, "", toFragment(request));
  const copied = await copyText(location.href);
  setStatus(copied ? "Permalink copied: it reproduces this output." : "Permalink is in the address bar.");
}

async function copySnippet() {
  const request = formRequest();
  if (!request) return;
  const kind = $("copy-kind").value;
  const withKey = Boolean(apiKey());
  const text = kind === "curl" ? asCurl(request, location.origin, withKey)
    : kind === "python" ? asPython(request) : asOpenAI(request, location.origin, withKey);
  $("snippet").textContent = text;
  $("snippet").hidden = false;
  const copied = await copyText(text);
  setStatus(copied ? `Copied as ${$("copy-kind").selectedOptions[0].text}.` : "Shown below; copy it from there.");
}

function rememberRun(request, fingerprint) {
  const text = tokenTexts().join("");
  showHistory(remember({ request, fingerprint, text: text.slice(0, 80), at: new Date().toISOString() }));
}

function showHistory(runs) {
  $("history").replaceChildren(...runs.map((entry) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const label = entry.request.prompt ?? entry.request.messages?.at(-1)?.content ?? "";
    button.textContent = `${label.slice(0, 40)} → ${entry.text}`;
    button.title = `${entry.fingerprint} at ${entry.at}`;
    button.addEventListener("click", () => fillForm(entry.request, settings.defaults));
    item.append(button);
    return item;
  }));
}

async function loadModels() {
  const select = $("model");
  const chosen = select.value || settings.model;
  let names = [settings.model];
  try {
    names = await listModels(apiKey());
    $("error").hidden = true;
  } catch (error) {
    showError(error);
  }
  select.replaceChildren(...names.map((name) => new Option(name, name)));
  select.value = names.includes(chosen) ? chosen : names[0];
}

function start() {
  $("api-key").value = sessionStorage.getItem(KEY_STORE) ?? "";
  $("api-key").addEventListener("change", () => {
    sessionStorage.setItem(KEY_STORE, apiKey());
    loadModels();
  });
  $("key-form").addEventListener("submit", (event) => event.preventDefault());
  for (const [name, value] of Object.entries(settings.defaults)) {
    const input = $(name.replaceAll("_", "-"));
    if (input) input.value = value;
  }
  $("max-new-tokens").max = settings.max_tokens;
  $("messages").append(messageRow("user", "Write one sentence about the sea."));
  for (const radio of document.querySelectorAll("input[name=input-kind]")) {
    radio.addEventListener("change", () => showInputKind(radio.value));
  }
  for (const radio of document.querySelectorAll("input[name=structure]")) {
    radio.addEventListener("change", () => showStructure(radio.value));
  }
  $("schema").addEventListener("input", () => {
    try {
      JSON.parse($("schema").value);
      $("schema-check").textContent = "Valid JSON.";
    } catch (error) {
      $("schema-check").textContent = `Not JSON yet: ${error.message}`;
    }
  });
  $("add-message").addEventListener("click", () => $("messages").append(messageRow()));
  $("request-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run();
  });
  $("stop-button").addEventListener("click", () => running?.abort());
  $("verify").addEventListener("click", verify);
  $("permalink").addEventListener("click", permalink);
  $("copy").addEventListener("click", copySnippet);
  $("clear-history").addEventListener("click", () => {
    forget();
    showHistory([]);
  });
  showHistory(loadHistory());
  loadModels().then(() => {
    if (!location.hash) return;
    let shared;
    try {
      shared = fromFragment(location.hash);
    } catch (error) {
      return showError(new Error(`This link's request could not be read: ${error.message}`));
    }
    if (shared) {
      fillForm(shared, settings.defaults);
      run();
    }
  });
}

start();
