// The kiosk page: a caller on the caller protocol (docs/protocol.md) at ws://<this host>/call.
//
//   microphone → AudioWorklet (16 kHz PCM16, 20 ms frames) → websocket → the server
//   the server → JSON events (transcripts, reply text, clear, …) → the page
//              → binary reply audio (PCM16, 16 kHz) → KioskPlayer (kiosk-player.js) → speakers
//
// A call handed off to a person (protocol version 2) waits on hold: `hold` events say who the
// caller is with (waiting, a person by name, the assistant again, or nobody came), and the
// binary audio then is not a reply's: hold audio while waiting, the person's voice once one
// takes the call. It plays all the same, counted apart from the replies (HOLD_TURN, PERSON).
//
// Hands-free sends the microphone all the time; the server decides where questions end.
// Push-to-talk sends it only while the big button (or the space bar) is held, then 800 ms of
// silence at once so the server's 700 ms silence window ends the turn.
//
// Caller text reaches the page only through textContent, never as HTML.
"use strict";

(() => {
  const RATE = 16000; // the caller format, both ways: PCM16 mono at 16 kHz
  const FRAME_MS = 20;
  const FRAME_BYTES = (RATE / 1000) * FRAME_MS * 2; // 640
  const RELEASE_SILENCE_MS = 800; // over the server's 700 ms turns.silence_ms
  const PLAY_LEAD_S = 0.05; // start a reply this far ahead, so its first frame is whole
  const MAX_BUFFERED_BYTES = 256 * 1024; // a socket this far behind drops microphone frames
  const HOLD_TURN = 0; // hold audio plays as this turn; a `clear` of turn 0 drops it
  const PERSON = "person"; // the voice of the person holding the call plays as this "turn"
  const BACK_NOTE_MS = 4000; // how long "You are back with the assistant" shows
  const NO_FEEDBACK = new Set(["supervisor", "hold", "handback"]); // words nobody rates

  const $ = (id) => document.getElementById(id);
  const main = $("kiosk");

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    }
    node.append(...children);
    return node;
  }

  // ------------------------------------------------------------ the page's state

  const app = {
    state: "idle",
    mode: initialMode(),
    started: false,
    ctx: null,
    player: null,
    worklet: null, // the promise of the worklet module
    mic: null, // {stream, source, node}
    micState: "off", // off | starting | on | refused | missing | unavailable
    ws: null,
    callId: null,
    feedbackToken: null, // sent with feedback on this call's turns
    call: 0, // counts calls on this page, to tell their turns apart
    opened: false,
    endReason: null,
    fatal: null,
    held: false,
    hold: null, // {state, name, since}: who the caller is with, once the call was handed off
    bannerTimer: null, // the waiting clock's interval, or the timeout hiding the banner
    hearing: false, // the server heard speech start and not yet stop
    thinkingFrom: null, // waiting for the reply of this turn (or a later one)
    replyTurn: null, // the turn whose reply is being made or played
    mutedTurn: null, // a reply stopped here: its late audio is dropped
    lastTurn: 0,
    pendingText: null,
    capturedMs: 0,
    sentMs: 0,
    history: ["idle"],
    clears: [],
    entries: new Map(), // `${call}:${turn}` → turn element
  };

  function initialMode() {
    const asked = new URLSearchParams(location.search).get("mode");
    if (asked === "push-to-talk" || asked === "ptt") return "push-to-talk";
    if (asked === "hands-free") return "hands-free";
    try {
      const saved = localStorage.getItem("voicedesk.mode");
      return saved === "push-to-talk" ? "push-to-talk" : "hands-free";
    } catch {
      return "hands-free";
    }
  }

  function connectedNow() {
    return app.ws !== null && app.ws.readyState === WebSocket.OPEN && app.callId !== null;
  }

  /** The call waits for a person, or one holds it: the assistant does not answer. */
  function onHold() {
    return app.hold !== null && (app.hold.state === "waiting" || app.hold.state === "person");
  }

  function refresh() {
    let state;
    if (!app.started) state = "idle";
    else if (app.ws === null) state = "offline";
    else if (!connectedNow()) state = "connecting";
    else if (app.replyTurn !== null) state = "speaking";
    else if (onHold()) state = app.hold.state; // "waiting" | "person": hold audio or a voice
    else if (app.player && app.player.playing) state = "speaking";
    else if (app.thinkingFrom !== null) state = "thinking";
    else state = "listening";
    if (state !== app.state) {
      app.state = state;
      app.history.push(state);
      main.dataset.state = state;
    }
    main.dataset.mode = app.mode;
    main.dataset.mic = app.micState;
    const ptt = app.mode === "push-to-talk";
    const live = ["listening", "thinking", "speaking", "waiting", "person"].includes(state);
    $("start").hidden = app.started;
    $("talk").hidden = !ptt || !app.started;
    $("talk").disabled = !live || app.micState !== "on";
    $("talk").setAttribute("aria-pressed", String(app.held));
    setText($("talk"), app.held ? "Listening… release when done" : "Hold to talk");
    $("stop-reply").hidden = state !== "speaking";
    $("person").hidden = !live || (app.hold !== null && app.hold.state !== "assistant");
    $("end").hidden = !app.started;
    for (const button of document.querySelectorAll(".modes button")) {
      button.setAttribute("aria-checked", String(button.dataset.mode === app.mode));
    }
    const [status, hint] = words(state, ptt);
    setText($("status"), status);
    setText($("hint"), hint);
  }

  /** Change text only when it changes: screen readers announce every change of a status. */
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function words(state, ptt) {
    const noMic = app.micState !== "on" && app.micState !== "starting";
    switch (state) {
      case "idle":
        return ["Welcome", "Press Start, then ask your question out loud — or type it below."];
      case "connecting":
        return ["Connecting…", "One moment."];
      case "offline":
        return ["Not connected", "The assistant cannot be reached right now."];
      case "thinking":
        return ["Thinking…", "Looking up the answer."];
      case "speaking":
        return ptt
          ? ["Speaking…", "Hold the button to interrupt."]
          : ["Speaking…", "Speak up or press Stop answer to interrupt."];
      case "waiting":
        return ["On hold", "Please stay here; the call goes on by itself."];
      case "person": {
        const who = app.hold.name || "they";
        if (noMic) return ["Talking to a person", "Type what you want to say below."];
        return ptt
          ? ["Talking to a person", "Hold the button (or the space bar) while you speak."]
          : ["Talking to a person", `Speak normally — ${who} can hear you.`];
      }
      default:
        if (noMic) return ["Ready", "Type your question below."];
        if (ptt) {
          return app.held
            ? ["Listening…", "Release the button when you are done."]
            : ["Ready", "Hold the button (or the space bar) while you speak."];
        }
        return app.hearing
          ? ["Listening…", "Go on — I am listening."]
          : ["Listening", "Ask your question out loud — or type it below."];
    }
  }

  /** Show a message; `action` ({label, run}) adds a button. `from` "server" marks an error
   * event's message, taken away when the next answer comes. */
  function notify(text, kind = "warn", action = null, from = "page") {
    $("notice").hidden = false;
    $("notice").dataset.kind = kind;
    $("notice").dataset.from = from;
    $("notice-text").textContent = text;
    const retry = $("retry");
    retry.hidden = action === null;
    if (action !== null) {
      retry.textContent = action.label;
      retry.onclick = action.run;
    }
  }

  function clearNotice() {
    $("notice").hidden = true;
  }

  // ------------------------------------------------------------ starting and the connection

  function start() {
    app.started = true;
    if (app.ctx === null) {
      // Made inside the click: browsers let a page play sound only after a user gesture.
      app.ctx = new AudioContext({latencyHint: "interactive"});
      app.player = new window.KioskPlayer(app.ctx, RATE, PLAY_LEAD_S);
      app.player.onidle = refresh;
      app.worklet = app.ctx.audioWorklet
        ? app.ctx.audioWorklet.addModule("kiosk-worklet.js")
        : Promise.reject(new DOMException("no AudioWorklet", "SecurityError"));
      app.worklet.catch(() => {}); // reported when the microphone starts
    }
    app.ctx.resume();
    connect();
  }

  function callUrl() {
    const url = new URL("call", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  function connect() {
    dropSocket();
    clearNotice();
    banner(null);
    const ws = new WebSocket(callUrl());
    ws.binaryType = "arraybuffer";
    app.ws = ws;
    app.opened = false;
    app.endReason = null;
    app.fatal = null;
    ws.onopen = () => {
      app.opened = true;
      const params = new URLSearchParams(location.search);
      const kioskId = params.get("kiosk");
      const startMessage = {
        type: "start",
        version: 2,
        audio: {encoding: "pcm16", sample_rate: RATE},
        metadata: kioskId ? {channel: "kiosk", kiosk: kioskId} : {channel: "kiosk"},
      };
      if (kioskId) startMessage.caller_id = kioskId;
      // A server with caller tokens (auth.caller_tokens) needs one: ?token=… in the address.
      if (params.get("token")) startMessage.token = params.get("token");
      ws.send(JSON.stringify(startMessage));
    };
    ws.onmessage = (message) => {
      if (ws !== app.ws) return;
      if (typeof message.data === "string") onEvent(JSON.parse(message.data));
      else onAudio(message.data);
    };
    ws.onclose = () => {
      if (ws === app.ws) onClosed();
    };
    refresh();
  }

  function dropSocket() {
    const ws = app.ws;
    app.ws = null;
    app.callId = null;
    app.hold = null;
    if (ws !== null && ws.readyState <= WebSocket.OPEN) ws.close(1000);
    resetTurn();
  }

  function resetTurn() {
    if (app.player) app.player.clear();
    app.held = false;
    app.hearing = false;
    app.thinkingFrom = null;
    app.replyTurn = null;
    app.mutedTurn = null;
  }

  function onClosed() {
    const reopen = {label: "Try again", run: () => connect()};
    let text;
    if (!app.opened) {
      text =
        "The assistant's server cannot be reached. Check that it is running and that this " +
        "screen is on its network, then try again.";
    } else if (app.fatal) {
      text = `The call ended: ${app.fatal}`;
    } else if (app.endReason === "server_shutdown") {
      text = "The assistant's server was restarted. Try again in a moment.";
    } else if (app.endReason === "missed_handoff") {
      text = "Nobody could take your call right now. Please try again later.";
    } else if (app.endReason === "ended_by_supervisor") {
      text = "A member of our team ended the call.";
    } else {
      text = "The connection to the assistant was lost.";
    }
    app.ws = null;
    app.callId = null;
    app.hold = null;
    resetTurn();
    banner(null); // who the caller was with no longer holds: the call is over
    notify(text, "error", reopen);
    refresh();
  }

  function send(message) {
    if (connectedNow()) app.ws.send(JSON.stringify(message));
  }

  function end() {
    if (connectedNow()) app.ws.send(JSON.stringify({type: "hangup"}));
    dropSocket();
    stopMicrophone();
    app.started = false;
    app.entries.clear();
    $("turns").replaceChildren();
    $("empty").hidden = false;
    banner(null);
    clearNotice();
    refresh();
  }

  // ------------------------------------------------------------ events from the server

  function onEvent(event) {
    switch (event.type) {
      case "ready":
        app.callId = event.call_id;
        app.feedbackToken = event.feedback_token;
        app.call += 1;
        app.lastTurn = 0;
        app.hold = null;
        startMicrophone();
        if (app.pendingText !== null) {
          ask(app.pendingText);
          app.pendingText = null;
        }
        break;
      case "speech.started":
        app.hearing = true;
        question(event.turn, "…", true);
        break;
      case "transcript.partial":
        question(event.turn, event.text, true);
        break;
      case "speech.stopped":
        app.hearing = false;
        if (!onHold()) app.thinkingFrom = event.turn; // on hold, nothing answers it
        break;
      case "transcript.final":
        if (event.ignored || !event.text.trim()) {
          dropEntry(event.turn);
          answered(event.turn);
        } else {
          question(event.turn, shown(event.text), false);
        }
        break;
      case "reply.text":
        if (app.replyTurn !== event.turn && $("notice").dataset.from === "server") clearNotice();
        answered(event.turn);
        app.replyTurn = event.turn;
        replyPiece(event.turn, event.text);
        break;
      case "clear": {
        const droppedMs = app.player.clear();
        const playedMs = app.player.playedMs(event.turn);
        app.clears.push({turn: event.turn, droppedMs, playedMs});
        break;
      }
      case "reply.end":
        replyEnd(event);
        if (app.replyTurn === event.turn) app.replyTurn = null;
        answered(event.turn);
        break;
      case "handoff":
        handoff();
        break;
      case "hold":
        hold(event);
        break;
      case "person.said":
        personSaid(event);
        break;
      case "error":
        if (event.fatal) app.fatal = event.message;
        else notify(event.message, "warn", null, "server");
        if (event.code === "asr_failed") app.thinkingFrom = null;
        break;
      case "end":
        app.endReason = event.reason;
        break;
    }
    refresh();
  }

  function onAudio(data) {
    if (app.replyTurn === null && onHold()) {
      // Not a reply: hold audio while waiting, the person's voice once one holds the call.
      app.player.play(app.hold.state === "person" ? PERSON : HOLD_TURN, data);
      refresh();
      return;
    }
    const turn = app.replyTurn !== null ? app.replyTurn : app.lastTurn;
    if (turn === app.mutedTurn) return; // stopped here; the server's stop is on its way
    answered(turn);
    app.player.play(turn, data);
    refresh();
  }

  /** Something came back for `turn`: no longer thinking, if that is the turn awaited. */
  function answered(turn) {
    if (app.thinkingFrom !== null && turn >= app.thinkingFrom) app.thinkingFrom = null;
  }

  function shown(text) {
    return /^\[keypad 0\]$/.test(text) ? "(asked for a person)" : text;
  }

  // ------------------------------------------------------------ the conversation

  function entry(turn) {
    const key = `${app.call}:${turn}`;
    let item = app.entries.get(key);
    if (item === undefined) {
      app.lastTurn = Math.max(app.lastTurn, turn);
      item = el(
        "li",
        {class: "turn", "data-turn": turn},
        el("div", {class: "q", hidden: ""}, el("span", {class: "who", text: "You"}),
           el("p", {class: "question"})),
        el("div", {class: "a", hidden: ""}, el("span", {class: "who", text: "Assistant"}),
           el("p", {class: "reply"})),
      );
      item.callId = app.callId;
      item.feedbackToken = app.feedbackToken;
      app.entries.set(key, item);
      $("turns").append(item);
      $("empty").hidden = true;
    }
    return item;
  }

  function dropEntry(turn) {
    const key = `${app.call}:${turn}`;
    const item = app.entries.get(key);
    if (item !== undefined && item.querySelector(".a").hidden) {
      item.remove();
      app.entries.delete(key);
    }
  }

  function question(turn, text, partial) {
    const item = entry(turn);
    item.querySelector(".q").hidden = false;
    const p = item.querySelector(".question");
    p.textContent = text;
    p.classList.toggle("partial", partial);
    scrollDown();
  }

  function replyPiece(turn, text) {
    const item = entry(turn);
    item.querySelector(".a").hidden = false;
    const p = item.querySelector(".reply");
    p.classList.add("streaming");
    p.textContent += text;
    scrollDown();
  }

  function replyEnd(event) {
    const item = entry(event.turn);
    const answer = item.querySelector(".a");
    answer.hidden = false;
    if (event.backend === "supervisor") answer.querySelector(".who").textContent = "Staff";
    const p = item.querySelector(".reply");
    p.classList.remove("streaming");
    if (event.interrupted && event.heard !== event.text && event.text.startsWith(event.heard)) {
      const cut = event.text.slice(event.heard.length); // said, not heard: struck through
      p.replaceChildren(event.heard, el("span", {class: "cut", text: cut}));
    } else {
      p.textContent = event.text;
    }
    if (event.interrupted) answer.append(el("p", {class: "stopped", text: "Answer stopped."}));
    if (event.sources && event.sources.length) {
      answer.append(
        el("p", {class: "sources"}, "Sources: ",
           ...event.sources.map((id, i) => [i ? ", " : "", el("code", {text: id})]).flat()),
      );
    }
    if (event.text && !NO_FEEDBACK.has(event.backend) && item.callId) {
      answer.append(feedbackButtons(item.callId, item.feedbackToken, event.turn));
    }
    if (event.handoff) handoff();
    scrollDown();
  }

  function feedbackButtons(callId, token, turn) {
    const status = el("span", {class: "sent", role: "status"});
    const box = el("div", {class: "feedback"}, "Was this helpful?");
    const choose = async (helpful, chosen) => {
      for (const b of buttons) b.disabled = true;
      status.textContent = "Sending…";
      try {
        const response = await fetch("api/feedback", {
          method: "POST",
          headers: {"Content-Type": "application/json"},
          body: JSON.stringify({call_id: callId, turn, helpful, token}),
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        chosen.setAttribute("aria-pressed", "true");
        box.dataset.sent = helpful ? "helpful" : "unhelpful";
        status.textContent = "Thank you — your feedback was sent.";
      } catch {
        for (const b of buttons) b.disabled = false;
        status.textContent = "Sorry, the feedback could not be sent.";
      }
    };
    const button = (kind, text) =>
      el("button", {type: "button", class: kind, "aria-pressed": "false", text});
    const yes = button("yes", "Helpful");
    const no = button("no", "Not helpful");
    yes.addEventListener("click", () => choose(true, yes));
    no.addEventListener("click", () => choose(false, no));
    const buttons = [yes, no];
    box.append(yes, no, status);
    return box;
  }

  /** What the person holding the call said (as transcribed), in the conversation under
   * their name. */
  function personSaid(event) {
    const item = entry(event.turn);
    item.classList.add("person");
    const answer = item.querySelector(".a");
    answer.hidden = false;
    answer.querySelector(".who").textContent = event.name || "Staff";
    item.querySelector(".reply").textContent = event.text;
    scrollDown();
  }

  function handoff() {
    if (onHold()) return; // the hold banner says more
    banner(
      "A member of our team will help you with this. Please stay here — you are being " +
        "passed to a person.",
      "handoff",
    );
  }

  /** A `hold` event: who the caller is with now, in the banner. */
  function hold(event) {
    const name = event.name || "";
    app.hold = {state: event.state, name, since: Date.now()};
    switch (event.state) {
      case "waiting":
        app.thinkingFrom = null; // what the caller says now is not answered
        banner("Please wait — a person will be with you shortly.", "waiting", app.hold.since);
        break;
      case "person":
        app.thinkingFrom = null;
        banner(`You are talking to ${name || "a member of our team"}.`, "person");
        break;
      case "assistant":
        banner("You are back with the assistant.", "assistant");
        app.bannerTimer = setTimeout(() => banner(null), BACK_NOTE_MS);
        break;
      case "missed":
        banner("Nobody could take your call right now.", "missed");
        break;
    }
  }

  /** Show `text` in the banner (null: hide it); with `waitingSince` (a Date.now()), the time
   * waited under it, counted each second. Text goes in through textContent only. */
  function banner(text, kind = "", waitingSince = null) {
    const box = $("handoff");
    clearTimeout(app.bannerTimer); // an interval's id too: they share one list of timers
    app.bannerTimer = null;
    box.hidden = text === null;
    box.dataset.kind = kind;
    if (text === null) {
      box.replaceChildren();
      return;
    }
    const said = el("span", {class: "said", text});
    if (waitingSince === null) {
      box.replaceChildren(said);
      return;
    }
    // Hidden from screen readers, which would read the banner out again every second.
    const waited = el("span", {class: "waited", "aria-hidden": "true"});
    const tick = () => {
      const s = Math.floor((Date.now() - waitingSince) / 1000);
      waited.textContent = `Waiting ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    };
    tick();
    app.bannerTimer = setInterval(tick, 1000);
    box.replaceChildren(said, waited);
  }

  function scrollDown() {
    const box = $("conversation");
    box.scrollTop = box.scrollHeight;
  }

  // ------------------------------------------------------------ the microphone

  async function startMicrophone() {
    if (app.micState === "on" || app.micState === "starting") return;
    app.micState = "starting";
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new DOMException("insecure context", "SecurityError");
      }
      await app.worklet;
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true,
                channelCount: 1},
      });
      const source = app.ctx.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(app.ctx, "pcm16-downsampler", {
        numberOfInputs: 1,
        numberOfOutputs: 0,
        channelCount: 1,
        channelCountMode: "explicit",
      });
      node.port.onmessage = (message) => onFrame(message.data);
      source.connect(node);
      app.mic = {stream, source, node};
      app.micState = "on";
      for (const track of stream.getAudioTracks()) track.onended = microphoneLost;
    } catch (err) {
      microphoneFailed(err);
    }
    refresh();
  }

  function microphoneFailed(err) {
    const name = (err && err.name) || "Error";
    const again = {
      label: "Try the microphone again",
      run: () => {
        clearNotice();
        startMicrophone();
      },
    };
    if (!window.isSecureContext || name === "SecurityError") {
      app.micState = "unavailable";
      notify(
        "The microphone only works when this page is opened over https (or as localhost on " +
          "this computer). You can still type your question below.",
      );
    } else if (name === "NotAllowedError" || name === "PermissionDeniedError") {
      app.micState = "refused";
      notify(
        "The microphone is not allowed for this page, so the assistant cannot hear you. You " +
          "can still type your question below, or allow the microphone in the browser and " +
          "try again.",
        "warn",
        again,
      );
    } else if (name === "NotFoundError" || name === "OverconstrainedError") {
      app.micState = "missing";
      notify("No microphone was found. You can still type your question below.", "warn", again);
    } else {
      app.micState = "unavailable";
      notify(
        "The microphone could not be started — it may be in use by another program. You can " +
          "still type your question below.",
        "warn",
        again,
      );
    }
  }

  function microphoneLost() {
    stopMicrophone();
    app.micState = "missing";
    notify("The microphone was disconnected. You can still type your question below.");
    refresh();
  }

  function stopMicrophone() {
    if (app.mic !== null) {
      for (const track of app.mic.stream.getTracks()) {
        track.onended = null;
        track.stop();
      }
      app.mic.source.disconnect();
      app.mic.node.port.onmessage = null;
      app.mic = null;
    }
    app.micState = "off";
    main.style.setProperty("--level", "0");
  }

  /** A 20 ms frame from the worklet: sent in hands-free mode, or while the button is held. */
  function onFrame(buffer) {
    app.capturedMs += FRAME_MS;
    showLevel(new Int16Array(buffer));
    if (!connectedNow() || (app.mode === "push-to-talk" && !app.held)) return;
    if (app.ws.bufferedAmount > MAX_BUFFERED_BYTES) return; // the network is stuck; drop it
    app.ws.send(buffer);
    app.sentMs += FRAME_MS;
  }

  function showLevel(samples) {
    let sum = 0;
    for (const s of samples) sum += s * s;
    const rms = Math.sqrt(sum / samples.length) / 32768;
    const level = app.mode === "push-to-talk" && !app.held ? 0 : Math.min(1, rms * 8);
    main.style.setProperty("--level", level.toFixed(2));
  }

  // ------------------------------------------------------------ what the visitor does

  function stopReply() {
    // Hold audio and the person's voice are no reply: nothing to stop.
    if (app.replyTurn === null && (onHold() || !app.player.playing)) return;
    app.mutedTurn = app.replyTurn;
    app.player.clear(); // silence now; the server confirms with clear and reply.end
    send({type: "stop"});
  }

  function press() {
    if (app.held || app.mode !== "push-to-talk" || !connectedNow() || app.micState !== "on") return;
    app.held = true;
    stopReply();
    refresh();
  }

  function release() {
    if (!app.held) return;
    app.held = false;
    if (connectedNow()) {
      // Silence at once, so the server's silence window closes the turn now, not later.
      const silence = new ArrayBuffer(FRAME_BYTES);
      for (let ms = 0; ms < RELEASE_SILENCE_MS; ms += FRAME_MS) app.ws.send(silence);
      app.sentMs += RELEASE_SILENCE_MS;
    }
    refresh();
  }

  function ask(text) {
    send({type: "text", text});
    if (!onHold()) app.thinkingFrom = app.lastTurn + 1; // the server numbers it next
    refresh();
  }

  function setMode(mode) {
    release();
    app.mode = mode;
    try {
      localStorage.setItem("voicedesk.mode", mode);
    } catch {
      // private windows may refuse storage; the mode just is not remembered
    }
    refresh();
  }

  $("start").addEventListener("click", start);
  $("end").addEventListener("click", end);
  $("stop-reply").addEventListener("click", stopReply);
  $("person").addEventListener("click", () => send({type: "dtmf", digit: "0"}));
  for (const button of document.querySelectorAll(".modes button")) {
    button.addEventListener("click", () => setMode(button.dataset.mode));
  }
  $("ask").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("question");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    if (connectedNow()) {
      ask(text);
    } else {
      app.pendingText = text; // asked once the call is ready
      if (!app.started || app.ws === null) start();
    }
  });

  const talk = $("talk");
  talk.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    talk.setPointerCapture(event.pointerId);
    press();
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    talk.addEventListener(type, release);
  }
  talk.addEventListener("contextmenu", (event) => event.preventDefault());
  const typing = (target) => target instanceof HTMLInputElement;
  window.addEventListener("keydown", (event) => {
    if (event.code !== "Space" || typing(event.target) || app.mode !== "push-to-talk") return;
    if (!app.started) return;
    event.preventDefault();
    if (!event.repeat) press();
  });
  window.addEventListener("keyup", (event) => {
    if (event.code !== "Space" || typing(event.target) || app.mode !== "push-to-talk") return;
    event.preventDefault();
    release();
  });
  window.addEventListener("blur", release);
  window.addEventListener("pagehide", () => {
    if (connectedNow()) app.ws.send(JSON.stringify({type: "hangup"}));
  });

  // Read-only status for tests and for whoever looks after the kiosk.
  window.kiosk = Object.freeze({
    get state() { return app.state; },
    get mode() { return app.mode; },
    get callId() { return app.callId; },
    get mic() { return app.micState; },
    get hold() { return app.hold === null ? null : {...app.hold}; },
    get playedMs() { return app.player ? app.player.playedMs() : 0; },
    playedMsOf(turn) { return app.player ? app.player.playedMs(turn) : 0; },
    get bufferedMs() { return app.player ? app.player.bufferedMs() : 0; },
    get playing() { return app.player ? app.player.playing : false; },
    outputLevel() { return app.player ? app.player.level() : 0; },
    get capturedMs() { return app.capturedMs; },
    get sentMs() { return app.sentMs; },
    get history() { return app.history.slice(); },
    get clears() { return app.clears.map((c) => ({...c})); },
  });

  refresh();
})();
