"""ingress-nginx's auth-signin and auth-request-redirect on Envoy's external authorization (slot 3 of
http_filters.py). Pure.

A refusal of the authorization service with 401 becomes a 302 to the sign-in URL (the URL's nginx variables
expanded per request); an upstream's own 401 is passed through as it is. Two Lua filter instances, each off by
default and switched on per route (LuaPerRoute) only on the routes that have a sign-in URL or a computed
X-Auth-Request-Redirect, so that no other route does any Lua work:

1. `xds-ingress.auth-signin`, just before ext_authz. On the request it expands the route's templates (its
   `filter_context`: lists of `{text: ...}` and `{var: NAME}`) into dynamic metadata (namespace
   `xds-ingress.auth-signin`: `location`, `request_redirect`); ext_authz sends `request_redirect` as
   X-Auth-Request-Redirect (`%DYNAMIC_METADATA(...)%` in the route's authorization_request headers_to_add). On
   the response, a 401 that the request did not get past ext_authz with becomes the 302.
2. `xds-ingress.auth-signin-authorized`, just after ext_authz: marks the request `authorized` in the same
   namespace. A request ext_authz refuses never reaches it (a filter's local reply only passes the encoders
   before it), so "401 and no mark" is the authorization service's 401, never an upstream's.

The scripts are constants of this module: no annotation text ever becomes Lua code; per-route data reaches the
script as data (filter_context), and only the variable names of translate/signin.py's VARIABLES are looked up.
"""

from __future__ import annotations

from envoy.extensions.filters.http.lua.v3 import lua_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2, struct_pb2

from xds_ingress import ir
from xds_ingress.translate import signin as tmpl

SIGNIN = "xds-ingress.auth-signin"  # the filter before ext_authz; also the dynamic metadata namespace
AUTHORIZED = "xds-ingress.auth-signin-authorized"  # the mark after ext_authz

# Envoy's header formatter reads dynamic metadata set by the script before ext_authz builds its request.
REQUEST_REDIRECT_FROM_SCRIPT = f"%DYNAMIC_METADATA({SIGNIN}:request_redirect)%"

SIGNIN_SCRIPT = r"""-- xds-ingress: ingress-nginx's auth-signin and auth-request-redirect (envoy/signin.py). Constant code.
local NS = "xds-ingress.auth-signin"
local BODY = "<html>\r\n<head><title>302 Found</title></head>\r\n<body>\r\n" ..
  "<center><h1>302 Found</h1></center>\r\n</body>\r\n</html>\r\n"

-- nginx's $escaped_request_uri: every byte but A-Z a-z 0-9 ! $ ' ( ) * , - . @ _ ` | ~ as %XX
local function escape(s)
  return (string.gsub(s, "[^A-Za-z0-9!$'()*,%-.@_`|~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

-- nginx's $host: the Host header in lower case, without its port
local function host_of(authority)
  local a = string.lower(authority)
  if string.sub(a, 1, 1) == "[" then
    local e = string.find(a, "]", 1, true)
    if e then return string.sub(a, 1, e) end
    return a
  end
  return (string.gsub(a, ":%d*$", ""))
end

local function expand(parts, vars)
  if parts == nil then return nil end
  local out = {}
  for _, p in ipairs(parts) do
    if p["text"] ~= nil then
      out[#out + 1] = p["text"]
    else
      out[#out + 1] = vars[p["var"]] or ""
    end
  end
  return table.concat(out)
end

function envoy_on_request(handle)
  local ctx = handle:filterContext()
  local headers = handle:headers()
  local authority = headers:get(":authority") or ""
  local path = headers:get(":path") or ""
  local scheme = "http"
  if handle:streamInfo():downstreamSslConnection() ~= nil then scheme = "https" end
  local vars = {
    request_uri = path, escaped_request_uri = escape(path),
    http_host = authority, best_http_host = authority, host = host_of(authority),
    scheme = scheme, pass_access_scheme = headers:get("x-forwarded-proto") or scheme,
  }
  local metadata = handle:streamInfo():dynamicMetadata()
  local location = expand(ctx:get("signin"), vars)
  if location ~= nil then metadata:set(NS, "location", location) end
  local redirect = expand(ctx:get("request_redirect"), vars)
  if redirect ~= nil then metadata:set(NS, "request_redirect", redirect) end
end

function envoy_on_response(handle)
  local headers = handle:headers()
  if headers:get(":status") ~= "401" then return end
  local state = handle:streamInfo():dynamicMetadata():get(NS)
  if state == nil or state["location"] == nil or state["authorized"] then return end
  -- the authorization service's 401: a redirect to sign in (its Set-Cookie kept, as nginx's)
  for _, name in ipairs({"www-authenticate", "location", "content-type", "content-length"}) do
    headers:remove(name)
  end
  headers:replace(":status", "302")
  headers:replace("location", state["location"])
  headers:replace("content-type", "text/html")
  handle:body(true):setBytes(BODY)
end
"""

