// The last runs, kept in this browser (localStorage): the request, the start of the text
// and the fingerprint, so an earlier result can be brought back and run again.

const KEY = "keel.history";
const LIMIT = 20;

export function loadHistory() {
  try {
    const runs = JSON.parse(localStorage.getItem(KEY) ?? "[]");
    return Array.isArray(runs) ? runs : [];
  } catch {
    return [];
  }
}

export function remember(run) {
  const runs = [run, ...loadHistory()].slice(0, LIMIT);
  localStorage.setItem(KEY, JSON.stringify(runs));
  return runs;
}

export function forget() {
  localStorage.removeItem(KEY);
}
