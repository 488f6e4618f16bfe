"use strict";
// Every piece of call data reaches the page through textContent or an attribute, never as
// HTML: `el` builds elements, and strings become text nodes.

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function badge(kind, text) { return el("span", {class: "badge " + kind, text}); }

function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit",
                                                          second: "2-digit"});
}

function dateTime(seconds) {
  return new Date(seconds * 1000).toLocaleString([], {dateStyle: "medium", timeStyle: "short"});
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m + ":" + String(s % 60).padStart(2, "0");
}

async function api(method, path, body) {
  const init = {method, headers: {}, credentials: "same-origin"};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) {
    location.href = "/login";
    throw new Error("logged out");
  }
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : response.statusText;
    const error = new Error(message || ("HTTP " + response.status));
    error.detail = (data && data.error) || {};  // {code, message, and e.g. holder}
    throw error;
  }
  return data;
}

// ------------------------------------------------------------------ tabs

const tabs = ["live", "history", "gaps"];
const loaders = {history: () => loadCalls(), gaps: () => loadGaps()};

function showTab() {
  const name = tabs.includes(location.hash.slice(1)) ? location.hash.slice(1) : "live";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.tab === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  for (const panel of document.querySelectorAll("[data-tab-panel]")) {
    panel.hidden = panel.dataset.tabPanel !== name;
  }
  if (loaders[name]) loaders[name]();  // fresh each time the tab is shown
}
window.addEventListener("hashchange", showTab);

// ------------------------------------------------------------------ live: the feed

const LIVE = document.getElementById("active");
const RECENT = document.getElementById("recent");
const RECENT_KEPT = 12;
const calls = new Map();  // call id → {card, turns: Map(turn → parts), started, ended, flags}

const conn = document.getElementById("conn");
let socket = null;
let retryMs = 500;

function setConnection(state, text) {
  conn.dataset.state = state;
  conn.textContent = text;
}

function connect() {
  setConnection("connecting", "Connecting…");
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + "/api/live");
  socket.addEventListener("open", () => {
    retryMs = 500;
    setConnection("open", "Live feed connected");
    reconcile();
    loadMe();
    loadQueue();
  });
  socket.addEventListener("message", (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch (e) { return; }
    onEvent(event);
  });
  socket.addEventListener("close", async () => {
    socket = null;
    // A refused handshake looks like any other drop: ask the API whether we are still in.
    try { await api("GET", "/api/calls?limit=1"); } catch (e) { /* 401 → /login */ }
    const wait = retryMs * (0.8 + Math.random() * 0.4);
    retryMs = Math.min(retryMs * 2, 15000);
    setConnection("closed", "Disconnected — retrying in " + Math.ceil(wait / 1000) + " s");
    setTimeout(connect, wait);
  });
}

async function reconcile() {
  // On (re)connect the feed replays every live call; calls that ended while we were away are
  // not replayed, so ask the history which of our live cards are still live.
  const mine = [...calls.values()].filter((c) => !c.ended);
  if (!mine.length) return;
  try {
    const data = await api("GET", "/api/calls?limit=200");
    const live = new Set(data.calls.filter((c) => c.live).map((c) => c.call_id));
    for (const call of mine) {
      if (!live.has(call.id)) endCall(call, "ended while disconnected", Date.now() / 1000);
    }
  } catch (e) { /* the next reconnect tries again */ }
}

function onEvent(event) {
  const id = event.call_id;
  if (!id) return;
  if (event.type === "call.started") {
    const old = calls.get(id);
    if (old) { old.card.remove(); calls.delete(id); }  // a replay after a reconnect
    const call = newCall(id, event.channel, event.caller_id, event.at);
    calls.set(id, call);
    LIVE.prepend(call.card);
    updateCounts();
    return;
  }
  let call = calls.get(id);
  if (!call) {  // its start fell out of the feed's bounded replay
    if (event.type === "call.ended") return;
    call = newCall(id, "", null, Date.now() / 1000);
    calls.set(id, call);
    LIVE.prepend(call.card);
    updateCounts();
  }
  switch (event.type) {
    case "call.ended": endCall(call, event.reason, event.at); break;
    case "speech.started": turnOf(call, event.turn).q.textContent = "…"; break;
    case "transcript.partial": {
      const parts = turnOf(call, event.turn);
      if (!parts.final) parts.q.textContent = event.text || "…";
      break;
    }
    case "transcript.final": onFinal(call, event); break;
    case "reply.text": {
      const parts = turnOf(call, event.turn);
      parts.a.classList.add("streaming");
      parts.a.textContent += event.text;
      scrollDown(call);
      break;
    }
    case "clear": {  // turn 0 drops hold audio, which has no turn on the card
      const parts = call.turns.get(event.turn);
      if (parts) parts.a.classList.add("cut");
      break;
    }
    case "reply.end": onReplyEnd(call, event); break;
    case "handoff":
      flagCall(call, "handoff", "HANDOFF" + (event.by === "supervisor" ? " (supervisor)" : ""));
      break;
    case "hold": onHold(call, event); break;
    case "person.said": onPersonSaid(call, event); break;
    case "error":
      call.card.querySelector(".turns").append(
        el("li", {class: "notice", text: "Error " + event.code + ": " + event.message}));
      break;
    default: break;
  }
}

