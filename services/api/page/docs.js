// /docs: the API's OpenAPI document (/openapi.json) rendered as a reference, offline:
// every path and method with its summary, description, scope, parameters, request body
// and responses, then the component schemas.
"use strict";

(function () {
  const {h, show} = window.storemon;
  const $ = (id) => document.getElementById(id);
  const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

  let doc = {};

  // A "#/components/..." reference resolved in the document (one level at a time).
  function resolve(value) {
    let seen = 0;
    while (value && typeof value.$ref === "string" && value.$ref.startsWith("#/") && seen++ < 10) {
      let target = doc;
      for (const part of value.$ref.slice(2).split("/")) {
        target = target && target[part.replace(/~1/g, "/").replace(/~0/g, "~")];
      }
      if (target === undefined) break;
      value = target;
    }
    return value;
  }

  const refName = (ref) => ref.split("/").pop();
  const anchor = (text) => text.replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "") || "root";
  const operationId = (method, path) => "op-" + method + "-" + anchor(path);

  // Text with `code` spans, as elements (never HTML).
  function prose(text, className) {
    const element = h("p", {className: className || "description"});
    String(text || "").split(/(`[^`]*`)/).forEach((part) => {
      if (part.length > 1 && part.startsWith("`") && part.endsWith("`")) element.append(h("code", {}, part.slice(1, -1)));
      else if (part) element.append(part);
    });
    return element;
  }

  // A short label of a schema: its component's name (a link), or its type.
  function schemaLabel(schema) {
    if (!schema) return h("span", {className: "muted"}, "any");
    if (typeof schema.$ref === "string") {
      const name = refName(schema.$ref);
      return h("a", {className: "schema-name", href: "#schema-" + anchor(name)}, name);
    }
    const joined = (items, word) => {
      const span = h("span", {});
      items.forEach((item, index) => {
        if (index) span.append(" " + word + " ");
        span.append(schemaLabel(item));
      });
      return span;
    };
    if (schema.oneOf) return joined(schema.oneOf, "or");
    if (schema.anyOf) return joined(schema.anyOf, "or");
    if (schema.allOf) {
      const span = joined(schema.allOf, "and");
      if (schema.properties) span.append(" + {" + Object.keys(schema.properties).join(", ") + "}");
      return span;
    }
    if (schema.enum) return h("span", {className: "mono"}, schema.enum.map((v) => JSON.stringify(v)).join(" | "));
    if (schema.const !== undefined) return h("span", {className: "mono"}, JSON.stringify(schema.const));
    const type = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type || "object";
    if (type === "array") {
      const span = h("span", {}, "array of ");
      span.append(schemaLabel(schema.items));
      if (schema.maxItems !== undefined) span.append(" (at most " + schema.maxItems + ")");
      return span;
    }
    const bits = [type];
    if (schema.format) bits.push("(" + schema.format + ")");
    if (schema.pattern) bits.push("matching " + schema.pattern);
    if (schema.minimum !== undefined || schema.maximum !== undefined) {
      bits.push("[" + (schema.minimum ?? "…") + ", " + (schema.maximum ?? "…") + "]");
    }
    if (schema.minLength !== undefined || schema.maxLength !== undefined) {
      bits.push("length " + (schema.minLength ?? 0) + "–" + (schema.maxLength ?? "…"));
    }
    if (schema.default !== undefined) bits.push("default " + JSON.stringify(schema.default));
    return h("span", {className: "mono"}, bits.join(" "));
  }

  function contentList(content) {
    const cell = h("td", {});
    for (const [mediaType, media] of Object.entries(content || {})) {
      if (cell.childNodes.length) cell.append(h("br"));
      cell.append(h("code", {}, mediaType), " ", schemaLabel(media && media.schema));
    }
    return cell;
  }

  function scopeOf(operation) {
    const security = operation.security !== undefined ? operation.security : doc.security;
    if (!security || security.length === 0) {
      return h("span", {className: "scope"}, "public: no token");
    }
    const scopes = security.flatMap((requirement) =>
      Object.entries(requirement).map(([scheme, names]) => (names.length ? names.join(", ") : scheme)));
    return h("span", {className: "scope"}, "token scope ", h("strong", {}, scopes.join(" or ")));
  }

  function parametersTable(parameters) {
    if (!parameters.length) return null;
    const body = h("tbody", {});
    for (const raw of parameters) {
      const parameter = resolve(raw);
      body.append(h("tr", {dataset: {parameter: parameter.name}},
        h("td", {}, h("code", {}, parameter.name),
          parameter.required ? h("span", {className: "required"}, "required") : null),
        h("td", {}, parameter.in),
        h("td", {}, schemaLabel(parameter.schema)),
        h("td", {}, prose(parameter.description || "", "cell"))));
    }
    return h("table", {className: "parameters"},
      h("thead", {}, h("tr", {}, h("th", {}, "Parameter"), h("th", {}, "In"), h("th", {}, "Schema"),
        h("th", {}, "Description"))),
      body);
  }

  function requestBodyBlock(requestBody) {
    if (!requestBody) return null;
    const body = resolve(requestBody);
    return h("div", {className: "request-body"},
      h("h4", {}, "Request body", body.required ? h("span", {className: "required"}, "required") : " (optional)"),
      body.description ? prose(body.description) : null,
      h("table", {}, h("tbody", {}, h("tr", {}, contentList(body.content)))));
  }

  function responsesTable(responses) {
    const body = h("tbody", {});
    const codes = Object.keys(responses || {}).sort();
    for (const code of codes) {
      const raw = responses[code];
      const response = resolve(raw);
      const named = raw && typeof raw.$ref === "string" ? " (" + refName(raw.$ref) + ")" : "";
      const headers = Object.entries(response.headers || {}).map(([name, header]) =>
        h("div", {className: "muted"}, "header ", h("code", {}, name), ": ",
          ...prose(resolve(header).description || "", "cell").childNodes));
      body.append(h("tr", {dataset: {status: code}},
        h("td", {}, h("strong", {}, code)),
        h("td", {}, prose((response.description || "") + named, "cell"), ...headers),
        contentList(response.content)));
    }
    return h("table", {className: "responses"},
      h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "Description"), h("th", {}, "Content"))),
      body);
  }

  function operationBlock(path, method, operation, pathParameters) {
    const id = operationId(method, path);
    const parameters = [...pathParameters, ...(operation.parameters || [])];
    return h("article", {className: "operation", id, dataset: {path, method}},
      h("h3", {className: "path-head"},
        h("span", {className: "method method-" + method}, method.toUpperCase()),
        h("code", {className: "path"}, path),
        h("span", {className: "summary"}, operation.summary || ""),
        scopeOf(operation)),
      operation.description ? prose(operation.description) : null,
      parametersTable(parameters),
      requestBodyBlock(operation.requestBody),
      h("h4", {}, "Responses"),
      responsesTable(operation.responses));
  }

  function schemaBlock(name, schema) {
    const properties = schema.properties || {};
    const required = new Set(schema.required || []);
    const rows = Object.entries(properties).map(([property, value]) =>
      h("tr", {}, h("td", {}, h("code", {}, property),
        required.has(property) ? h("span", {className: "required"}, "required") : null),
      h("td", {}, schemaLabel(value)),
      h("td", {}, prose(value.description || "", "cell"))));
    return h("article", {className: "operation", id: "schema-" + anchor(name)},
      h("h3", {className: "path-head"}, h("code", {}, name), h("span", {className: "muted"}, schemaLabel(schema))),
      schema.description ? prose(schema.description) : null,
      rows.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Property"), h("th", {}, "Schema"),
        h("th", {}, "Description"))), h("tbody", {}, ...rows)) : null,
      h("details", {}, h("summary", {}, "JSON Schema"), h("pre", {className: "schema"}, JSON.stringify(schema, null, 2))));
  }

  function render(document_) {
    doc = document_;
    const info = doc.info || {};
    const infoBlock = $("docs-info");
    infoBlock.replaceChildren(
      h("h2", {}, (info.title || "API") + (info.version ? " " + info.version : "")),
      info.description ? prose(info.description) : null);
    const schemes = Object.entries((doc.components || {}).securitySchemes || {});
    for (const [name, scheme] of schemes) {
      infoBlock.append(h("h3", {}, "Authentication: ", h("code", {}, name), " (" +
        [scheme.type, scheme.scheme].filter(Boolean).join(" ") + ")"), prose(scheme.description || ""));
    }
    document.title = (info.title || "API") + " reference";

    const paths = $("docs-paths");
    const tocList = h("ul", {});
    paths.replaceChildren(h("h2", {}, "Routes"));
    for (const [path, item] of Object.entries(doc.paths || {})) {
      const pathParameters = item.parameters || [];
      for (const method of METHODS) {
        if (!item[method]) continue;
        paths.append(operationBlock(path, method, item[method], pathParameters));
        tocList.append(h("li", {}, h("a", {href: "#" + operationId(method, path)},
          h("span", {className: "method method-" + method}, method.toUpperCase()), " ", path)));
      }
    }
    paths.hidden = false;

    const schemas = Object.entries((doc.components || {}).schemas || {});
    const schemaSection = $("docs-schemas");
    schemaSection.replaceChildren(h("h2", {}, "Schemas"), ...schemas.map(([name, schema]) => schemaBlock(name, schema)));
    schemaSection.hidden = schemas.length === 0;
    const schemaToc = h("ul", {}, ...schemas.map(([name]) =>
      h("li", {}, h("a", {href: "#schema-" + anchor(name)}, name))));
    $("toc").replaceChildren(h("div", {className: "toc-group"}, "Routes"), tocList,
      h("div", {className: "toc-group"}, "Schemas"), schemaToc);
    document.body.dataset.rendered = "true";
    if (location.hash) {
      const target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    try {
      const response = await fetch("/openapi.json", {cache: "no-cache"});
      if (!response.ok) throw await window.storemon.errorOf(response);
      render(await response.json());
    } catch (error) {
      show($("docs-error"), "Cannot read /openapi.json: " + ((error && error.message) || error));
    }
  });
})();
