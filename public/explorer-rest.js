// The explorer's REST routes: the gateway's /openapi.json read for each method's google.api.http
// routes, and a route's HTTP request built from the editor's messages as http.proto maps them
// (path variables from their fields, then the rule's body, then the other fields as the query).

/** A snake_case proto name as its lowerCamelCase JSON name. */
const camel = (name) => name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());

/**
 * The REST routes of each method, by gRPC path, from the gateway's OpenAPI document: `{ method,
 * path, body, responseBody, variables: [{ name, multi }] }`. An empty map when the gateway has no
 * routes or the document cannot be read (then no route is offered).
 */
export async function loadRoutes(base, { signal } = {}) {
  const routes = new Map();
  let document;
  try {
    const response = await fetch(`${base}/openapi.json`, { signal });
    if (!response.ok) return routes;
    document = await response.json();
  } catch {
    return routes;
  }
  for (const [path, item] of Object.entries(document.paths ?? {})) {
    for (const [verb, operation] of Object.entries(item ?? {})) {
      const grpc = operation?.["x-grpc-method"];
      if (typeof grpc !== "string") continue;
      const variables = (operation.parameters ?? []).filter((p) => p.in === "path")
        .map((p) => ({ name: p.name, multi: typeof p.description === "string" }));
      const list = routes.get(grpc) ?? [];
      list.push({
        method: verb.toUpperCase(), path, variables,
        body: operation["x-http-rule"]?.body ?? "", responseBody: operation["x-http-rule"]?.responseBody ?? "",
      });
      routes.set(grpc, list);
    }
  }
  return routes;
}

/** Takes the value at `fieldPath` (dotted proto names) out of `message`, by JSON or proto name. */
function take(message, fieldPath) {
  let object = message;
  const names = fieldPath.split(".");
  for (const [index, name] of names.entries()) {
    if (object === null || typeof object !== "object") return undefined;
    const key = [camel(name), name].find((k) => k in object);
    if (key === undefined) return undefined;
    if (index === names.length - 1) {
      const value = object[key];
      delete object[key];
      return value;
    }
    object = object[key];
  }
  return undefined;
}

/** Whether a JSON value is proto3's default (left out of a query: it sets nothing). */
const isDefault = (value) => value === "" || value === 0 || value === "0" || value === false || value === null
  || (Array.isArray(value) && !value.length) || (typeof value === "object" && value && !Object.keys(value).length);

/** The query pairs of a message's remaining fields: scalars and lists of them, nested ones as a.b. */
function queryPairs(object, prefix, pairs) {
  for (const [key, value] of Object.entries(object)) {
    const name = prefix + key;
    if (isDefault(value)) continue;
    if (Array.isArray(value)) {
      for (const item of value) if (item === null || typeof item !== "object") pairs.push([name, String(item)]);
    } else if (typeof value === "object") {
      queryPairs(value, `${name}.`, pairs);
    } else {
      pairs.push([name, String(value)]);
    }
  }
  return pairs;
}

/**
 * The HTTP request of `route` for `messages` (parsed JSON objects; a request stream's several):
 * `{ method, url, body, contentType }`, `url` relative to the gateway. The path's variables come
 * from the first message; `body: "*"` sends each message whole, `body: "field"` that field of each,
 * no body none; without `body: "*"`, the first message's other non-default fields are the query.
 * A request stream (`stream`) is an NDJSON body, a message a line.
 */
export function restRequest(route, messages, { stream = false } = {}) {
  const copies = messages.map((m) => structuredClone(m));
  if (!copies.length) copies.push({});
  let path = route.path;
  for (const { name, multi } of route.variables) {
    const values = copies.map((copy) => take(copy, name));
    const text = values[0] == null ? "" : String(values[0]);
    const encoded = multi ? text.split("/").map(encodeURIComponent).join("/") : encodeURIComponent(text);
    path = path.replace(`{${name}}`, encoded || "-");
  }
  let bodies = [];
  if (route.body === "*") {
    bodies = copies;
  } else if (route.body) {
    bodies = copies.map((copy) => take(copy, route.body) ?? null);
  }
  const query = route.body === "*" ? [] : queryPairs(copies[0], "", []);
  const search = query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
  const url = search ? `${path}?${search}` : path;
  if (!route.body) return { method: route.method, url, body: null, contentType: null };
  if (stream) {
    return { method: route.method, url, body: bodies.map((b) => JSON.stringify(b)).join("\n") + "\n",
      contentType: "application/x-ndjson" };
  }
  return { method: route.method, url, body: JSON.stringify(bodies[0]), contentType: "application/json" };
}