AUTHORIZED_SCRIPT = """-- xds-ingress: the request got past ext_authz (envoy/signin.py). Constant code.
function envoy_on_request(handle)
  handle:streamInfo():dynamicMetadata():set("xds-ingress.auth-signin", "authorized", true)
end
"""

# Of an authorization service's refusal, the headers a route with a sign-in URL passes to the client (Envoy adds
# WWW-Authenticate and Location itself; the script removes them from a 401 it redirects).
CLIENT_HEADERS_ON_DENIAL = ("content-type", "set-cookie")


def _pack(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg, deterministic=True)
    return a


def _lua(name: str, script: str, stat_prefix: str) -> hcm_pb2.HttpFilter:
    cfg = lua_pb2.Lua(stat_prefix=stat_prefix)
    cfg.default_source_code.inline_string = script
    return hcm_pb2.HttpFilter(name=name, disabled=True, typed_config=_pack(cfg))


def signin_filter(lst: ir.Listener) -> hcm_pb2.HttpFilter | None:
    if lst.auth is None or not lst.auth.signin:
        return None
    return _lua(SIGNIN, SIGNIN_SCRIPT, "auth_signin")


def authorized_filter(lst: ir.Listener) -> hcm_pb2.HttpFilter | None:
    if lst.auth is None or not lst.auth.signin:
        return None
    return _lua(AUTHORIZED, AUTHORIZED_SCRIPT, "auth_signin_authorized")


# --- per route -------------------------------------------------------------------------------------------

def request_redirect_header(e: ir.ExternalAuth) -> str | None:
    """The value (an Envoy header formatter) of the X-Auth-Request-Redirect an HTTP service is sent, or None."""
    if not e.request_redirect:
        return None
    return tmpl.formatter(e.request_redirect) or REQUEST_REDIRECT_FROM_SCRIPT


def _template(parts: ir.Template) -> struct_pb2.Value:
    v = struct_pb2.Value()
    for kind, value in parts:
        v.list_value.values.add().struct_value.fields[kind].string_value = value
    return v


def route_config(e: ir.ExternalAuth, cfg) -> None:
    """Switch the Lua filters on for a route that needs them (`cfg`: its typed_per_filter_config)."""
    if not tmpl.needs_script(e):
        return
    per = lua_pb2.LuaPerRoute()
    if e.signin:
        per.filter_context.fields["signin"].CopyFrom(_template(e.signin))
    if e.request_redirect and tmpl.formatter(e.request_redirect) is None:
        per.filter_context.fields["request_redirect"].CopyFrom(_template(e.request_redirect))
    cfg[SIGNIN].CopyFrom(_pack(per))
    cfg[AUTHORIZED].CopyFrom(_pack(lua_pb2.LuaPerRoute()))  # on, with the script as it is
