// MusicHal console: one WebSocket (frames ~20 Hz, controls), a canvas piano roll and memory strip.
// Times in frames are the server's monotonic seconds; the page extrapolates "now" from the last frame.
"use strict";
(function () {
  const AHEAD_S = 2.0; // seconds drawn ahead of the now-line (scheduled notes)
  const VOICE_COLOURS = { melody: "#ffa64d", bass: "#59d98e", comping: "#c48cff" };
  const $ = (id) => document.getElementById(id);
  const state = { ws: null, last: null, recvAt: 0, table: [], connected: false, connects: 0, frames: 0,
                  drawn: new Set(), retryMs: 250, nextId: 1, lo: 48, hi: 84 };
  window.musichal = state; // for tests and the curious

  function token() { return new URLSearchParams(location.search).get("token") || ""; }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws?token=${encodeURIComponent(token())}`);
    state.ws = ws;
    ws.onopen = () => { state.connected = true; state.connects += 1; state.retryMs = 250; setStatus(true); };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.type === "hello") { state.table = data.table; buildControls(); }
      else if (data.type === "frame") { state.last = data; state.recvAt = performance.now(); state.frames += 1; update(data); draw(); }
      else if (data.type === "result") { showResult(data); }
    };
    ws.onclose = () => {
      state.connected = false; setStatus(false);
      setTimeout(connect, state.retryMs); // the stack restarted or stopped: keep trying
      state.retryMs = Math.min(2000, state.retryMs * 2);
    };
  }

  function setStatus(on) {
    const el = $("status");
    el.textContent = on ? "connected" : "reconnecting…";
    el.className = "status " + (on ? "on" : "off");
  }

  function now() {
    if (!state.last) return 0;
    return state.last.t + Math.min(0.5, (performance.now() - state.recvAt) / 1000);
  }

  function send(name, value) {
    if (!state.ws || state.ws.readyState !== 1) { showResult({ status: 0, error: "not connected" }); return; }
    state.ws.send(JSON.stringify({ type: "control", name, value, id: state.nextId++ }));
  }

  function showResult(r) {
    const el = $("control-result");
    if (r.status === 200) {
      el.textContent = "applied: " + JSON.stringify(r.effective);
      el.className = "";
    } else {
      el.textContent = "refused: " + r.error;
      el.className = "bad";
    }
  }

  // ---------------------------------------------------------------- controls (from the control table)
  function buildControls() {
    const box = $("controls");
    box.innerHTML = "";
    for (const row of state.table) {
      if (row.name === "panic") continue; // the header's button
      const div = document.createElement("div");
      div.className = "control";
      div.title = row.help + (row.address ? `  (OSC ${row.address}` + (row.cc != null ? `, CC${row.cc}` : "") + (row.note != null ? `, note ${row.note}` : "") + ")" : "");
      const label = document.createElement("label");
      label.textContent = row.name;
      div.appendChild(label);
      if (row.kind === "choice") {
        for (const option of row.bounds) {
          const b = document.createElement("button");
          b.textContent = option; b.dataset.control = row.name; b.dataset.value = option;
          b.onclick = () => send(row.name, option);
          div.appendChild(b);
        }
      } else if (row.kind === "flag") {
        const b = document.createElement("button");
        b.dataset.control = row.name; b.dataset.flag = "1"; b.textContent = "–";
        b.onclick = () => send(row.name, b.classList.contains("active") ? 0 : 1);
        div.appendChild(b);
      } else if (row.kind === "command") {
        const b = document.createElement("button");
        b.textContent = row.name; b.dataset.control = row.name; b.dataset.value = "1";
        b.onclick = () => send(row.name, 1);
        div.appendChild(b);
      } else if (row.kind === "number") {
        const [lo, hi] = row.bounds;
        const input = document.createElement("input");
        input.type = "range"; input.min = lo; input.max = hi; input.step = (hi - lo) / 100;
        input.dataset.control = row.name;
        const out = document.createElement("span");
        out.className = "num"; out.dataset.output = row.name;
        input.oninput = () => { out.textContent = Number(input.value).toFixed(2); };
        input.onchange = () => send(row.name, Number(input.value));
        div.appendChild(input); div.appendChild(out);
      } else if (row.kind === "range") {
        const low = document.createElement("input"), high = document.createElement("input");
        for (const el of [low, high]) { el.type = "number"; el.min = 0; el.max = 127; el.dataset.control = row.name; }
        low.dataset.end = "0"; high.dataset.end = "1";
        const b = document.createElement("button");
        b.textContent = "set";
        b.onclick = () => send(row.name, [Number(low.value), Number(high.value)]);
        div.appendChild(low); div.appendChild(high); div.appendChild(b);
      }
      box.appendChild(div);
    }
    document.querySelectorAll("#panic").forEach((b) => { b.onclick = () => send("panic", 1); });
  }

  function controlValue(values, name) {
    if (name.startsWith("voice/")) {
      const [, voice, setting] = name.split("/");
      return ((values.voices || {})[voice] || {})[setting];
    }
    return values[name];
  }

  function updateControls(values) {
    for (const row of state.table) {
      const value = controlValue(values, row.name);
      if (value === undefined) continue;
      document.querySelectorAll(`[data-control="${row.name}"]`).forEach((el) => {
        if (row.kind === "choice") el.classList.toggle("active", el.dataset.value === value);
        else if (row.kind === "flag") { el.classList.toggle("active", !!value); el.textContent = value ? "on" : "off"; }
        else if (row.kind === "number" && document.activeElement !== el) {
          el.value = value;
          const out = document.querySelector(`[data-output="${row.name}"]`);
          if (out) out.textContent = Number(value).toFixed(2);
        } else if (row.kind === "range" && document.activeElement !== el && Array.isArray(value)) {
          el.value = value[Number(el.dataset.end)];
        }
      });
    }
  }

  // ---------------------------------------------------------------- panels
  const fmt = (v, digits = 0) => (v === null || v === undefined ? "–" : typeof v === "number" ? v.toFixed(digits) : String(v));

  function update(f) {
    const p = f.player || {}, s = p.settings || {}, c = f.controls || {}, h = f.health || {};
    $("source").textContent = f.source === "replay" ? "REPLAY" : "";
    $("summary").textContent = c.summary || "";
    $("mode-value").textContent = s.mode || c.mode || "–";
    $("density-value").textContent = fmt(s.density ?? c.density, 2);
    $("continuity-value").textContent = fmt(s.continuity ?? c.continuity, 2);
    $("tempo-value").textContent = "×" + fmt(s.tempo ?? c.tempo, 2);
    $("bpm-value").textContent = p.bpm ? `${p.bpm.toFixed(1)} bpm` : "no beat yet";
    $("state-value").textContent = p.n_states ? `${p.state} of ${p.n_states}, ${p.last_move}, transpose ${p.transpose >= 0 ? "+" : ""}${p.transpose}` : "–";
    const voices = s.voices || {};
    $("voices-value").textContent = Object.entries(voices).map(([v, x]) => `${v} ${x.on ? "on" : "off"} ${x.range[0]}–${x.range[1]}`).join(", ") || "–";
    $("learning-value").textContent = (p.learning ?? c.learning) ? "learning" : "frozen / off";
    const heard = f.heard || [];
    const gated = heard.filter((e) => e.gated === true).length, kept = heard.filter((e) => e.gated === false).length;
    const g = p.gate || {};
    $("gate-value").textContent = `${g.enabled ? "on" : "off"}; last ${f.roll_seconds}s: ${kept} heard, ${gated} echo`;
    const rows = [
      ["events", h.events], ["percepts", h.percepts], ["learned", h.learned], ["states", h.states], ["notes", h.notes],
      ["encoder", h.encoder], ["latency p50 / p99", h.latency_p50_ms == null ? "–" : `${fmt(h.latency_p50_ms, 1)} / ${fmt(h.latency_p99_ms, 1)} ms`],
      ["reaction p95", h.reaction_p95_ms == null ? "–" : `${fmt(h.reaction_p95_ms, 1)} ms`], ["drops", h.drops],
      ["late MIDI", h.late_midi == null ? "–" : `${h.late_midi} of ${h.clocked_notes}`], ["gated", h.gated],
    ];
    if (h.encoder_errors) rows.push(["encoder errors", h.encoder_errors]);
    if ((h.unavailable || []).length) rows.push(["no answer", h.unavailable.join(", ")]);
    $("health").innerHTML = rows.map(([k, v]) => {
      const bad = (k === "encoder" && v === "LOST") || (k === "drops" && v > 0) || k === "no answer" || k === "encoder errors";
      return `<tr><th>${k}</th><td class="${bad ? "bad" : ""}" data-health="${k}">${fmt(v)}</td></tr>`;
    }).join("");
    const refusals = f.refusals || [];
    $("refusals").innerHTML = refusals.length
      ? refusals.slice().reverse().map((r) => `<li data-control="${escape(r.control)}">${escape(r.source)} ${escape(r.control)} ${escape(JSON.stringify(r.value))}: ${escape(r.reason)}</li>`).join("")
      : '<li class="none">none</li>';
    updateControls(c);
  }

  function escape(text) {
    return String(text).replace(/[&<>"]/g, (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[ch]));
  }

  // ---------------------------------------------------------------- drawing
  function draw() {
    const f = state.last;
    if (!f) return;
    const t = now();
    drawRoll(f, t);
    drawMemory(f, t);
    const p = f.player || {};
    if (p.beat_period_s && p.next_beat_s != null) {
      const beatAt = p.t + p.next_beat_s;
      const phase = (((t - beatAt) % p.beat_period_s) + p.beat_period_s) % p.beat_period_s;
      $("beat-dot").classList.toggle("beat", phase < 0.1);
    } else {
      $("beat-dot").classList.remove("beat"); // no tempo (yet, or a new stack)
    }
  }

  function drawRoll(f, t) {
    const canvas = $("roll"), ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, past = f.roll_seconds;
    const nowX = W * past / (past + AHEAD_S), pxs = nowX / past;
    const x = (time) => nowX + (time - t) * pxs;
    let lo = 127, hi = 0;
    for (const n of f.played) { lo = Math.min(lo, n.pitch); hi = Math.max(hi, n.pitch); }
    for (const e of f.heard) for (const p of e.pitches || []) { lo = Math.min(lo, p); hi = Math.max(hi, p); }
    if (lo > hi) { lo = 48; hi = 84; }
    lo = Math.max(0, lo - 3); hi = Math.min(127, hi + 3);
    if (hi - lo < 36) { const mid = (lo + hi) / 2; lo = Math.max(0, Math.round(mid - 18)); hi = lo + 36; }
    state.lo += (lo - state.lo) * 0.2; state.hi += (hi - state.hi) * 0.2; // no jumps in the scale
    const rowH = (H - 14) / (state.hi - state.lo + 1);
    const y = (pitch) => (H - 14) - (pitch - state.lo + 1) * rowH;
    ctx.clearRect(0, 0, W, H);
    ctx.font = "10px sans-serif";
    for (let p = Math.ceil(state.lo); p <= state.hi; p++) { // octave lines
      if (p % 12 === 0) {
        ctx.fillStyle = "#1e232b"; ctx.fillRect(0, y(p) + rowH - 1, W, 1);
        ctx.fillStyle = "#56606e"; ctx.fillText("C" + (p / 12 - 1), 3, y(p) + rowH - 2);
      }
    }
    for (let s = Math.ceil(t - past); s <= t + AHEAD_S; s++) { // seconds
      ctx.fillStyle = "#191d24"; ctx.fillRect(x(s), 0, 1, H - 14);
    }
    for (const e of f.heard) { // what MusicHal heard
      const ex = x(e.t), echo = e.gated === true;
      if (!(e.pitches || []).length) {
        ctx.fillStyle = echo ? "#ff6b6b" : "#7fb2ff"; ctx.fillRect(ex, H - 12, 2, 10); continue;
      }
      for (const p of e.pitches) {
        if (echo) { ctx.strokeStyle = "#ff6b6b"; ctx.strokeRect(ex, y(p), 0.18 * pxs, rowH); }
        else { ctx.fillStyle = "rgba(127,178,255,0.75)"; ctx.fillRect(ex, y(p), 0.18 * pxs, rowH); }
      }
    }
    const newly = [];
    for (const n of f.played) { // what it played and has scheduled
      const x0 = x(n.on), x1 = Math.max(x0 + 2, x(n.off));
      if (x1 < 0 || x0 > W) continue;
      const colour = VOICE_COLOURS[n.voice] || "#ddd";
      if (n.on > t) { // scheduled: not sounding yet
        ctx.setLineDash([4, 3]); ctx.strokeStyle = colour; ctx.strokeRect(x0, y(n.pitch), x1 - x0, rowH); ctx.setLineDash([]);
        ctx.globalAlpha = 0.3; ctx.fillStyle = colour; ctx.fillRect(x0, y(n.pitch), x1 - x0, rowH); ctx.globalAlpha = 1;
      } else {
        ctx.globalAlpha = 0.35 + 0.65 * (n.vel / 127); ctx.fillStyle = colour;
        ctx.fillRect(x0, y(n.pitch), x1 - x0, rowH); ctx.globalAlpha = 1;
      }
      if (!state.drawn.has(n.id)) { state.drawn.add(n.id); newly.push(n.id); }
    }
    const p = f.player || {};
    if (p.next_step_s != null && p.t) { // the player's next step (its next note unless it rests)
      const nx = x(p.t + p.next_step_s);
      if (nx > nowX && nx < W) {
        ctx.setLineDash([2, 3]); ctx.strokeStyle = "#ffa64d"; ctx.beginPath(); ctx.moveTo(nx, 0); ctx.lineTo(nx, H - 14); ctx.stroke(); ctx.setLineDash([]);
        ctx.fillStyle = "#ffa64d"; ctx.fillText("next step", nx + 3, H - 20);
      }
    }
    ctx.fillStyle = "#fff"; ctx.fillRect(nowX, 0, 2, H); // the now-line
    ctx.fillStyle = "#9aa5b5"; ctx.fillText("now", nowX + 4, 10);
    ctx.fillText(`${f.scheduled} scheduled`, nowX + 4, 22);
    if (newly.length && state.ws && state.ws.readyState === 1) {
      state.ws.send(JSON.stringify({ type: "drawn", ids: newly }));
    }
    if (state.drawn.size > 5000) state.drawn = new Set(Array.from(state.drawn).slice(-2000));
  }

  function drawMemory(f, t) {
    const canvas = $("memory"), ctx = canvas.getContext("2d"), W = canvas.width, H = canvas.height;
    const p = f.player || {}, strip = p.strip || [], n = p.n_states || 0;
    ctx.clearRect(0, 0, W, H);
    if (!n) { ctx.fillStyle = "#6b7585"; ctx.fillText("nothing learned yet", 8, 20); $("memory-text").textContent = ""; return; }
    const bw = W / strip.length, base = H - 8;
    for (let i = 0; i < strip.length; i++) { // influence activity over the states
      const v = strip[i];
      ctx.fillStyle = `rgba(255, 213, 79, ${0.15 + 0.85 * v})`;
      ctx.fillRect(i * bw, base - v * (base - 30), Math.max(1, bw - 0.5), v * (base - 30));
    }
    ctx.fillStyle = "#2c313a"; ctx.fillRect(0, base, W, 8); // the states
    const sx = (s) => (s + 0.5) / n * W;
    for (const m of f.moves || []) { // jumps as arcs above the strip
      if (!m.jump || m.from == null) continue;
      const age = t - m.t, alpha = Math.max(0.1, 1 - age / f.roll_seconds);
      ctx.strokeStyle = `rgba(120, 200, 255, ${alpha})`;
      ctx.beginPath();
      const a = sx(m.from), b = sx(m.to);
      ctx.moveTo(a, base); ctx.quadraticCurveTo((a + b) / 2, 4, b, base); ctx.stroke();
    }
    const cx = sx(p.state); // the state being played
    ctx.fillStyle = "#ff5252"; ctx.fillRect(cx - 1, 12, 3, H - 12);
    ctx.beginPath(); ctx.moveTo(cx - 6, 4); ctx.lineTo(cx + 7, 4); ctx.lineTo(cx + 1, 13); ctx.fill();
    const steps = p.steps || {};
    $("memory-text").textContent = `${n} states · playing ${p.state} (${p.last_move}) · transpose ${p.transpose >= 0 ? "+" : ""}${p.transpose} · ` +
      `${steps.forward || 0} forward / ${steps.jump || 0} jumps`;
  }

  function frameLoop() { draw(); requestAnimationFrame(frameLoop); }
  connect();
  requestAnimationFrame(frameLoop);
})();
