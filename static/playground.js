// The playground calls the real model API (/v1/…) like any client, with a short-lived token the server mints
// for this session and organization (POST /playground/token): no API key ever reaches the page.
(function () {
  const root = document.getElementById("playground");
  if (!root) return;
  const models = Object.fromEntries(JSON.parse(document.getElementById("playground-models").textContent)
    .map((model) => [model.id, model]));
  const form = document.getElementById("playground-form");
  const picker = document.getElementById("model");
  const prompt = document.getElementById("prompt");
  const system = document.getElementById("system");
  const options = document.getElementById("options");
  const transcript = document.getElementById("transcript");
  const stats = document.getElementById("call-stats");
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  const ENDED = ["succeeded", "failed", "cancelled", "timed_out"];
  let conversation = [];  // chat turns sent with the next message
  let token = null, tokenUntil = 0;

  // --- the credential ------------------------------------------------------------------------------------

  async function credential(fresh) {
    if (!fresh && token && Date.now() < tokenUntil) return token;
    const answer = await fetch(root.dataset.tokenUrl, { method: "POST", headers: { "X-CSRFToken": csrf } });
    if (!answer.ok) throw new Error(answer.status === 403 ? "Your role may not spend credits in this organization."
      : `The playground could not get a token (HTTP ${answer.status}): reload the page.`);
    const minted = await answer.json();
    token = minted.token;
    tokenUntil = Date.now() + (minted.expiresIn - 60) * 1000;  // renewed a minute before it expires
    return token;
  }

  // A 401 gets one retry with a fresh token: the old one expired, or its key was replaced.
  async function api(path, init = {}) {
    for (const fresh of [false, true]) {
      const headers = { ...(init.headers || {}), Authorization: `Bearer ${await credential(fresh)}` };
      const answer = await fetch(path, { ...init, headers });
      if (answer.status !== 401 || fresh) return answer;
    }
  }

  async function failure(answer) {
    const text = await answer.text();
    try {
      const error = JSON.parse(text).error || {};
      return `${answer.status}: ${error.message || text}`;
    } catch { return `${answer.status}: ${text || answer.statusText}`; }
  }

  // --- the form for the chosen model ---------------------------------------------------------------------

  function task(model) { return model.capability === "audio" ? (model.parameters || {}).task : model.capability; }

  function select(name, label, values) {
    const field = document.createElement("div");
    field.className = "field";
    field.innerHTML = `<label for="opt-${name}">${label}</label>`;
    const input = document.createElement("select");
    input.id = `opt-${name}`;
    input.name = name;
    for (const value of values) input.add(new Option(value, value));
    field.append(input);
    options.append(field);
  }

  function input(name, label, attrs) {
    const field = document.createElement("div");
    field.className = "field";
    field.innerHTML = `<label for="opt-${name}">${label}</label>`;
    const element = Object.assign(document.createElement("input"), { id: `opt-${name}`, name, ...attrs });
    field.append(element);
    options.append(field);
  }

  function keys(values) { return Array.isArray(values) ? values : Object.keys(values || {}); }

  function price(model) {
    const p = model.pricing;
    if (p.price !== undefined) return `${p.price} ${p.unit}`;
    return `${p.input} in / ${p.output} out, credits per million tokens`;
  }

  function chooseModel() {
    const model = models[picker.value];
    const kind = task(model);
    const params = model.parameters || {};
    options.replaceChildren();
    document.getElementById("model-price").textContent = `${price(model)} · ${model.endpoints[0]}`;
    document.getElementById("system-field").hidden = kind !== "chat";
    document.getElementById("reset").hidden = kind !== "chat";
    document.getElementById("prompt-field").hidden = kind === "asr";
    document.getElementById("prompt-label").textContent =
      { chat: "Message", tts: "Text to speak", clone: "Text to speak" }[kind] || "Prompt";
    if (kind === "chat") input("max_tokens", "Max output tokens", { type: "number", min: 1, value: 512 });
    if (kind === "image") {
      if (params.sizes) select("size", "Size", keys(params.sizes));
      if (params.aspect_ratios) select("aspect_ratio", "Aspect ratio", params.aspect_ratios);
      if (params.resolutions) select("resolution", "Resolution", keys(params.resolutions));
    }
    if (kind === "tts") input("voice", "Voice", { value: "alloy", required: true });
    if (kind === "asr" || kind === "clone")
      input("audio", kind === "asr" ? "Audio to transcribe" : "Reference voice (10 s or more)",
            { type: "file", accept: "audio/*", required: true });
    if (kind === "video") {
      if (params.durations) select("duration", "Seconds", params.durations);
      if (params.aspect_ratios) select("aspect_ratio", "Aspect ratio", params.aspect_ratios);
      if (params.resolutions) select("resolution", "Resolution", params.resolutions);
    }
    options.hidden = !options.children.length;
  }

  function option(name) {
    const element = options.querySelector(`[name=${name}]`);
    return element ? element.value : undefined;
  }

  // --- what the page shows -------------------------------------------------------------------------------

  function turn(who, text, kind = who) {
    document.getElementById("placeholder")?.remove();
    const element = document.createElement("div");
    element.className = `turn ${kind}`;
    element.innerHTML = `<span class="who">${who}</span>`;
    const body = document.createElement("div");
    body.textContent = text;
    element.append(body);
    transcript.append(element);
    return body;
  }

  function show({ tokens, cost, started, firstByte, requestId }) {
    const total = Math.round(performance.now() - started);
    stats.hidden = false;
    stats.querySelector("[data-stat=tokens]").textContent = tokens || "—";
    stats.querySelector("[data-stat=cost]").textContent = cost ?? "—";
    stats.querySelector("[data-stat=latency]").textContent =
      firstByte ? `${Math.round(firstByte - started)} ms to first token, ${total} ms in all` : `${total} ms`;
    const link = stats.querySelector("[data-stat=request]");
    link.textContent = requestId || "—";
    link.href = requestId ? `${root.dataset.usageUrl}&requestId=${encodeURIComponent(requestId)}` : "#";
  }

  async function refreshBalance() {
    // GET /credits also writes this process's pending charges and logs, so the request's row is there to open.
    const answer = await api("/v1/credits");
    if (answer.ok) document.querySelector("[data-testid=balance]").textContent = (await answer.json()).balance;
  }

  // --- the calls, one per kind of model ------------------------------------------------------------------

  async function* events(answer) {
    const reader = answer.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trim());
        }
        if (data.length) yield { event, data: data.join("\n") };
      }
    }
  }

  async function chat(model, text, call) {
    const anthropic = !model.endpoints.includes("/v1/chat/completions");  // Anthropic models live on /messages
    const maxTokens = Number(option("max_tokens")) || undefined;
    const history = [...conversation, { role: "user", content: text }];
    const body = anthropic
      ? { model: model.id, max_tokens: maxTokens || 1024, stream: true, messages: history,
          ...(system.value.trim() ? { system: system.value.trim() } : {}) }
      : { model: model.id, max_tokens: maxTokens, stream: true, stream_options: { include_usage: true },
          messages: [...(system.value.trim() ? [{ role: "system", content: system.value.trim() }] : []), ...history] };
    turn("you", text, "user");
    const answer = await api(anthropic ? "/v1/messages" : "/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    call.requestId = answer.headers.get("x-request-id");
    if (!answer.ok) throw new Error(await failure(answer));
    const out = turn(model.id, "", "assistant");
    let reply = "", input = 0, output = 0;
    for await (const { event, data } of events(answer)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error || event === "error") throw new Error((chunk.error || {}).message || "The stream failed.");
      const delta = anthropic ? (event === "content_block_delta" ? chunk.delta.text || "" : "")
        : (chunk.choices?.[0]?.delta?.content || "");
      if (delta) {
        call.firstByte ??= performance.now();
        reply += delta;
        out.textContent = reply;
      }
      const usage = anthropic ? (chunk.message || chunk).usage : chunk.usage;
      if (usage) {
        input = anthropic ? (usage.input_tokens ?? input) + (usage.cache_read_input_tokens || 0) : usage.prompt_tokens;
        output = anthropic ? usage.output_tokens ?? output : usage.completion_tokens;
        if (usage.cost !== undefined) call.cost = usage.cost;
      }
    }
    conversation = [...history, { role: "assistant", content: reply }];
    call.tokens = `${input} in / ${output} out`;
  }

  async function image(model, text, call) {
    turn("you", text, "user");
    const body = { model: model.id, prompt: text, n: 1 };
    for (const name of ["size", "aspect_ratio", "resolution"]) if (option(name)) body[name] = option(name);
    const answer = await api("/v1/images/generations", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    call.requestId = answer.headers.get("x-request-id");
    if (!answer.ok) throw new Error(await failure(answer));
    const result = await answer.json();
    const out = turn(model.id, "", "assistant media-out");
    for (const picture of result.data) {
      const img = document.createElement("img");
      img.alt = text;
      img.src = picture.url || `data:image/png;base64,${picture.b64_json}`;
      out.append(img);
    }
    call.cost = result.usage?.cost;
    call.tokens = `${result.data.length} image${result.data.length === 1 ? "" : "s"}`;
  }

  function dataUrl(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  async function audio(model, text, call) {
    const kind = task(model);
    const file = options.querySelector("[name=audio]")?.files[0];
    let answer;
    if (kind === "tts") {
      turn("you", text, "user");
      answer = await api("/v1/audio/speech", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: model.id, input: text, voice: option("voice") }) });
    } else if (kind === "asr") {
      turn("you", file.name, "user");
      const upload = new FormData();
      upload.append("model", model.id);
      upload.append("file", file);
      answer = await api("/v1/audio/transcriptions", { method: "POST", body: upload });
    } else {
      turn("you", `${text} (in the voice of ${file.name})`, "user");
      answer = await api("/v1/audio/generations", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ model: model.id, text, audio: await dataUrl(file) }) });
    }
    call.requestId = answer.headers.get("x-request-id");
    if (!answer.ok) throw new Error(await failure(answer));
    const out = turn(model.id, "", "assistant media-out");
    if (kind === "asr") {
      const result = await answer.json();
      out.textContent = result.text;
    } else {
      const player = Object.assign(document.createElement("audio"), { controls: true });
      if (kind === "tts") player.src = URL.createObjectURL(await answer.blob());
      else {
        const result = await answer.json();
        player.src = result.data[0].url;
        call.cost = result.usage?.cost;
      }
      out.append(player);
    }
    call.cost ??= answer.headers.get("x-hypereal-credits");
    call.tokens = "1 request";
  }

  async function video(model, text, call) {
    turn("you", text, "user");
    const body = { model: model.id, prompt: text };
    for (const name of ["duration", "aspect_ratio", "resolution"]) if (option(name)) body[name] = option(name);
    if (body.duration) body.duration = Number(body.duration);
    const answer = await api("/v1/videos/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    call.requestId = answer.headers.get("x-request-id");
    if (!answer.ok) throw new Error(await failure(answer));
    const out = turn(model.id, "Generating…", "assistant media-out");
    let job = await answer.json();
    while (!ENDED.includes(job.status)) {  // 202: the job outlived the submit's wait; poll it like any client
      out.textContent = `Generating… ${job.progress || 0} %`;
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const polled = await api(job.pollUrl);
      if (!polled.ok) throw new Error(await failure(polled));
      job = await polled.json();
    }
    if (job.status !== "succeeded") throw new Error(`The job ${job.status}: ${job.error?.message || job.error || ""}`);
    out.replaceChildren(Object.assign(document.createElement("video"), { controls: true, src: job.videoUrl }));
    call.cost = job.creditsCharged;
    call.tokens = `${body.duration || ""} s`.trim();
  }

  const RUN = { chat, image, audio, video };

  async function run(event) {
    event.preventDefault();
    const model = models[picker.value];
    const text = prompt.value.trim();
    if (!text && task(model) !== "asr") return prompt.focus();
    const button = form.querySelector("[data-testid=run]");
    button.disabled = true;
    const call = { started: performance.now() };
    try {
      await RUN[model.capability](model, text, call);
      prompt.value = "";
    } catch (error) {
      turn("error", error.message, "error");
    } finally {
      button.disabled = false;
      show(call);
      refreshBalance();
    }
  }

  picker.addEventListener("change", () => { conversation = []; chooseModel(); });
  document.getElementById("reset").addEventListener("click", () => {
    conversation = [];
    transcript.replaceChildren();
  });
  form.addEventListener("submit", run);
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });
  chooseModel();
})();
