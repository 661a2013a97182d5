// hybrec's web page: the shopping assistant (streamed), recommendations "for you", similar items, click events.
// Plain browser JavaScript (an ES module) against the public API; no build step, no third-party code. Every failure
// is shown in the page (#errors), never swallowed.
import { $, apiKey, clearErrors, getJSON, money, postEventStream, postJSON, saveApiKey, showError } from "./http.js";

const USER_STORAGE = "hybrec.userId";
const FOR_YOU_COUNT = 8;
const SIMILAR_COUNT = 5;

const state = {
  userId: null,
  sessionId: null, // the assistant's session for the current shopper (follow-ups like "show me more")
  forYouIds: [],
  categories: new Set(),
  busy: false,
  forYouTicket: 0, // only the latest "for you" request may draw the panel (answers can arrive out of order)
};

// --- product cards -----------------------------------------------------------------------------------------------

let cardCounter = 0;

/** A product card: name, brand, price, rating, why it was chosen, "similar items"; clicking it is a "click". */
function productCard(item, { reason = item.reason, source }) {
  const card = $("#card-template").content.firstElementChild.cloneNode(true);
  cardCounter += 1;
  card.dataset.itemId = item.item_id;
  if (item.price != null) card.dataset.price = String(item.price);
  $(".card-name", card).textContent = item.name || item.item_id;
  $(".card-brand", card).textContent = item.brand || "no brand";
  $(".card-price", card).textContent = money(item.price);
  $(".card-rating", card).textContent = item.avg_rating == null ? "not rated" : `★ ${item.avg_rating.toFixed(1)}`;
  const reasonLine = $(".card-reason", card);
  if (reason) reasonLine.textContent = `Why: ${reason}`;
  else reasonLine.remove();
  if (item.category) state.categories.add(item.category);

  const main = $(".card-main", card);
  main.setAttribute("aria-label", `${item.name || item.item_id}, ${money(item.price)}: record a click`);
  main.addEventListener("click", () => recordClick(item, card, source));

  const toggle = $(".similar-toggle", card);
  const panel = $(".similar", card);
  panel.id = `similar-${cardCounter}`;
  toggle.setAttribute("aria-controls", panel.id);
  toggle.addEventListener("click", () => toggleSimilar(item, toggle, panel));
  return card;
}

async function recordClick(item, card, source) {
  if (!state.userId) return showError("Choose a shopper first.");
  card.classList.add("pending");
  try {
    const outcome = await postJSON(
      "/v1/interactions",
      { user_id: state.userId, item_id: item.item_id, kind: "click" },
      `Recording a click on ${item.name || item.item_id}`,
    );
    card.classList.add("clicked");
    const strategy = outcome.users && outcome.users[0] ? outcome.users[0].strategy : null;
    setStatus(`Click on “${item.name}” recorded${strategy ? ` (your taste is now ${strategy})` : ""}; updating…`);
    await refreshForYou({ reason: `after your click on ${source === "for-you" ? "a pick" : "a chat result"}` });
  } catch (error) {
    showError(error);
  } finally {
    card.classList.remove("pending");
  }
}

async function toggleSimilar(item, toggle, panel) {
  const open = toggle.getAttribute("aria-expanded") === "true";
  toggle.setAttribute("aria-expanded", String(!open));
  panel.hidden = open;
  if (open || panel.dataset.loaded) return;
  const list = $(".similar-list", panel);
  list.replaceChildren(listNote("Loading…"));
  try {
    const body = await getJSON(
      `/v1/items/${encodeURIComponent(item.item_id)}/similar?n=${SIMILAR_COUNT}`,
      `Similar items for ${item.name || item.item_id}`,
    );
    list.replaceChildren(
      ...(body.items.length ? body.items.map(similarRow) : [listNote("No similar items under these filters.")]),
    );
    panel.dataset.loaded = "1";
  } catch (error) {
    list.replaceChildren(listNote(error.status === 404 ? "The model does not know this item yet." : "Could not load."));
    showError(error);
  }
}

function similarRow(item) {
  const row = document.createElement("li");
  row.dataset.itemId = item.item_id;
  const name = document.createElement("span");
  name.textContent = item.name || item.item_id;
  const price = document.createElement("span");
  price.className = "muted";
  price.textContent = `${item.brand ? `${item.brand} · ` : ""}${money(item.price)}`;
  row.append(name, price);
  return row;
}

function listNote(text) {
  const row = document.createElement("li");
  row.className = "muted note";
  row.textContent = text;
  return row;
}

