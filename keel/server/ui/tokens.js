// The token view: one span per token, coloured by its probability (red: unlikely, green:
// certain). Hovering or focusing a token shows its id, logprob and the top alternatives;
// the arrow keys move between tokens (one tab stop for the whole text).

const container = document.getElementById("tokens");
const info = document.getElementById("token-info");
const visible = (text) => JSON.stringify(text).slice(1, -1);

export function clearTokens() {
  container.replaceChildren();
  hideInfo();
}

export function addToken(data) {
  const span = document.createElement("span");
  span.className = "tok";
  span.textContent = data.token;
  span.dataset.id = data.token_id;
  span.tabIndex = container.children.length ? -1 : 0;
  const details = data.logprobs;
  if (details) {
    span.dataset.logprob = details.logprob;
    span.dataset.alternatives = JSON.stringify(details.top_logprobs);
    const probability = Math.exp(details.logprob);
    span.style.backgroundColor = `hsl(${Math.round(probability * 120)} 85% 84%)`;
  }
  container.append(span);
}

export function tokenIds() {
  return [...container.children].map((span) => Number(span.dataset.id));
}

export function tokenTexts() {
  return [...container.children].map((span) => span.textContent);
}

function showInfo(span) {
  const rows = [`<tr><th>token id</th><td>${span.dataset.id}</td></tr>`];
  const text = `<tr><th>text</th><td><code></code></td></tr>`;
  rows.push(text);
  if (span.dataset.logprob !== undefined) {
    const logprob = Number(span.dataset.logprob);
    rows.push(`<tr><th>logprob</th><td>${logprob.toFixed(4)} (p = ${(Math.exp(logprob) * 100).toFixed(1)}%)</td></tr>`);
  }
  info.innerHTML = `<table>${rows.join("")}</table>`;
  info.querySelector("code").textContent = visible(span.textContent);
  const alternatives = JSON.parse(span.dataset.alternatives ?? "[]");
  if (alternatives.length) {
    const table = document.createElement("table");
    table.innerHTML = "<caption class='small muted'>top alternatives</caption>";
    for (const alternative of alternatives) {
      const row = table.insertRow();
      if (alternative.token_id === Number(span.dataset.id)) row.className = "chosen";
      row.insertCell().textContent = visible(alternative.text);
      row.insertCell().textContent = `${(Math.exp(alternative.logprob) * 100).toFixed(1)}%`;
      row.insertCell().textContent = `id ${alternative.token_id}`;
    }
    info.append(table);
  }
  const box = span.getBoundingClientRect();
  info.hidden = false;
  const left = Math.min(box.left + window.scrollX, window.scrollX + document.documentElement.clientWidth - info.offsetWidth - 8);
  info.style.left = `${Math.max(left, 4)}px`;
  info.style.top = `${box.bottom + window.scrollY + 4}px`;
  span.setAttribute("aria-describedby", "token-info");
}

function hideInfo() {
  info.hidden = true;
}

function move(span, step) {
  const next = step > 0 ? span.nextElementSibling : span.previousElementSibling;
  if (!next) return;
  span.tabIndex = -1;
  next.tabIndex = 0;
  next.focus();
}

container.addEventListener("mouseover", (event) => {
  if (event.target.classList.contains("tok")) showInfo(event.target);
});
container.addEventListener("mouseleave", hideInfo);
container.addEventListener("focusin", (event) => {
  if (event.target.classList.contains("tok")) showInfo(event.target);
});
container.addEventListener("focusout", hideInfo);
container.addEventListener("keydown", (event) => {
  if (!event.target.classList.contains("tok")) return;
  if (event.key === "ArrowRight") move(event.target, 1);
  else if (event.key === "ArrowLeft") move(event.target, -1);
  else if (event.key === "Escape") hideInfo();
  else return;
  event.preventDefault();
});