function newCall(id, channel, callerId, at) {
  const state = el("span", {class: "state", text: "live · 0:00"});
  const flags = el("div", {class: "flags"});
  const turns = el("ol", {class: "turns"});
  const input = el("input", {name: "text", maxlength: 1000, autocomplete: "off",
                             placeholder: "Type a message to speak into the call",
                             "aria-label": "Message to speak"});
  const status = el("span", {class: "status", role: "status"});
  const call = {id, channel, callerId, started: at, ended: null, turns: new Map(),
                flags: new Set(), state, status,
                hold: {state: "assistant", name: "", reason: "", since: at}};
  const form = el("form", {class: "step-in", onsubmit: (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text) { input.focus(); return; }
    stepIn(call, "say", {text}, () => { input.value = ""; });
  }},
    input,
    el("button", {type: "submit", class: "primary speak", text: "Speak"}),
    el("button", {type: "button", class: "stop", text: "Stop answer",
                  onclick: () => stepIn(call, "stop")}),
    el("button", {type: "button", class: "danger handoff", text: "Hand off",
                  onclick: () => stepIn(call, "handoff")}),
    status);
  call.card = el("article", {class: "card live", "data-call-id": id, "data-hold": "assistant"},
    el("div", {class: "card-head"},
      el("span", {class: "caller", text: callerId || "Caller"}),
      el("span", {class: "sub", text: (channel || "call") + " · " + id + " · from " + clock(at)}),
      state),
    flags, takeoverBar(call), turns, form);
  call.flagsEl = flags;
  showControls(call);
  return call;
}

// Who has the call, and the buttons to listen in, take it, hand it back or end it.
function takeoverBar(call) {
  call.holder = el("span", {class: "holder", role: "status"});
  call.audioState = el("span", {class: "audio-state"});
  call.personStatus = el("span", {class: "person-status", role: "status"});
  call.buttons = {
    listen: el("button", {type: "button", class: "listen", text: "Listen in",
                          onclick: () => toggleListening(call.id)}),
    take: el("button", {type: "button", class: "primary take", text: "Take call",
                        onclick: () => take(call.id)}),
    handBack: el("button", {type: "button", class: "hand-back", text: "Hand back",
                            onclick: () => handBack(call.id)}),
    end: el("button", {type: "button", class: "danger end", text: "End call",
                       onclick: () => endLiveCall(call.id, call.buttons.end)}),
  };
  call.bar = el("div", {class: "takeover"}, call.holder, ...Object.values(call.buttons),
                call.audioState, call.personStatus);
  return call.bar;
}

function turnOf(call, number) {
  let parts = call.turns.get(number);
  if (parts) return parts;
  const q = el("span", {class: "question partial"});
  const a = el("span", {class: "reply"});
  const meta = el("div", {class: "meta"});
  const qLine = el("div", {class: "line"}, el("span", {class: "who", text: "Caller"}), q);
  const who = el("span", {class: "who", text: "Assistant"});
  const aLine = el("div", {class: "line"}, who, a);
  const item = el("li", {class: "turn", "data-turn": number}, qLine, aLine, meta);
  parts = {item, q, a, who, qLine, aLine, meta, final: false};
  call.turns.set(number, parts);
  // Turns in order: a late partial of turn 3 never lands above turn 2.
  const list = call.card.querySelector(".turns");
  const after = [...list.children].find((li) => Number(li.dataset.turn) > number);
  list.insertBefore(item, after || null);
  scrollDown(call);
  return parts;
}

function onFinal(call, event) {
  const parts = turnOf(call, event.turn);
  if (event.ignored) {  // an acknowledgement over a reply, or no words: not a turn
    if (!parts.a.textContent) { parts.item.remove(); call.turns.delete(event.turn); }
    return;
  }
  parts.final = true;
  parts.q.classList.remove("partial");
  parts.q.textContent = event.text;
  const {state, name} = call.hold;
  if ((state === "waiting" || state === "person") && !parts.a.textContent) {
    parts.aLine.hidden = true;  // not answered: the call is with a person, or waits for one
    parts.meta.replaceChildren(el("span", {text: state === "person" ? "said to " + name :
                                                                      "said on hold"}));
  }
}

// What the person holding the call said, recognized from their voice: a turn of theirs.
function onPersonSaid(call, event) {
  const parts = turnOf(call, event.turn);
  parts.item.classList.add("person");
  parts.qLine.remove();
  parts.who.textContent = event.name || "Person";
  parts.a.textContent = event.text;
  scrollDown(call);
}

function onReplyEnd(call, event) {
  const parts = turnOf(call, event.turn);
  parts.a.classList.remove("streaming");
  showReply(parts.a, event.text, event.interrupted ? event.heard : event.text);
  if (!parts.final && !parts.q.textContent.replace("…", "")) parts.qLine.remove();
  if (event.backend === "supervisor") parts.who.textContent = "Supervisor";
  parts.meta.replaceChildren(...turnMeta(event));
  if (event.handoff) flagCall(call, "handoff", "HANDOFF");
  for (const rule of event.rules || []) flagCall(call, "guardrail", "GUARDRAIL: " + rule);
  if (event.interrupted) flagCall(call, "barge", "BARGE-IN");
  scrollDown(call);
}

// A reply as the caller heard it; what an interruption cut off is struck through.
function showReply(node, text, heard) {
  node.classList.remove("cut");
  if (heard === text || !text.startsWith(heard)) {
    node.textContent = heard || text;
    return;
  }
  node.replaceChildren(heard, el("del", {title: "not heard: the answer was interrupted",
                                         text: text.slice(heard.length)}));
}