// --- "for you" ---------------------------------------------------------------------------------------------------

function setStatus(text) {
  $("#for-you-status").textContent = text;
}

function filterQuery() {
  const form = $("#reco-filters");
  const params = new URLSearchParams({ n: String(FOR_YOU_COUNT) });
  for (const name of ["category", "brand", "min_price", "max_price", "min_rating"]) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

async function refreshForYou({ reason = "" } = {}) {
  if (!state.userId) return;
  const list = $("#for-you-list");
  const ticket = ++state.forYouTicket;
  list.setAttribute("aria-busy", "true");
  try {
    const body = await getJSON(
      `/v1/users/${encodeURIComponent(state.userId)}/recommendations?${filterQuery()}`,
      `Recommendations for ${state.userId}`,
    );
    if (ticket !== state.forYouTicket) return; // a newer request (another shopper, other filters) is under way
    const before = new Set(state.forYouIds);
    const cards = body.items.map((item) => {
      const card = productCard(item, { reason: "", source: "for-you" });
      if (before.size && !before.has(item.item_id)) card.classList.add("new");
      return card;
    });
    list.replaceChildren(...(cards.length ? cards : [listNote("Nothing matches these filters.")]));
    const changed = body.items.filter((i) => !before.has(i.item_id)).length;
    state.forYouIds = body.items.map((i) => i.item_id);
    $("#for-you-strategy").textContent = body.strategy;
    $("#for-you-version").textContent = `v${body.model_version}`;
    let status = `${body.items.length} picks`;
    if (reason && before.size) status += ` ${reason}: ${changed} new`;
    if (body.degraded && body.degraded.length) status += ` (degraded: ${body.degraded.join("; ")})`;
    setStatus(status);
    fillCategories();
  } catch (error) {
    if (ticket === state.forYouTicket) setStatus("Could not load recommendations.");
    showError(error);
  } finally {
    if (ticket === state.forYouTicket) list.setAttribute("aria-busy", "false");
  }
}

function fillCategories() {
  const options = [...state.categories].sort().map((c) => {
    const option = document.createElement("option");
    option.value = c;
    return option;
  });
  $("#category-options").replaceChildren(...options);
}

// --- the assistant (server-sent events over fetch) ---------------------------------------------------------------

function addTurn(message) {
  const turn = document.createElement("li");
  turn.className = "turn";
  turn.dataset.state = "streaming";
  const asked = document.createElement("p");
  asked.className = "bubble user-said";
  asked.textContent = message;
  const reply = document.createElement("p");
  reply.className = "bubble reply";
  reply.setAttribute("aria-busy", "true");
  const meta = document.createElement("p");
  meta.className = "turn-meta muted";
  const cards = document.createElement("ul");
  cards.className = "cards chat-cards";
  cards.setAttribute("aria-label", "Products the assistant chose");
  turn.append(asked, reply, meta, cards);
  $("#chat-log").append(turn);
  scrollLogTo(turn);
  return { turn, reply, meta, cards };
}

/** Scroll the conversation (not the page) so that `turn` starts at its top. */
function scrollLogTo(turn) {
  const log = $("#chat-log");
  log.scrollTop = turn.offsetTop - log.offsetTop;
}

function describeFilters(filters) {
  const parts = [];
  if (filters.category) parts.push(filters.category);
  if (filters.brand) parts.push(`brand ${filters.brand}`);
  if (filters.min_price != null) parts.push(`from ${money(filters.min_price)}`);
  if (filters.max_price != null) parts.push(`up to ${money(filters.max_price)}`);
  if (filters.min_rating != null) parts.push(`rated ${filters.min_rating}+`);
  return parts.join(" · ");
}

function handleEvent({ event, data }, view) {
  if (event === "items") {
    state.sessionId = data.session_id;
    const filters = describeFilters(data.filters || {});
    view.meta.textContent = filters ? `Looking for: ${filters}` : "";
    view.cards.replaceChildren(...data.items.map((item) => productCard(item, { source: "chat" })));
    fillCategories();
    scrollLogTo(view.turn);
  } else if (event === "token") {
    // One text node per token: the reply grows as the server streams it.
    view.reply.append(document.createTextNode(data.text));
    view.reply.dataset.tokens = String(Number(view.reply.dataset.tokens || 0) + 1);
  } else if (event === "done") {
    state.sessionId = data.session_id;
    const notes = [...(data.relaxed || []), ...(data.notices || [])];
    if (data.degraded && data.degraded.length) notes.push(`answered without the language model (${data.degraded[0]})`);
    if (notes.length) view.meta.textContent = [view.meta.textContent, ...notes].filter(Boolean).join(" · ");
    view.turn.dataset.state = "done";
  } else if (event === "error") {
    throw new Error(`The assistant failed mid-answer: ${data && data.detail ? data.detail : "no detail"}`);
  } else {
    throw new Error(`The assistant sent an unknown event ${JSON.stringify(event)}`);
  }
}

async function sendChat(message) {
  const view = addTurn(message);
  try {
    const body = { user_id: state.userId, message, session_id: state.sessionId };
    for await (const event of postEventStream("/v1/chat/stream", body, "The assistant")) handleEvent(event, view);
    if (view.turn.dataset.state !== "done") throw new Error("The assistant's answer stopped before it was complete");
  } catch (error) {
    view.turn.dataset.state = "failed";
    view.reply.classList.add("failed");
    if (!view.reply.textContent) view.reply.textContent = "No answer.";
    showError(error);
  } finally {
    view.reply.setAttribute("aria-busy", "false");
  }
}

// --- shoppers ----------------------------------------------------------------------------------------------------

async function loadUsers() {
  const select = $("#user-select");
  try {
    const body = await getJSON("/v1/users?limit=20", "Listing shoppers");
    const saved = localStorage.getItem(USER_STORAGE);
    const ids = body.users.map((u) => u.user_id);
    if (saved && !ids.includes(saved)) body.users.unshift({ user_id: saved, interactions: null });
    select.replaceChildren(
      ...body.users.map((u) => {
        const option = document.createElement("option");
        option.value = u.user_id;
        option.textContent = u.interactions == null ? u.user_id : `${u.user_id} (${u.interactions} events)`;
        return option;
      }),
    );
    const first = saved || (body.users[0] && body.users[0].user_id);
    if (first) {
      select.value = first;
      await setUser(first);
    } else {
      setStatus("The store has no shoppers yet: type an id to start as a new one.");
    }
  } catch (error) {
    showError(error);
  }
}

async function setUser(userId) {
  const id = userId.trim();
  if (!id) return;
  const changed = id !== state.userId;
  state.userId = id;
  localStorage.setItem(USER_STORAGE, id);
  $("#chat-user").textContent = `as ${id}`;
  if (changed) {
    state.sessionId = null; // a new shopper starts a new conversation
    state.forYouIds = [];
    $("#chat-log").replaceChildren();
  }
  await refreshForYou();
}

function ensureOption(userId) {
  const select = $("#user-select");
  if (![...select.options].some((o) => o.value === userId)) {
    const option = document.createElement("option");
    option.value = userId;
    option.textContent = userId;
    select.prepend(option);
  }
  select.value = userId;
}

// --- wiring ------------------------------------------------------------------------------------------------------

function wire() {
  $("#user-select").addEventListener("change", (event) => setUser(event.target.value));
  $("#user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = $("#user-id").value.trim();
    const id = typed || $("#user-select").value;
    if (!id) return showError("Type a shopper id or pick one from the list.");
    ensureOption(id);
    $("#user-id").value = "";
    setUser(id);
  });

  const keyInput = $("#api-key");
  keyInput.value = apiKey();
  $("#api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    saveApiKey(keyInput.value.trim());
    $(".api-key").open = false;
    clearErrors();
    loadUsers();
  });
  $("#api-key-clear").addEventListener("click", () => {
    saveApiKey("");
    keyInput.value = "";
    $(".api-key").open = false;
  });

  $("#reco-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    refreshForYou({ reason: "with these filters" });
  });
  $("#reco-filters").addEventListener("reset", () => setTimeout(() => refreshForYou(), 0));

  const input = $("#chat-input");
  $("#chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = input.value.trim();
    if (!message) return;
    if (!state.userId) return showError("Choose a shopper first.");
    if (state.busy) return;
    state.busy = true;
    $("#chat-send").disabled = true;
    input.value = "";
    try {
      await sendChat(message);
    } finally {
      state.busy = false;
      $("#chat-send").disabled = false;
      input.focus();
    }
  });
  // Enter sends, Shift+Enter adds a line.
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("#chat-form").requestSubmit();
    }
  });
}

window.addEventListener("unhandledrejection", (event) => showError(event.reason));
document.addEventListener("DOMContentLoaded", () => {
  wire();
  loadUsers();
});
