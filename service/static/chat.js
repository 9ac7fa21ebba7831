// The chat page: POST /chat with stream:true, parse the SSE events (passages, answer,
// done, error) and render them. Untrusted text (questions, articles) only ever goes
// through textContent; no HTML is ever parsed from strings.
"use strict";
(() => {
  const log = document.getElementById("log");
  const form = document.getElementById("ask");
  const input = document.getElementById("question");
  const send = document.getElementById("send");
  const errorBox = document.getElementById("error");
  const dialog = document.getElementById("article");
  const keyForm = document.getElementById("key-form");
  const keyInput = document.getElementById("key");
  const messages = [];
  // A deployment with ARTICLE_QA_READ_API_KEY answers 401 without a key: the page asks
  // for one and keeps it for this tab only (sessionStorage), never in the page's URL.
  const KEY_STORE = "article-qa-api-key";
  let pendingQuestion = null;

  class NeedsKey extends Error {}

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_STORE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  // 401 (no key) or 403 (a wrong one): ask for a key instead of failing.
  async function checkAuth(r) {
    if (r.status !== 401 && r.status !== 403) return;
    const body = await r.json().catch(() => ({}));
    if (r.status === 403) sessionStorage.removeItem(KEY_STORE);
    keyForm.querySelector("label").textContent = r.status === 401
      ? "This server needs an API key to answer"
      : `The API key was not accepted (${body.detail || "HTTP 403"}); enter another`;
    keyForm.hidden = false;
    keyInput.value = "";
    keyInput.focus();
    throw new NeedsKey();
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  // `text` with [start, end) wrapped in <mark>, built as DOM nodes.
  function highlighted(text, start, end, cls) {
    const frag = document.createDocumentFragment();
    if (start < 0 || end > text.length || start >= end) { frag.append(text); return frag; }
    frag.append(text.slice(0, start));
    const mark = el("mark", cls, text.slice(start, end));
    frag.append(mark, text.slice(end));
    return frag;
  }

  function citationButton(n, c) {
    const button = el("button", "citation");
    button.type = "button";
    button.dataset.doc = c.doc_id;
    button.append(el("span", "num", `[${n}]`), el("span", "source", c.source || c.title || c.doc_id), " — ");
    const quote = el("q", "quote");
    quote.append(highlighted(c.quote, c.start - c.quote_start, c.end - c.quote_start));
    button.append(quote);
    button.setAttribute("aria-label", `Open source ${n}: ${c.source || c.doc_id}`);
    button.addEventListener("click", () => openArticle(c));
    return button;
  }

  async function openArticle(c) {
    try {
      const r = await fetch(`/documents/${encodeURIComponent(c.doc_id)}`, { headers: authHeaders() });
      await checkAuth(r);
      const body = await r.json();
      if (!r.ok) throw new Error(body.detail || `HTTP ${r.status}`);
      document.getElementById("article-title").textContent = body.title || body.doc_id;
      document.getElementById("article-source").textContent =
        [body.source, body.published, body.url].filter(Boolean).join(" · ");
      const box = document.getElementById("article-text");
      box.textContent = "";
      const t = body.text;
      const quote = el("span", "quote");
      quote.id = "quoted";
      quote.append(highlighted(t.slice(c.quote_start, c.quote_end), c.start - c.quote_start, c.end - c.quote_start));
      box.append(t.slice(0, c.quote_start), quote, t.slice(c.quote_end));
      dialog.showModal();
      quote.scrollIntoView({ block: "center" });
      document.getElementById("close").focus();
    } catch (err) {
      if (!(err instanceof NeedsKey)) showError(`Could not open the article: ${err.message}`);
    }
  }

  function renderAnswer(turn, data) {
    const a = data.answer;
    turn.textContent = "";
    turn.classList.remove("pending");
    turn.append(el("p", "reply", data.reply));
    const meta = el("p", "meta");
    if (a.answer === null) {
      meta.append(el("span", "badge abstain", "No answer in the articles"));
    } else {
      meta.append(`Confidence ${Math.round(a.confidence * 100)}%`);
      if (a.conflict) meta.append(" ", el("span", "badge conflict", "Sources disagree"));
    }
    turn.append(meta);
    let n = 0;
    const numbered = a.answers.map((ans) => ans.citations.map((c) => [++n, c]));
    if (a.conflict && a.answers.length > 1) {
      const box = el("section", "disagree");
      box.append(el("h3", null, "Sources disagree"));
      const ul = el("ul");
      a.answers.forEach((ans, i) => {
        const li = el("li");
        li.append(el("strong", null, ans.text), " — ",
          numbered[i].map(([k, c]) => `[${k}] ${c.source || c.doc_id}`).join(", "));
        ul.append(li);
      });
      box.append(ul);
      turn.append(box);
    }
    const list = el("ol", "citations");
    numbered.flat().forEach(([k, c]) => { const li = el("li"); li.append(citationButton(k, c)); list.append(li); });
    turn.append(list);
  }

  function renderPassages(turn, data) {
    turn.textContent = "";
    turn.append(el("span", null, `Reading ${data.passages.length} passages…`));
    const details = el("details", "sources");
    details.append(el("summary", null, "Sources found"));
    const ul = el("ul");
    data.passages.forEach((p) => ul.append(el("li", null, `${p.source || p.doc_id}: ${p.text.slice(0, 160)}…`)));
    details.append(ul);
    turn.append(details);
  }

  // Split an SSE byte stream into {event, data} records.
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  }

  async function ask(question) {
    errorBox.hidden = true;
    messages.push({ role: "user", content: question });
    log.append(el("li", "turn user", question));
    const turn = el("li", "turn assistant pending", "Searching the articles…");
    log.append(turn);
    turn.scrollIntoView({ block: "end" });
    send.disabled = true;
    try {
      const r = await fetch("/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders() },
        body: JSON.stringify({ messages, stream: true }),
      });
      await checkAuth(r);
      if (!r.ok) {
        const body = await r.json().catch(() => ({}));
        throw new Error(body.detail || `HTTP ${r.status}`);
      }
      let answered = false;
      for await (const { event, data } of events(r)) {
        if (event === "passages") renderPassages(turn, data);
        else if (event === "answer") {
          renderAnswer(turn, data);
          messages.push({ role: "assistant", content: data.reply });
          answered = true;
        } else if (event === "error") throw new Error(data.detail);
      }
      if (!answered) throw new Error("the answer stream ended early");
      turn.dataset.done = "true";
    } catch (err) {
      messages.pop();
      if (err instanceof NeedsKey) {
        // Not an answer: take the question back, and ask it again once a key is given.
        turn.previousElementSibling.remove();
        turn.remove();
        pendingQuestion = question;
        return;
      }
      turn.classList.remove("pending");
      turn.textContent = "";
      turn.append(el("p", "reply", "No answer: an error occurred."));
      showError(`Error: ${err.message}`);
    } finally {
      send.disabled = false;
      (keyForm.hidden ? input : keyInput).focus();
    }
  }

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = input.value.trim();
    if (!q || send.disabled) return;
    input.value = "";
    ask(q);
  });
  keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = keyInput.value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    keyInput.value = "";
    keyForm.hidden = true;
    const q = pendingQuestion;
    pendingQuestion = null;
    if (q) ask(q);
    else input.focus();
  });
  document.getElementById("close").addEventListener("click", () => dialog.close());
  input.focus();
})();