// The flags, latency and sources of one turn: the same on the live cards and in the history.
function turnMeta(turn) {
  const out = [];
  if (turn.handoff) out.push(badge("handoff", "HANDOFF"));
  for (const rule of turn.rules || []) out.push(badge("guardrail", "GUARDRAIL: " + rule));
  const bargeIn = turn.interrupted !== undefined ? turn.interrupted : turn.barge_in;
  if (bargeIn) out.push(badge("barge", "BARGE-IN"));
  const firstAudio = (turn.timings_ms || {}).first_audio;
  if (firstAudio !== null && firstAudio !== undefined) {
    const speed = firstAudio > 1500 ? " very-slow" : firstAudio > 800 ? " slow" : "";
    out.push(el("span", {class: "latency" + speed, title: "first reply audio after the caller stopped",
                         text: "first audio " + firstAudio + " ms"}));
  }
  if (turn.backend) out.push(el("span", {text: turn.backend}));
  if (turn.sources && turn.sources.length) {
    out.push(el("span", {class: "sources", text: "sources: " + turn.sources.join(", ")}));
  }
  return out;
}

function flagCall(call, kind, text) {
  if (call.flags.has(text)) return;
  call.flags.add(text);
  call.flagsEl.append(badge(kind, text));
  if (kind === "guardrail") call.card.classList.add("flag-guardrail");
  if (kind === "handoff") call.card.classList.add("flag-handoff");
}

function endCall(call, reason, at) {
  if (call.ended) return;
  call.ended = at || Date.now() / 1000;
  call.card.classList.remove("live");
  call.card.classList.add("ended");
  call.state.textContent = "ended · " + duration(call.ended - call.started) +
    (reason ? " · " + reason : "");
  for (const parts of call.turns.values()) parts.a.classList.remove("streaming");
  queueRemove(call.id);
  if (link !== null && link.id === call.id) stopListening();
  RECENT.prepend(call.card);
  const ended = [...calls.values()].filter((c) => c.ended).sort((x, y) => y.ended - x.ended);
  for (const old of ended.slice(RECENT_KEPT)) { old.card.remove(); calls.delete(old.id); }
  updateCounts();
}

async function stepIn(call, action, body, done) {
  const label = {say: "Speaking…", stop: "Stopping the answer…", handoff: "Handing off…"};
  call.status.textContent = label[action];
  try {
    await api("POST", "/api/calls/" + encodeURIComponent(call.id) + "/" + action, body || {});
    call.status.textContent = {say: "Spoken into the call.", stop: "Answer stopped.",
                               handoff: "Handed off to a person."}[action];
    if (done) done();
  } catch (e) {
    call.status.textContent = "Could not " + action + ": " + e.message;
  }
}

function scrollDown(call) {
  const list = call.card.querySelector(".turns");
  list.scrollTop = list.scrollHeight;
}

function updateCounts() {
  const active = [...calls.values()].filter((c) => !c.ended).length;
  document.getElementById("active-count").textContent = "(" + active + ")";
  document.getElementById("no-active").hidden = active > 0;
  document.getElementById("no-recent").hidden = RECENT.children.length > 0;
}

setInterval(() => {
  const now = Date.now() / 1000;
  for (const call of calls.values()) {
    if (call.ended) continue;
    call.state.textContent = "live · " + duration(now - call.started);
    if (call.hold.state === "waiting") call.holder.textContent = holderText(call);
  }
  for (const entry of queue.values()) {
    entry.waited.textContent = "waiting " + duration(serverNow() - entry.since);
  }
}, 1000);

// ------------------------------------------------------------------ live: a person takes the call
//
// The handoff queue: the calls waiting for a person, from GET /api/queue at the start and kept
// current by the feed's `hold` events. The page hears one call at a time on its audio
// websocket (`link`), played through console-audio.js; while this supervisor holds that call,
// their microphone goes the other way (kiosk-worklet.js makes its 16 kHz frames).

const QUEUE = document.getElementById("queue");
const queuePanel = document.getElementById("queue-panel");
const queueAlert = document.getElementById("queue-alert");
const soundOn = document.getElementById("sound-on");
const TITLE = document.title;
const LAST_SHOWN = 3;  // exchanges shown per waiting call, as the server's queue gives them
const CHIME_DELAY_MS = 400;  // a call replayed into the queue and out again does not chime
const END_CONFIRM_MS = 4000;  // "End call" asks for a second click within this time
const CALLER_FRAME = 1;  // the first byte of a frame of the caller's audio
const ASSISTANT_FRAME = 2;  // … of the assistant's side: replies, hold audio, a person
const VOICE_RMS = 0.01;  // a 20 ms frame of the caller's louder than this is counted as voice
const MIC_FRAME_MS = 20;
const MAX_BUFFERED_BYTES = 64 * 1024;  // a socket this far behind drops microphone frames
const REASONS = {
  human_request: "asked for a person", supervisor: "handed off by a supervisor",
  out_of_scope: "not in the knowledge base", not_understood: "not understood",
  advice: "asked for advice", personal_contact: "asked for a person's contact",
  handoff: "handed off",
};

const queue = new Map();  // call id → {id, channel, callerId, since, reason, last, item, …}
const chimed = new Set();  // calls the alert tone has sounded for
let queueVersion = 0;  // counts the feed's changes to the queue; see loadQueue
let chimeTimer = null;
let serverSkew = 0;  // the server's clock minus this browser's, in seconds
let me = null;  // this supervisor's name (GET /api/me), to tell their calls from others
let link = null;  // the call this page hears: {id, ws, player, mic, heard, micMs}
let audioCtx = null;
let worklets = null;  // the promise of the worklet modules, added once to audioCtx

function serverNow() { return Date.now() / 1000 + serverSkew; }

function callPath(id, action) { return "/api/calls/" + encodeURIComponent(id) + "/" + action; }

