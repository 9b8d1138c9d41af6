"""Error pages (ingress-nginx's custom-http-errors) as one Lua HTTP filter with one fixed script.

The filter sits just before the router, disabled in every HTTP connection manager; a route with error pages
switches it on with a `LuaPerRoute` that names the script and carries the route's data in `filter_context`:
the codes, the error backend's cluster, the X-* values. No annotation text ever becomes Lua code: the script is
the constant `SCRIPT`, and what varies is data.

What the script does, for a request on such a route:

- on the request: unless it is gRPC (nginx's grpc_pass does not intercept either), it keeps what the error
  backend must be told (the path, Accept, Host, X-Request-ID) in the request's dynamic metadata;
- on the response, when its status is one of the codes: it reads the whole original body (so that it can be
  replaced; one over `ir.ERROR_PAGE_MAX_ORIGINAL_BODY` by its Content-Length passes through instead), asks the
  error backend `GET /` with ingress-nginx's X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name,
  X-Service-Name, X-Service-Port and X-Request-ID (bounded by `ir.ERROR_BACKEND_TIMEOUT_MS`), and gives the
  client its status, Content-Type and body. When the error backend cannot be reached, Envoy answers the call
  itself (no x-envoy-upstream-service-time header): the original error passes through; so does it when the
  error page is over `ir.ERROR_PAGE_MAX_BODY` (the page goes into the response buffer past its flow control:
  bounded, so that clients that do not read cannot make Envoy hold big pages).
- `upstream_off` (disable-proxy-intercept-errors): only Envoy's own answers (it could not get one from the
  upstream: no x-envoy-upstream-service-time) are replaced.

Envoy 1.40 quirks the script works around: the table `filterContext()` gives answers `pairs()` but not
indexing (it is copied into a plain table first); a buffer object from `body()` is dead after the script
yields in `httpCall()`, so `body()` is called again after it.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, struct_pb2

from xds_ingress import ir

FILTER = "xds-ingress.error-pages"  # the HTTP filter's name: the key of its per-route config
SCRIPT_NAME = "error-pages"
STAT_PREFIX = "error_pages"
METADATA = "xds-ingress.error-pages"  # the dynamic metadata namespace the request half writes for the response half

SCRIPT = f"""\
-- xds-ingress: ingress-nginx's custom-http-errors. Fixed code; a route's values come as data (filterContext).
local METADATA = "{METADATA}"
local TIMEOUT_MS = {ir.ERROR_BACKEND_TIMEOUT_MS}
local MAX_ORIGINAL_BODY = {ir.ERROR_PAGE_MAX_ORIGINAL_BODY}
local MAX_PAGE = {ir.ERROR_PAGE_MAX_BODY}
local ENTITY_HEADERS = {{"content-length", "content-encoding", "content-range", "content-language", "etag",
                        "last-modified", "content-md5", "digest"}}

local function plain(t)
  local out = {{}}
  for k, v in pairs(t) do
    if type(v) == "table" then out[k] = plain(v) else out[k] = v end
  end
  return out
end

local function is_grpc(content_type)
  return content_type ~= nil and string.sub(string.lower(content_type), 1, 16) == "application/grpc"
end

function envoy_on_request(handle)
  local h = handle:headers()
  if is_grpc(h:get("content-type")) then
    return
  end
  local md = handle:streamInfo():dynamicMetadata()
  md:set(METADATA, "uri", h:get(":path") or "/")
  md:set(METADATA, "authority", h:get(":authority") or "")
  md:set(METADATA, "accept", h:get("accept") or "")
  md:set(METADATA, "request_id", h:get("x-request-id") or "")
end

function envoy_on_response(handle)
  local req = handle:streamInfo():dynamicMetadata():get(METADATA)
  if req == nil then
    return
  end
  local h = handle:headers()
  local status = h:get(":status")
  local ctx = plain(handle:filterContext())
  if status == nil or ctx.codes == nil or ctx.codes[status] == nil or ctx.cluster == nil then
    return
  end
  if ctx.upstream_off and h:get("x-envoy-upstream-service-time") ~= nil then
    return
  end
  if is_grpc(h:get("content-type")) then
    return
  end
  local length = tonumber(h:get("content-length") or "0")
  if length == nil or length > MAX_ORIGINAL_BODY then
    return
  end
  handle:body(true)
  local ask = {{
    [":method"] = "GET",
    [":path"] = "/",
    [":authority"] = (req.authority ~= nil and req.authority ~= "") and req.authority or ctx.service,
    ["x-code"] = status,
    ["x-original-uri"] = req.uri or "/",
    ["x-namespace"] = ctx.namespace,
    ["x-ingress-name"] = ctx.ingress,
    ["x-service-name"] = ctx.service,
    ["x-service-port"] = ctx.service_port,
  }}
  if req.accept ~= nil and req.accept ~= "" then
    ask["x-format"] = req.accept
  end
  if req.request_id ~= nil and req.request_id ~= "" then
    ask["x-request-id"] = req.request_id
  end
  local answer, body = handle:httpCall(ctx.cluster, ask, nil, {{timeout_ms = TIMEOUT_MS, send_xff = false}})
  if answer == nil or answer[":status"] == nil or answer["x-envoy-upstream-service-time"] == nil then
    return
  end
  if body ~= nil and #body > MAX_PAGE then
    return  -- set in the response buffer, past its flow control: a big page is not served
  end
  h = handle:headers()
  h:replace(":status", answer[":status"])
  for _, name in ipairs(ENTITY_HEADERS) do
    h:remove(name)
  end
  if answer["content-type"] ~= nil then
    h:replace("content-type", answer["content-type"])
  else
    h:remove("content-type")
  end
  handle:body(true):setBytes(body or "")
end
"""


def _pack(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg, deterministic=True)
    return a


def error_pages_filter(lst: ir.Listener) -> hcm_pb2.HttpFilter | None:
    """Disabled unless a route has error pages (LuaPerRoute); only in listeners that may have such routes."""
    if not lst.error_pages:
        return None
    cfg = lua_pb2.Lua(stat_prefix=STAT_PREFIX)
    cfg.source_codes[SCRIPT_NAME].inline_string = SCRIPT
    return hcm_pb2.HttpFilter(name=FILTER, typed_config=_pack(cfg), disabled=True)


def per_route(p: ir.ErrorPages) -> lua_pb2.LuaPerRoute:
    ctx = struct_pb2.Struct()
    ctx.update({"cluster": p.cluster, "namespace": p.namespace, "ingress": p.ingress, "service": p.service,
                "service_port": p.service_port, "codes": {str(c): True for c in p.codes}})
    if p.upstream_off:
        ctx["upstream_off"] = True
    return lua_pb2.LuaPerRoute(name=SCRIPT_NAME, filter_context=ctx)


def route_filter_config(p: ir.RoutePolicy, msg: rc.Route) -> None:
    """Switch the error pages on for route `msg` (a route that sends to an upstream or answers itself alike:
    Envoy's own 503 for a Service that cannot be routed to is an error nginx's error_page catches too)."""
    if p.error_pages is not None:
        msg.typed_per_filter_config[FILTER].CopyFrom(_pack(per_route(p.error_pages)))


def route_clusters(route: rc.Route) -> set[str]:
    """The error backend's cluster a route's error pages call (it must be delivered before the route)."""
    packed = route.typed_per_filter_config.get(FILTER)
    if packed is None:
        return set()
    per = lua_pb2.LuaPerRoute()
    packed.Unpack(per)
    name = per.filter_context.fields.get("cluster")
    return {name.string_value} if name is not None and name.string_value else set()
