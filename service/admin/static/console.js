// order-bridge admin console: refreshes the lanes table and sends the buttons' requests to the
// JSON API. Plain JavaScript, no build step. Requests carry the anti-forgery header the API
// asks of cookie-authenticated changes; texts are set with textContent, never as HTML.
"use strict";

const HEADERS = { "X-Requested-With": "order-bridge", "Accept": "application/json" };

function say(text, bad) {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = text;
  status.classList.toggle("bad", Boolean(bad));
}

async function call(url, method, body) {
  const options = { method: method, headers: Object.assign({}, HEADERS), credentials: "same-origin" };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  if (response.status === 401) { window.location.assign("/login"); throw new Error("logged out"); }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.detail || ("HTTP " + response.status));
  return data;
}

function seconds(value) { return value === null || value === undefined ? null : value.toFixed(1) + " s"; }

function renderLane(row, lane) {
  const set = (field, text) => { const cell = row.querySelector('[data-field="' + field + '"]'); if (cell) cell.textContent = text; };
  set("pending", String(lane.pending));
  set("in_flight", String(lane.in_flight));
  set("oldest", seconds(lane.oldest_age_seconds) || "—");
  let next = lane.next_flush || "—";
  if (lane.next_flush && lane.next_flush_in_seconds !== null) next += " in " + seconds(lane.next_flush_in_seconds);
  set("next", next);
  set("attempts", String(lane.attempts) + (lane.backoff_seconds ? " (backoff " + seconds(lane.backoff_seconds) + ")" : ""));
  set("state", lane.paused ? "paused" : "running");
}

async function refreshLanes(table) {
  try {
    const data = await call(table.dataset.refresh, "GET");
    for (const lane of data.lanes) {
      const row = table.querySelector('tr[data-integration="' + lane.integration_id + '"]');
      if (!row) { window.location.reload(); return; }  // a lane appeared: render the page anew
      renderLane(row, lane);
    }
  } catch (error) {
    say("Could not refresh: " + error.message, true);
  }
}

function describe(action, data) {
  if (action === "replay") {
    if (data.status === "failed") return "Replay of letter " + data.id + " failed again: " + (data.detail || data.reason);
    return "Letter " + data.id + " replayed: order " + (data.order_id || "") + " " + data.status + ".";
  }
  if (action === "discard") return "Letter " + data.id + " discarded.";
  return "Lane " + data.integration_id + ": " + (data.paused ? "paused" : "running") + ", " + data.pending + " pending.";
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
  button.disabled = true;
  const action = button.dataset.action;
  try {
    const data = await call(button.dataset.url, button.dataset.method || "POST");
    say(describe(action, data), action === "replay" && data.status === "failed");
    const letterRow = button.closest("tr[data-letter]");
    if (letterRow && (action === "discard" || (action === "replay" && data.status !== "failed"))) letterRow.remove();
    else if (letterRow) letterRow.querySelector('[data-field="attempts"]').textContent = String(data.attempts);
    const laneRow = button.closest("tr[data-integration]");
    if (laneRow) renderLane(laneRow, data);
  } catch (error) {
    say(error.message, true);
  } finally {
    button.disabled = false;
  }
});

document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-bulk]");
  if (!form) return;
  event.preventDefault();
  const reason = form.elements.reason.value;
  try {
    const data = await call(form.dataset.bulk, "POST", { reason: reason });
    say("Replayed " + data.matched + " letters with reason " + reason + ": " + (data.buffered + data.coalesced) +
        " back in their lane, " + data.stale + " already newer, " + data.failed + " failed again.", data.failed > 0);
    window.setTimeout(() => window.location.reload(), 1500);
  } catch (error) {
    say(error.message, true);
  }
});

document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector("table[data-refresh]");
  if (table) window.setInterval(() => refreshLanes(table), 2000);
});