// The call's card, made from the queue's entry when the feed has not shown the call.
function liveCall(id) {
  let call = calls.get(id);
  if (!call) {
    const entry = queue.get(id) || {};
    call = newCall(id, entry.channel || "", entry.callerId || null, Date.now() / 1000);
    calls.set(id, call);
    LIVE.prepend(call.card);
    updateCounts();
  }
  return call;
}

function holding(call) {
  return call.hold.state === "person" && me !== null && call.hold.name === me;
}

function holderText(call) {
  const {state, name} = call.hold;
  const waited = duration(serverNow() - call.hold.since);
  if (state === "waiting") return "Waiting for a person · " + waited;
  if (state === "person") return holding(call) ? "You have this call" : "Held by " + name;
  if (state === "missed") return "Nobody took the call in time";
  return "";
}

function onHold(call, event) {
  call.hold = {state: event.state, name: event.name || "", reason: event.reason || "",
               since: event.at || serverNow()};
  if (event.state === "waiting") queueAdd(call);
  else queueRemove(call.id);
  if (link !== null && link.id === call.id && !holding(call)) stopMicrophone();
  showHold(call);
}

// Who this page's supervisor is: a call they hold (before a reload, say) is theirs.
async function loadMe() {
  try { me = (await api("GET", "/api/me")).name; } catch (e) { return; }
  for (const call of calls.values()) showHold(call);
}

function showHold(call) {
  call.card.dataset.hold = call.hold.state;
  call.card.classList.toggle("mine", holding(call));
  call.holder.textContent = holderText(call);
  showControls(call);
}

// The card's buttons for where the call is and what this page hears.
function showControls(call) {
  const b = call.buttons;
  const listening = link !== null && link.id === call.id;
  const mine = holding(call);
  const speaking = listening && link.mic !== null;  // the microphone is on, or starting
  const busy = link !== null && link.mic !== null && link.id !== call.id;
  b.listen.textContent = listening ? "Stop listening" : "Listen in";
  b.listen.hidden = mine && listening;  // who holds the call hears it
  b.take.hidden = mine && speaking;
  b.handBack.hidden = !mine;
  for (const button of [b.listen, b.take]) {
    button.disabled = busy;
    button.title = busy ? "Hand back the call you have first." : "";
  }
  call.audioState.textContent = !listening ? "" :
    speaking && link.mic.stream ? "Your microphone is on: the caller hears you." :
    speaking ? "Starting your microphone…" : "Listening in.";
  call.bar.dataset.listening = String(listening);
  call.bar.dataset.mic = !speaking ? "off" : link.mic.stream ? "on" : "starting";
  const entry = queue.get(call.id);
  if (entry) {
    entry.listen.textContent = b.listen.textContent;
    entry.listen.disabled = entry.take.disabled = busy;
  }
}

function refreshControls() {
  for (const call of calls.values()) if (!call.ended) showControls(call);
}

// A line under the call's buttons (and its queue entry's): what became of the last action.
function tell(id, text) {
  const call = calls.get(id);
  if (call) call.personStatus.textContent = text;
  const entry = queue.get(id);
  if (entry) entry.status.textContent = text;
}

// ---- the queue

function queueAdd(call) {
  queueVersion++;
  queue.set(call.id, queueEntry({
    call_id: call.id, channel: call.channel, caller_id: call.callerId, since: call.hold.since,
    reason: call.hold.reason, last: lastExchanges(call)}));
  renderQueue();
  loadQueue();  // its last exchanges as the server keeps them
}

function queueRemove(id) {
  if (!queue.has(id)) return;
  queueVersion++;
  queue.delete(id);
  renderQueue();
}

function lastExchanges(call) {
  return [...call.turns.entries()].sort((x, y) => x[0] - y[0])
    .map(([, parts]) => ({question: parts.final ? parts.q.textContent : "",
                          answer: parts.a.textContent}))
    .filter((exchange) => exchange.question || exchange.answer)
    .slice(-LAST_SHOWN);
}

// The server's queue. What the feed changed while it was asked is newer than the answer:
// then the answer only fills in the calls the page still has in its queue.
async function loadQueue() {
  const version = queueVersion;
  let data;
  try {
    data = await api("GET", "/api/queue");
  } catch (e) {
    return;  // the feed keeps the queue current; the next reconnect asks again
  }
  const settled = version === queueVersion;
  const waiting = new Set(data.waiting.map((w) => w.call_id));
  if (settled) for (const id of [...queue.keys()]) if (!waiting.has(id)) queue.delete(id);
  for (const w of data.waiting) {
    serverSkew = w.since + w.waited_s - Date.now() / 1000;
    if (!settled && !queue.has(w.call_id)) continue;
    queue.set(w.call_id, queueEntry(w));
    const call = calls.get(w.call_id);
    if (settled && call && call.hold.state !== "waiting") {  // its hold event fell out of the feed
      call.hold = {state: "waiting", name: "", reason: w.reason, since: w.since};
      showHold(call);
    }
  }
  renderQueue();
}

