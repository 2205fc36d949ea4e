// storemon's page and docs: what both use. No framework, no build step.
"use strict";

(function () {
  const TOKEN_KEY = "storemon.token";
  // The token when sessionStorage refuses to keep it (it then lasts as long as the page).
  let memoryToken = "";

  // An element: h("td", {className: "num", dataset: {x: 1}}, "text", child, ...).
  function h(tag, props, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "dataset") Object.assign(element.dataset, value);
      else if (name === "on") {
        for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
      } else if (name in element && name !== "list") element[name] = value;
      else element.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }

  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_) {
      return "";
    }
  }

  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // sessionStorage refused (private mode): the token lasts as long as the page.
    }
    memoryToken = value;
  }

  function currentToken() {
    return token() || memoryToken;
  }

  // The headers of a request to the API: Authorization when a token is set.
  function headers(extra) {
    const all = Object.assign({}, extra || {});
    const secret = currentToken();
    if (secret) all.Authorization = "Bearer " + secret;
    return all;
  }

  class ApiError extends Error {
    constructor(status, code, message, body) {
      super(message);
      this.status = status;
      this.code = code;
      this.body = body;
    }
  }

  // The API's error as an ApiError: its JSON {"error": {"code", "message"}} when it
  // answered one, else the HTTP status.
  async function errorOf(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    const error = body && body.error;
    if (error && typeof error.message === "string") {
      return new ApiError(response.status, error.code || "", error.message, body);
    }
    const reason = response.statusText ? " " + response.statusText : "";
    return new ApiError(response.status, "http_" + response.status, "HTTP " + response.status + reason, body);
  }

  // fetch() on the API with the token; rejects with an ApiError unless the answer is 2xx.
  async function api(path, options) {
    const init = Object.assign({}, options || {});
    init.headers = headers(init.headers);
    init.cache = init.cache || "no-store";
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (error && error.name === "AbortError") throw error;
      throw new ApiError(0, "network", "the API cannot be reached: " + (error && error.message), null);
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  async function apiJson(path, options) {
    const init = Object.assign({}, options || {});
    init.headers = Object.assign({Accept: "application/json"}, init.headers || {});
    const response = await api(path, init);
    return response.status === 204 ? null : response.json();
  }

  // "2023-01-24T12:00:00.000000Z" -> "2023-01-24 12:00:00 UTC" (seconds kept, digits below dropped).
  function formatTime(text) {
    if (!text) return "";
    const match = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?Z$/.exec(text);
    return match ? match[1] + " " + match[2] + " UTC" : String(text);
  }

  function formatSeconds(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
    if (seconds < 1) return (seconds * 1000).toFixed(0) + " ms";
    if (seconds < 60) return seconds.toFixed(seconds < 10 ? 2 : 1) + " s";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + Math.round(seconds - minutes * 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function show(element, message) {
    element.textContent = message || "";
    element.hidden = !message;
  }

  window.storemon = {h, token: currentToken, setToken, headers, api, apiJson, errorOf, ApiError,
    formatTime, formatSeconds, show};
})();