// A waiting call as /api/queue gives it → its entry, with the entry's element.
function queueEntry(w) {
  const entry = {id: w.call_id, channel: w.channel, callerId: w.caller_id, since: w.since,
                 reason: w.reason, last: w.last || []};
  entry.waited = el("span", {class: "waited",
                             text: "waiting " + duration(serverNow() - entry.since)});
  entry.take = el("button", {type: "button", class: "primary take", text: "Take call",
                             onclick: () => take(entry.id)});
  entry.listen = el("button", {type: "button", class: "listen", text: "Listen in",
                               onclick: () => toggleListening(entry.id)});
  entry.status = el("span", {class: "person-status", role: "status"});
  const reason = REASONS[entry.reason] || (entry.reason || "handed off").replaceAll("_", " ");
  entry.item = el("li", {class: "queued", "data-call-id": entry.id},
    el("div", {class: "queued-head"},
      el("span", {class: "caller", text: entry.callerId || "unknown caller"}),
      el("span", {class: "sub", text: entry.channel || "call"}),
      el("span", {class: "badge handoff reason", text: reason}),
      entry.waited),
    entry.last.length
      ? el("ol", {class: "last"}, entry.last.flatMap((exchange) => [
          exchange.question ? el("li", {}, el("span", {class: "who", text: "Caller"}),
                                 el("span", {text: exchange.question})) : null,
          exchange.answer ? el("li", {}, el("span", {class: "who", text: "Assistant"}),
                               el("span", {text: exchange.answer})) : null]))
      : el("p", {class: "empty", text: "Nothing said yet."}),
    el("div", {class: "actions"}, entry.take, entry.listen,
       el("a", {href: "#live", text: "Show the call", onclick: (e) => {
         e.preventDefault();
         liveCall(entry.id).card.scrollIntoView({behavior: "smooth", block: "center"});
       }})),
    entry.status);
  return entry;
}

function renderQueue() {
  const entries = [...queue.values()].sort((x, y) => x.since - y.since);  // longest first
  QUEUE.replaceChildren(...entries.map((entry) => entry.item));
  const count = entries.length;
  queuePanel.hidden = count === 0;
  queueAlert.hidden = count === 0;
  document.getElementById("queue-count").textContent = "(" + count + ")";
  queueAlert.textContent = (count === 1 ? "1 caller" : count + " callers") +
    " waiting for a person";
  document.title = count ? "(" + count + ") " + TITLE : TITLE;
  for (const call of calls.values()) if (!call.ended && queue.has(call.id)) showControls(call);
  if (entries.some((entry) => !chimed.has(entry.id)) && chimeTimer === null) {
    chimeTimer = setTimeout(chimeForNewCalls, CHIME_DELAY_MS);
  }
}

function chimeForNewCalls() {
  chimeTimer = null;
  const fresh = [...queue.keys()].filter((id) => !chimed.has(id));
  if (!fresh.length) return;
  for (const id of fresh) chimed.add(id);
  alertTone();
}

// ---- sound: the alert tone, and the one AudioContext the page plays and records with

function audioContext() {
  if (audioCtx === null) {
    audioCtx = new AudioContext({latencyHint: "interactive"});
    audioCtx.addEventListener("statechange", () => {
      if (audioCtx.state === "running") soundOn.hidden = true;
    });
  }
  // Browsers start a page's sound only after a click in it: this one, or a later one.
  if (audioCtx.state === "suspended") audioCtx.resume().catch(() => {});
  return audioCtx;
}

async function callAudioContext() {
  const ctx = audioContext();
  if (worklets === null) {
    worklets = ctx.audioWorklet
      ? Promise.all(["/console-audio.js", "/kiosk-worklet.js"].map(
          (url) => ctx.audioWorklet.addModule(url)))
      : Promise.reject(new Error("the console must be opened over https (or on this computer)"));
    worklets.catch(() => { worklets = null; });  // tried again next time
  }
  await worklets;
  return ctx;
}

// Two short rising notes, made here: no sound file.
function alertTone() {
  const ctx = audioContext();
  const start = ctx.currentTime + 0.02;
  for (const [hz, at] of [[880, 0], [1175, 0.18]]) {
    const note = ctx.createOscillator();
    const gain = ctx.createGain();
    note.frequency.value = hz;
    gain.gain.setValueAtTime(0.0001, start + at);
    gain.gain.exponentialRampToValueAtTime(0.3, start + at + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + at + 0.16);
    note.connect(gain).connect(ctx.destination);
    note.start(start + at);
    note.stop(start + at + 0.17);
  }
  queueAlert.dataset.tones = String(Number(queueAlert.dataset.tones || 0) + 1);
  setTimeout(() => { soundOn.hidden = ctx.state === "running"; }, 500);
}

soundOn.addEventListener("click", () => { audioContext(); alertTone(); });
document.addEventListener("pointerdown", () => {
  if (audioCtx !== null && audioCtx.state === "suspended") audioCtx.resume().catch(() => {});
});

// ---- listening in

function toggleListening(id) {
  if (link !== null && link.id === id) {
    stopListening();
    tell(id, "");
  } else {
    listen(id);
  }
}

// Hear the call `id` (and stop hearing any other); resolves to the link once its audio
// websocket is open, or to null.
async function listen(id) {
  if (link !== null && link.id === id) return link;
  stopListening();
  const mine = {id, ws: null, player: null, mic: null, micMs: 0,
                heard: {callerMs: 0, callerVoiceMs: 0, assistantMs: 0}};
  link = mine;
  refreshControls();
  tell(id, "Connecting to the call's audio…");
  try {
    const ctx = await callAudioContext();
    if (link !== mine) return null;  // stopped meanwhile
    mine.player = new AudioWorkletNode(ctx, "call-mix", {numberOfInputs: 0, numberOfOutputs: 1,
                                                         outputChannelCount: [1]});
    mine.player.connect(ctx.destination);
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    mine.ws = new WebSocket(scheme + location.host + callPath(id, "audio"));
    mine.ws.binaryType = "arraybuffer";
    mine.ws.addEventListener("message", (message) => onCallAudio(mine, message.data));
    await new Promise((resolve, reject) => {
      mine.ws.addEventListener("open", resolve);
      mine.ws.addEventListener("close", () => reject(new Error("the server refused it")));
    });
  } catch (e) {
    if (link === mine) {
      stopListening();
      tell(id, "Cannot listen in: " + e.message);
    }
    return null;
  }
  mine.ws.addEventListener("close", () => {
    if (link !== mine) return;
    stopListening();
    const call = calls.get(id);
    if (call && !call.ended) tell(id, "The call's audio was cut off. Listen in again.");
  });
  if (link !== mine) return null;
  tell(id, "");
  return mine;
}

function onCallAudio(mine, data) {
  if (link !== mine) return;
  if (typeof data === "string") {
    let message;
    try { message = JSON.parse(data); } catch (e) { return; }
    if (message.type === "error") {
      // A frame sent just before the microphone stopped (handing back) is refused late: no news.
      if (mine.mic === null && message.code === "not_holding") return;
      stopMicrophone();
      tell(mine.id, "The caller cannot hear you: " + message.message);
    }
    return;
  }
  if (data.byteLength < 1) return;
  countHeard(mine, data);
  mine.player.port.postMessage(data, [data]);
}

// Counts what came of each side (ms of audio; of the caller's, also the ms louder than
// silence): the card's bar shows them as data-caller-ms, data-caller-voice-ms and
// data-assistant-ms.
function countHeard(mine, data) {
  const view = new DataView(data);
  const kind = view.getUint8(0);
  const count = (data.byteLength - 1) >> 1;
  const ms = count / 16;  // 16 kHz
  if (kind === ASSISTANT_FRAME) mine.heard.assistantMs += ms;
  if (kind === CALLER_FRAME) {
    let energy = 0;
    for (let i = 0; i < count; i++) energy += (view.getInt16(1 + 2 * i, true) / 32768) ** 2;
    mine.heard.callerMs += ms;
    if (count && Math.sqrt(energy / count) > VOICE_RMS) mine.heard.callerVoiceMs += ms;
  }
  const call = calls.get(mine.id);
  if (call) {
    for (const [name, value] of Object.entries(mine.heard)) {
      call.bar.dataset[name] = String(Math.round(value));
    }
  }
}

function stopListening() {
  if (link === null) return;
  stopMicrophone();
  const old = link;
  link = null;
  if (old.player !== null) old.player.disconnect();
  if (old.ws !== null && old.ws.readyState <= WebSocket.OPEN) old.ws.close(1000);
  refreshControls();
}

// ---- taking the call, the microphone, handing back, ending

async function take(id) {
  const wasListening = link !== null && link.id === id;
  tell(id, "Taking the call…");
  if (await listen(id) === null) return;  // hear the caller before speaking to them
  let result;
  try {
    result = await api("POST", callPath(id, "take"), {});
  } catch (e) {
    if (!wasListening && link !== null && link.id === id) stopListening();
    const holder = e.detail && e.detail.holder;
    tell(id, holder ? holder + " has this call." : "Could not take the call: " + e.message);
    return;
  }
  me = result.holder;
  const call = liveCall(id);
  call.hold = {state: "person", name: me, reason: call.hold.reason, since: serverNow()};
  queueRemove(id);
  showHold(call);
  tell(id, "");
  await startMicrophone(id);
}

async function startMicrophone(id) {
  const mine = link;
  if (mine === null || mine.id !== id || mine.mic !== null) return;
  const starting = {stream: null};
  mine.mic = starting;
  refreshControls();
  try {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new DOMException("the console must be opened over https", "SecurityError");
    }
    const ctx = await callAudioContext();
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true,
              channelCount: 1},
    });
    if (link !== mine || mine.mic !== starting) {  // handed back or stopped meanwhile
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "pcm16-downsampler", {
      numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1, channelCountMode: "explicit"});
    node.port.onmessage = (message) => sendMicrophone(mine, message.data);
    source.connect(node);
    mine.mic = {stream, source, node};
    for (const track of stream.getAudioTracks()) {
      track.onended = () => {
        stopMicrophone();
        tell(id, "The microphone was disconnected: the caller cannot hear you.");
      };
    }
  } catch (e) {
    if (link === mine && mine.mic === starting) mine.mic = null;
    const refused = e.name === "NotAllowedError" || e.name === "PermissionDeniedError";
    tell(id, refused ? "The browser does not let this page use the microphone: allow it, " +
                       "then take the call again."
                     : "The microphone could not be started (" + e.message + ").");
  }
  refreshControls();
}

// A 20 ms frame of the microphone (PCM16, 16 kHz) from the worklet, to the caller.
function sendMicrophone(mine, buffer) {
  if (link !== mine || mine.ws.readyState !== WebSocket.OPEN) return;
  if (mine.ws.bufferedAmount > MAX_BUFFERED_BYTES) return;  // the network is stuck: drop it
  mine.ws.send(buffer);
  mine.micMs += MIC_FRAME_MS;
  const call = calls.get(mine.id);
  if (call) call.bar.dataset.micMs = String(mine.micMs);
}

function stopMicrophone() {
  if (link === null || link.mic === null) return;
  const mic = link.mic;
  link.mic = null;
  if (mic.stream !== null) {
    for (const track of mic.stream.getTracks()) {
      track.onended = null;
      track.stop();
    }
    mic.source.disconnect();
    mic.node.port.onmessage = null;
  }
  refreshControls();
}

async function handBack(id) {
  tell(id, "Handing the call back…");
  if (link !== null && link.id === id) stopMicrophone();  // done speaking: nothing goes after
  try {
    await api("POST", callPath(id, "handback"), {});
  } catch (e) {
    tell(id, "Could not hand the call back: " + e.message);
    return;
  }
  const call = liveCall(id);
  call.hold = {state: "assistant", name: me, reason: "", since: serverNow()};
  showHold(call);
  tell(id, "Handed back to the assistant.");
}

// Ends the call at the second click (within END_CONFIRM_MS): a slip does not end a call.
async function endLiveCall(id, button) {
  if (!button.dataset.confirm) {
    button.dataset.confirm = "yes";
    button.textContent = "Really end the call?";
    setTimeout(() => {
      delete button.dataset.confirm;
      button.textContent = "End call";
    }, END_CONFIRM_MS);
    return;
  }
  delete button.dataset.confirm;
  button.textContent = "End call";
  tell(id, "Ending the call…");
  try {
    await api("POST", callPath(id, "end"), {});
  } catch (e) {
    tell(id, "Could not end the call: " + e.message);
  }
}

// ------------------------------------------------------------------ history

const filters = document.getElementById("filters");
const callRows = document.querySelector("#call-list tbody");
const detail = document.getElementById("detail");

function dayStart(value, plusDays) {
  const [y, m, d] = value.split("-").map(Number);
  return Math.floor(new Date(y, m - 1, d + plusDays).getTime() / 1000);
}

function filterParams() {
  const form = new FormData(filters);
  const params = new URLSearchParams();
  if (form.get("since")) params.set("since", dayStart(form.get("since"), 0));
  if (form.get("until")) params.set("until", dayStart(form.get("until"), 1));
  for (const name of ["channel", "handoff", "rule", "q"]) {
    const value = String(form.get(name) || "").trim();
    if (value) params.set(name, value);
  }
  return params;
}

function withFormat(path, params, format) {
  const all = new URLSearchParams(params);
  if (format) all.set("format", format);
  const query = all.toString();
  return query ? path + "?" + query : path;
}

async function loadCalls() {
  const params = filterParams();
  document.getElementById("export-json").href = withFormat("/api/calls", params);
  document.getElementById("export-csv").href = withFormat("/api/calls", params, "csv");
  const count = document.getElementById("list-count");
  count.textContent = "Loading…";
  let data;
  try {
    data = await api("GET", withFormat("/api/calls", params));
  } catch (e) {
    count.textContent = "Could not load the calls: " + e.message;
    return;
  }
  count.textContent = data.calls.length + (data.calls.length === 1 ? " call" : " calls");
  callRows.replaceChildren(...data.calls.map((call) => {
    const length = call.ended_at ? duration(call.ended_at - call.started_at) : "live";
    return el("tr", {"data-call-id": call.call_id, tabindex: 0,
                     onclick: () => openCall(call.call_id),
                     onkeydown: (e) => { if (e.key === "Enter") openCall(call.call_id); }},
      el("td", {text: dateTime(call.started_at)}),
      el("td", {text: call.channel}),
      el("td", {text: call.caller_id || "—"}),
      el("td", {class: "num", text: length}),
      el("td", {text: call.live ? "live" : (call.end_reason || "")}));
  }));
  if (!data.calls.length) {
    callRows.append(el("tr", {}, el("td", {colspan: 5, class: "empty",
                                           text: "No calls match."})));
  }
}

filters.addEventListener("submit", (e) => { e.preventDefault(); loadCalls(); });

async function openCall(id) {
  for (const row of callRows.children) {
    row.setAttribute("aria-selected", String(row.dataset.callId === id));
  }
  detail.replaceChildren(el("p", {class: "empty", text: "Loading…"}));
  let call;
  try {
    call = await api("GET", "/api/calls/" + encodeURIComponent(id));
  } catch (e) {
    detail.replaceChildren(el("p", {class: "notice", text: "Could not open the call: " +
                                                           e.message}));
    return;
  }
  const base = "/api/calls/" + encodeURIComponent(id);
  const verdicts = new Map();  // turn → the latest helpful verdict
  for (const f of [...call.feedback].sort((a, b) => a.at - b.at)) verdicts.set(f.turn, f.helpful);
  const flags = new Set();
  for (const turn of call.turns) {
    if (turn.handoff) flags.add("HANDOFF");
    for (const rule of turn.rules) flags.add("GUARDRAIL: " + rule);
    if (turn.barge_in) flags.add("BARGE-IN");
  }
  detail.replaceChildren(...[
    el("div", {class: "card-head"},
      el("span", {class: "caller", text: call.caller_id || "Caller"}),
      el("span", {class: "sub", text: call.channel + " · " + call.call_id}),
      el("span", {class: call.live ? "state" : "state over", text: call.live ? "live" :
        "ended · " + duration((call.ended_at || call.started_at) - call.started_at) +
        (call.end_reason ? " · " + call.end_reason : "")})),
    el("p", {class: "sub", text: "Started " + dateTime(call.started_at)}),
    el("div", {class: "flags"}, [...flags].map((f) => badge(
      f.startsWith("GUARD") ? "guardrail" : f === "HANDOFF" ? "handoff" : "barge", f))),
    call.recording
      ? el("audio", {controls: true, preload: "metadata", src: base + "/recording"})
      : el("p", {class: "empty", text: "No recording for this call."}),
    el("div", {class: "exports"}, "Export this call:",
      el("a", {href: base, download: "call-" + id + ".json", text: "JSON"}),
      el("a", {href: base + "?format=csv", download: "call-" + id + ".csv", text: "CSV"})),
    el("ol", {class: "turns history-turns"}, call.turns.map((turn) => historyTurn(call, turn,
                                                                                verdicts))),
    call.turns.length ? null : el("p", {class: "empty", text: "No turns in this call."}),
  ].filter(Boolean));
}

function historyTurn(call, turn, verdicts) {
  const yes = el("button", {type: "button", class: "yes", text: "Helpful"});
  const no = el("button", {type: "button", class: "no", text: "Not helpful"});
  const show = (helpful) => {
    yes.setAttribute("aria-pressed", String(helpful === true));
    no.setAttribute("aria-pressed", String(helpful === false));
  };
  show(verdicts.get(turn.turn));
  const mark = async (helpful) => {
    try {
      await api("POST", "/api/feedback", {call_id: call.call_id, turn: turn.turn, helpful});
      show(helpful);
    } catch (e) {
      no.parentElement.title = "Could not save: " + e.message;
    }
  };
  yes.addEventListener("click", () => mark(true));
  no.addEventListener("click", () => mark(false));
  const person = turn.backend === "person";  // words to or from a person holding the call
  const who = person ? "Person" : turn.backend === "supervisor" ? "Supervisor" : "Assistant";
  return el("li", {class: person ? "turn person" : "turn", "data-turn": turn.turn},
    turn.question ? el("div", {class: "line"}, el("span", {class: "who", text: "Caller"}),
                       el("span", {class: "question", text: turn.question})) : null,
    person && !turn.reply ? null : el("div", {class: "line"},
      el("span", {class: "who", text: who}),
      el("span", {class: "reply", text: turn.reply})),
    el("div", {class: "meta"}, el("span", {text: clock(turn.at)}), ...turnMeta(turn),
       el("span", {class: "feedback"}, yes, no)));
}

// ------------------------------------------------------------------ gaps

const SVG = "http://www.w3.org/2000/svg";
const SERIES = [["answered", "#2e9b57"], ["handed_off", "#e39b1b"], ["unhelpful", "#c8372d"]];

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function loadGaps() {
  const days = Number(document.getElementById("gap-days").value);
  const rows = document.querySelector("#gap-table tbody");
  let data;
  try {
    data = await api("GET", "/api/report/gaps?days=" + days);
  } catch (e) {
    rows.replaceChildren(el("tr", {}, el("td", {colspan: 5, class: "notice",
                                                text: "Could not load the report: " + e.message})));
    return;
  }
  rows.replaceChildren(...data.questions.map((q) => el("tr", {},
    el("td", {text: q.question}),
    el("td", {class: "num", text: q.count}),
    el("td", {class: "num" + (q.handed_off ? " hot-handoff" : ""), text: q.handed_off}),
    el("td", {class: "num" + (q.unhelpful ? " hot-unhelpful" : ""), text: q.unhelpful}),
    el("td", {text: dateTime(q.last_at)}))));
  if (!data.questions.length) {
    rows.append(el("tr", {}, el("td", {colspan: 5, class: "empty",
                                       text: "Nothing handed off or unhelpful. Well done."})));
  }
  drawDaily(data.daily, data.days);
}

// Grouped bars per UTC day (the store counts per UTC day), every day of the window shown.
function drawDaily(daily, days) {
  const chart = document.getElementById("daily-chart");
  const byDay = new Map(daily.map((d) => [d.day, d]));
  const today = new Date();
  const all = [];
  for (let i = days - 1; i >= 0; i--) {
    const day = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(),
                                  today.getUTCDate() - i)).toISOString().slice(0, 10);
    all.push(byDay.get(day) || {day, answered: 0, handed_off: 0, unhelpful: 0});
  }
  const width = 960, height = 240, left = 40, bottom = 28, top = 10;
  const highest = Math.max(1, ...all.flatMap((d) => SERIES.map(([k]) => d[k])));
  const magnitude = Math.pow(10, Math.floor(Math.log10(highest)));
  let yMax = Math.ceil(highest / magnitude) * magnitude;
  if (yMax % 2) yMax += magnitude;  // counts are whole: keep the middle line on a whole number
  const slot = (width - left) / all.length;
  const bar = Math.max(1, (slot * 0.8) / SERIES.length);
  const y = (v) => top + (height - top - bottom) * (1 - v / yMax);
  chart.setAttribute("viewBox", "0 0 " + width + " " + height);
  const nodes = [];
  for (const tick of [0, yMax / 2, yMax]) {  // whole numbers, see yMax
    nodes.push(svg("line", {x1: left, x2: width, y1: y(tick), y2: y(tick), stroke: "#d7dbe3"}));
    nodes.push(svg("text", {x: left - 6, y: y(tick) + 4, "text-anchor": "end"},
                   String(tick)));
  }
  const labelEvery = Math.ceil(all.length / 10);
  all.forEach((d, i) => {
    const x0 = left + i * slot + slot * 0.1;
    SERIES.forEach(([key, colour], j) => {
      const value = d[key];
      if (!value) return;
      const rect = svg("rect", {x: x0 + j * bar, y: y(value), width: bar - 1,
                                height: y(0) - y(value), fill: colour, class: "bar " + key});
      rect.append(svg("title", {}, d.day + ": " + value + " " + key.replace("_", " ")));
      nodes.push(rect);
    });
    if (i % labelEvery === 0 || i === all.length - 1) {
      nodes.push(svg("text", {x: left + (i + 0.5) * slot, y: height - 8, "text-anchor": "middle"},
                     d.day.slice(5)));
    }
  });
  chart.replaceChildren(...nodes);
}

document.getElementById("gap-days").addEventListener("change", loadGaps);

// ------------------------------------------------------------------ start

showTab();
updateCounts();
connect();
