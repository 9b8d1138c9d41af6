"""Strict parsers for annotation values: text in, a typed value out, or `Invalid` saying what is accepted.

Every annotation value is untrusted input. Each parser allow-lists its syntax and bounds its
size, so that nothing a user writes can make Envoy reject the configuration (a NACK stops
every change for every Ingress) or be read by Envoy as anything but the literal value it is.
Parsers are small pure functions; `Invalid.accepted` is the part of a diagnostic that tells
the user what to write instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "Invalid", "Parser", "MAX_REGEX_LENGTH", "MAX_RE2_PROGRAM_SIZE",
    "boolean", "duration", "integer", "percent", "one_of", "list_of", "status_codes", "header_name",
    "header_names", "header_lines", "grpc_service", "url_path", "regex", "regex_substitution", "host_port", "dns_name",
    "redirect_url", "service_port", "secret_name", "text", "hash_by", "cookie_name", "header_value",
    "re2_program_size", "regex_groups",
    "rate", "rate_limit_key", "rate_limit_descriptor", "cidr", "source_ranges", "origins", "http_methods",
    "whole_seconds",
    "re2_program_size", "regex_groups", "tls_version", "cipher_suites", "alpn", "hsts_max_age", "own_secret_name",
    "TLS12_CIPHER_SUITES", "byte_size", "MAX_REQUEST_BODY_BYTES", "same_site",
]

Parser = Callable[[str], Any]


class Invalid(ValueError):
    """A value that is not accepted; `accepted` says what is (a sentence fragment, no final period)."""

    def __init__(self, accepted: str) -> None:
        super().__init__(accepted)
        self.accepted = accepted


def _short(value: str, limit: int = 60) -> str:
    """The value quoted for a message: as written, or as a Python literal when it has control characters."""
    text = f"'{value}'" if value.isprintable() and "'" not in value else repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


# --- scalars ---------------------------------------------------------------------------------

def boolean(value: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "false"):
        return v == "true"
    raise Invalid('"true" or "false"')


_DURATION_PART = re.compile(r"(\d{1,9})(ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def duration(*, min_ms: int = 0, max_ms: int = 24 * 3_600_000, zero: bool = True) -> Parser:
    """Whole numbers with a unit, largest first (`250ms`, `5s`, `1m30s`, `2h`); `0` when `zero` is allowed."""
    limits = f"from {_fmt_ms(max(min_ms, 1))} to {_fmt_ms(max_ms)}"
    accepted = (f"a duration {limits} written as whole numbers with units h, m, s, ms (e.g. '5s', '250ms', "
                f"'1m30s'){', or 0 for none' if zero else ''}")

    def parse(value: str) -> int:
        v = value.strip()
        if v == "0":
            if zero:
                return 0
            raise Invalid(accepted)
        pos, total, last_rank = 0, 0, -1
        rank = {"h": 0, "m": 1, "s": 2, "ms": 3}
        while pos < len(v):
            m = _DURATION_PART.match(v, pos)
            if m is None or rank[m[2]] <= last_rank:
                raise Invalid(accepted)
            last_rank = rank[m[2]]
            total += int(m[1]) * _UNIT_MS[m[2]]
            pos = m.end()
        if not v or not (max(min_ms, 1) <= total <= max_ms):
            raise Invalid(accepted)
        return total

    return parse


def _fmt_ms(ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def integer(lo: int, hi: int) -> Parser:
    accepted = f"a whole number from {lo} to {hi}"

    def parse(value: str) -> int:
        v = value.strip()
        if not re.fullmatch(r"-?\d{1,10}", v) or not lo <= int(v) <= hi:
            raise Invalid(accepted)
        return int(v)

    return parse


percent = integer(0, 100)


def one_of(*choices: str) -> Parser:
    accepted = "one of " + ", ".join(choices)

    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in choices:
            raise Invalid(accepted)
        return v

    return parse


def list_of(item: Parser, *, what: str, max_items: int = 16) -> Parser:
    """A comma-separated list (spaces allowed), no duplicates, at most `max_items`."""
    accepted = f"a comma-separated list of at most {max_items} {what}"

    def parse(value: str) -> tuple:
        parts = [p.strip() for p in value.split(",")]
        if not value.strip() or any(not p for p in parts) or len(parts) > max_items:
            raise Invalid(accepted)
        out = []
        for p in parts:
            try:
                v = item(p)
            except Invalid as exc:
                raise Invalid(f"{accepted}; {_short(p)} is not: use {exc.accepted}") from None
            if v in out:
                raise Invalid(f"{accepted}, each once ({_short(p)} is repeated)")
            out.append(v)
        return tuple(out)

    return parse


status_codes = list_of(integer(100, 599), what="HTTP status codes (100-599)")


# --- headers ---------------------------------------------------------------------------------

# RFC 7230 token characters.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]{1,128}")
# Hop-by-hop and message-framing headers: changing them breaks HTTP or smuggles requests.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
                         "trailer", "content-length", "http2-settings"})
MAX_HEADER_VALUE_LENGTH = 1024
MAX_HEADERS = 32


def header_name(value: str, *, request: bool = True) -> str:
    """A header name to set or remove: an RFC 7230 token, lowercased; never a pseudo-header, Host,
    a hop-by-hop header, or (on requests) Envoy's own x-envoy-* control headers."""
    name = value.strip().lower()
    accepted = ("a header name (an RFC 7230 token of at most 128 characters) other than a pseudo-header (':path'), "
                "host (see rewrite-host), " + ("x-envoy-*, " if request else "") + "and the hop-by-hop headers "
                + ", ".join(sorted(_HOP_BY_HOP)))
    if not _TOKEN.fullmatch(name) or name == "host" or name in _HOP_BY_HOP:
        raise Invalid(accepted)
    if request and name.startswith("x-envoy-"):
        raise Invalid(accepted)
    return name


def header_value(value: str) -> str:
    """Printable text (tabs allowed), no CR, LF or NUL, at most 1024 characters; outer spaces trimmed."""
    v = value.strip(" \t")
    if len(v) > MAX_HEADER_VALUE_LENGTH or any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in v):
        raise Invalid(f"a header value of printable characters, at most {MAX_HEADER_VALUE_LENGTH} long, "
                      "without control characters")
    return v


def header_names(*, request: bool) -> Parser:
    item = (lambda v: header_name(v, request=request))
    return list_of(item, what="header names", max_items=MAX_HEADERS)


def header_lines(*, request: bool) -> Parser:
    """One `name: value` per line (a YAML block scalar for several); a name at most once."""
    accepted = (f"one 'name: value' per line, at most {MAX_HEADERS} lines (use a YAML block scalar '|' for "
                "several), each name once")

    def parse(value: str) -> tuple[tuple[str, str], ...]:
        lines = [ln for ln in value.split("\n") if ln.strip()]
        if not lines or len(lines) > MAX_HEADERS:
            raise Invalid(accepted)
        out: list[tuple[str, str]] = []
        for ln in lines:
            name, sep, val = ln.partition(":")
            if not sep:
                raise Invalid(f"{accepted}; {_short(ln)} has no ':'")
            try:
                n = header_name(name, request=request)
                v = header_value(val)
            except Invalid as exc:
                raise Invalid(f"{accepted}; in {_short(ln)} use {exc.accepted}") from None
            if any(n == k for k, _ in out):
                raise Invalid(f"{accepted} ({n!r} is repeated)")
            out.append((n, v))
        return tuple(out)

    return parse


def cookie_name(value: str) -> str:
    v = value.strip()
    if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]{1,32}", v):
        raise Invalid("a cookie name (letters, digits and !#$%&'*+-.^_`|~, at most 32 characters)")
    return v


# --- paths, hosts, URLs ----------------------------------------------------------------------

MAX_PATH_LENGTH = 1024
# RFC 3986 path characters (pchar and "/"), percent-escapes included.
_PATH = re.compile(r"/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def url_path(value: str) -> str:
    v = value.strip()
    if len(v) > MAX_PATH_LENGTH or not _PATH.fullmatch(v) or _PCT.search(v) or "//" in v or \
            any(seg in (".", "..") for seg in v.split("/")):
        raise Invalid(f"a URL path starting with '/' (at most {MAX_PATH_LENGTH} characters of letters, digits and "
                      "-._~!$&'()*+,;=:@/ or %XX escapes; no '//', '.' or '..' segments, no query)")
    return v


_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")


def dns_name(value: str) -> str:
    """A DNS name (lowercase letters, digits, '-' and '.'), not an IP address."""
    v = value.strip().lower().rstrip(".")
    accepted = "a DNS name (lowercase letters, digits, '-' and '.', at most 253 characters)"
    if len(v) > 253 or not _DNS_NAME.fullmatch(v):
        raise Invalid(accepted)
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return v
    raise Invalid(accepted)


def grpc_service(value: str) -> str:
    """A fully qualified protobuf service name (case kept), as the gRPC health service is asked for."""
    v = value.strip()
    if len(v) > 200 or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", v):
        raise Invalid("a gRPC service name such as 'echo.v1.Echo' (letters, digits and '_' in dot-separated parts, "
                      "at most 200 characters)")
    return v


def host_port(value: str) -> str:
    """A host for the Host header: a DNS name or IP address, with an optional :port."""
    v = value.strip().lower()
    accepted = "a host name or IP address with an optional :port (e.g. 'api.internal' or 'api.internal:8080')"
    host, port = v, ""
    if v.startswith("["):
        end = v.find("]")
        if end == -1:
            raise Invalid(accepted)
        host, rest = v[1:end], v[end + 1:]
        if rest and not rest.startswith(":"):
            raise Invalid(accepted)
        port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise Invalid(accepted) from None
    else:
        if v.count(":") == 1:
            host, _, port = v.partition(":")
        if not (len(host) <= 253 and _DNS_NAME.fullmatch(host)):
            raise Invalid(accepted)
    if port and not (port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535):
        raise Invalid(accepted)
    return v


def redirect_url(value: str) -> tuple[str, str, int | None, str | None]:
    """(scheme, host, port or None, path with query or None) of an absolute http(s) URL."""
    v = value.strip()
    accepted = ("an absolute URL 'http(s)://host[:port][/path][?query]' without user info or fragment, at most "
                f"{MAX_PATH_LENGTH} characters")
    if len(v) > MAX_PATH_LENGTH or any(ord(c) <= 32 or ord(c) >= 127 for c in v) or "\\" in v:
        raise Invalid(accepted)
    try:
        u = urlsplit(v)
        port = u.port
    except ValueError:
        raise Invalid(accepted) from None
    if u.scheme not in ("http", "https") or not u.hostname or u.username is not None or u.password is not None \
            or u.fragment or "#" in v:
        raise Invalid(accepted)
    host = u.hostname.lower()
    try:
        ip = ipaddress.ip_address(host)
        host = f"[{ip}]" if ip.version == 6 else str(ip)
    except ValueError:
        if len(host) > 253 or not _DNS_NAME.fullmatch(host):
            raise Invalid(accepted) from None
    path = u.path or None
    if path is not None:
        try:
            path = url_path(path)
        except Invalid:
            raise Invalid(accepted) from None
    if u.query:
        if not re.fullmatch(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*", u.query) or _PCT.search(u.query):
            raise Invalid(accepted)
        path = (path or "/") + "?" + u.query
    if port is not None and not 1 <= port <= 65535:
        raise Invalid(accepted)
    return u.scheme, host, port, path


_SVC = re.compile(r"([a-z]([-a-z0-9]{0,61}[a-z0-9])?):(\d{1,5}|[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?)")


def service_port(value: str) -> tuple[str, int | str]:
    """'name:port' of a Service in the same namespace; the port by number or name."""
    v = value.strip()
    m = _SVC.fullmatch(v)
    if m is None or (m[3].isdigit() and not 1 <= int(m[3]) <= 65535):
        raise Invalid("'service:port' naming a Service in the same namespace and one of its ports by number "
                      "or name (e.g. 'shadow:80')")
    return m[1], int(m[3]) if m[3].isdigit() else m[3]


def secret_name(value: str) -> str:
    v = value.strip()
    if len(v) > 253 or not _DNS_NAME.fullmatch(v):
        raise Invalid("the name of a Secret in the same namespace (a DNS subdomain name)")
    return v


def text(max_bytes: int) -> Parser:
    def parse(value: str) -> str:
        if len(value.encode("utf-8")) > max_bytes or "\x00" in value:
            raise Invalid(f"text of at most {max_bytes} bytes (UTF-8) without NUL characters")
        return value

    return parse


def hash_by(value: str) -> tuple[str, str]:
    """('header', name) | ('cookie', name) | ('source_ip', '')."""
    v = value.strip()
    kind, sep, name = v.partition(":")
    kind = kind.strip().lower()
    accepted = "'header:NAME', 'cookie:NAME' or 'source-ip'"
    if kind == "source-ip" and not sep:
        return "source_ip", ""
    try:
        if kind == "header" and sep:
            return "header", header_name(name, request=False)
        if kind == "cookie" and sep:
            return "cookie", cookie_name(name)
    except Invalid as exc:
        raise Invalid(f"{accepted}, with NAME {exc.accepted}") from None
    raise Invalid(accepted)


# --- regular expressions ---------------------------------------------------------------------

MAX_REGEX_LENGTH = 256
# Envoy's google_re2 engine rejects programs larger than this (runtime key
# re2.max_program_size.error_level, default 100): such a regex would be a NACK.
MAX_RE2_PROGRAM_SIZE = 100

# The subset accepted: the syntax on which RE2 and Python's re agree. Everything is allow-listed
# token by token; what is not listed (lookaround, backreferences, possessive and atomic groups,
# conditionals, inline flags, \Z, \z, \A, \G, \p{..}, named groups other than (?P<name>) is refused.
_RE_TOKEN = re.compile(r"""
    \\[dDwWsSbB]                 # classes and word boundaries
  | \\[.\-/\\^$|?*+()\[\]{}]     # escaped metacharacters
  | \\[nrt]                      # escaped whitespace
  | \(\?:                        # non-capturing group
  | \(\?P<[A-Za-z_][A-Za-z0-9_]{0,31}>  # named group
  | \((?!\?)                     # capturing group
  | \)
  | \{\d{1,3}(,\d{0,3})?\}\??    # counted repetition (RE2: at most 1000)
  | [*+?]\??                     # repetition, lazy or greedy
  | [|^$.]
  | \[\^?\]?(?:\\[dDwWsSnrt.\-/\\^$|?*+()\[\]{}]|[^\\\]\[])*\]   # a character class, no nested [ and no [:alpha:]
  | [A-Za-z0-9 !"\#%&',\-/:;<=>@_`~]   # literal characters
""", re.VERBOSE)


def re2_program_size(pattern: str) -> int | None:
    """RE2's program size of `pattern` (what Envoy checks), None when RE2 does not compile it."""
    import re2  # google-re2: the engine Envoy uses, so its verdict and size are Envoy's

    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options).programsize
    except Exception:  # noqa: BLE001 - re2 raises its own error type for a bad pattern
        return None


def regex_groups(pattern: str) -> int:
    return re.compile(pattern).groups


def regex(value: str) -> str:
    """An RE2 regex in the subset RE2 and Python read alike, compiling within Envoy's program size limit."""
    v = value.strip()
    accepted = (f"a regular expression of at most {MAX_REGEX_LENGTH} characters in the subset RE2 and Python agree "
                "on (no lookaround, backreferences, inline flags, \\A \\Z \\z or POSIX classes; repetition counts "
                f"at most 1000) whose RE2 program size is at most {MAX_RE2_PROGRAM_SIZE} (Envoy's limit)")
    if not v or len(v) > MAX_REGEX_LENGTH:
        raise Invalid(accepted)
    pos = 0
    while pos < len(v):
        m = _RE_TOKEN.match(v, pos)
        if m is None:
            raise Invalid(f"{accepted}; {_short(v[pos:pos + 12])} is not accepted")
        tok = m[0]
        if tok.startswith("{"):
            nums = [int(n) for n in re.findall(r"\d+", tok)]
            if any(n > 1000 for n in nums) or (len(nums) == 2 and nums[1] < nums[0]):
                raise Invalid(accepted)
        pos = m.end()
    try:
        re.compile(v)
    except re.error:
        raise Invalid(accepted) from None
    size = re2_program_size(v)
    if size is None:
        raise Invalid(f"{accepted}; RE2 does not compile it")
    if size > MAX_RE2_PROGRAM_SIZE:
        raise Invalid(f"{accepted}; its program size is {size}")
    return v


def regex_substitution(value: str) -> str:
    """A rewrite: path characters and \\0-\\9 group references."""
    v = value.strip()
    if len(v) > MAX_PATH_LENGTH or not re.fullmatch(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/%?]|\\[0-9])*", v) or \
            not (v.startswith("/") or v.startswith("\\")):
        raise Invalid("a replacement path: starting with '/' or a group reference \\0-\\9, of URL path characters "
                      f"and \\0-\\9 references, at most {MAX_PATH_LENGTH} characters")
    return v


# --- edge policies: rate limits, client address ranges, CORS ----------------------------------

_RATE = re.compile(r"(\d{1,7})\s*/\s*(s|m|h)")
RATE_UNITS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000}
MAX_RATE = 1_000_000


def rate(value: str) -> tuple[int, str]:
    """'N/s', 'N/m' or 'N/h': (N, unit), N from 1 to 1,000,000 requests."""
    m = _RATE.fullmatch(value.strip())
    if m is None or not 1 <= int(m[1]) <= MAX_RATE:
        raise Invalid(f"requests per unit as 'N/s', 'N/m' or 'N/h' (e.g. '100/s', '6000/m'), N from 1 to {MAX_RATE:,}")
    return int(m[1]), m[2]


def rate_limit_key(value: str) -> tuple[str, str]:
    """('client_ip', '') | ('header', name): what a local rate limit keeps one bucket per value of."""
    v = value.strip()
    kind, sep, name = v.partition(":")
    kind = kind.strip().lower()
    accepted = "'client-ip' or 'header:NAME'"
    if kind == "client-ip" and not sep:
        return "client_ip", ""
    if kind == "header" and sep:
        try:
            return "header", header_name(name, request=False)
        except Invalid as exc:
            raise Invalid(f"{accepted}, with NAME {exc.accepted}") from None
    raise Invalid(accepted)


_GENERIC_VALUE = re.compile(r"[A-Za-z0-9._\-]{1,64}")


def _descriptor_entry(value: str) -> tuple[str, str]:
    kind, sep, name = value.partition(":")
    kind = kind.strip().lower()
    if kind == "client-ip" and not sep:
        return "client_ip", ""
    if kind == "header" and sep:
        return "header", header_name(name, request=False)
    if kind == "generic" and sep and _GENERIC_VALUE.fullmatch(name.strip()):
        return "generic", name.strip()
    raise Invalid("'client-ip', 'header:NAME' or 'generic:VALUE' (VALUE: letters, digits and ._-, at most 64)")


rate_limit_descriptor = list_of(_descriptor_entry, what="descriptor entries ('client-ip', 'header:NAME', "
                                                        "'generic:VALUE'), in the order the service reads them",
                                max_items=8)

MAX_SOURCE_RANGES = 64
_CIDR_TEXT = re.compile(r"[0-9A-Fa-f:.]{2,45}(/\d{1,3})?")


def cidr(value: str) -> str:
    """An IPv4 or IPv6 network in CIDR form with its host bits zero ('10.0.0.0/8'); an address alone is /32
    or /128. Returned in Python's normal form."""
    v = value.strip()
    accepted = "an IPv4 or IPv6 CIDR range such as '10.0.0.0/8' or '2001:db8::/32'"
    if not _CIDR_TEXT.fullmatch(v):
        raise Invalid(accepted)
    try:
        net = ipaddress.ip_network(v, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise Invalid(accepted) from None
        raise Invalid(f"the network form {loose} (the bits after the prefix length must be zero)") from None
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(ipaddress.IPv6Network("::ffff:0:0/96")):
        # Envoy reports an IPv4 client as an IPv4 address, even on a dual-stack listener.
        raise Invalid("the IPv4 form of an IPv4-mapped IPv6 range (Envoy sees IPv4 clients as IPv4 addresses)")
    return str(net)


source_ranges = list_of(cidr, what="CIDR ranges", max_items=MAX_SOURCE_RANGES)

MAX_ORIGINS = 32
_ORIGIN = re.compile(r"(https?)://([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
                     r"|\[[0-9a-f:.]+\])(:\d{1,5})?")
_ORIGINS_ACCEPTED = (f"a comma-separated list of at most {MAX_ORIGINS} origins: 'scheme://host[:port]' (http or https, "
                     "no path), 'regex:RE' (an RE2 regex matching the whole Origin header) or '*' (any origin)")


def _split_origins(value: str) -> list[str]:
    """Split at commas, except inside a regex's (), [] and {} (a regex may hold '{1,3}')."""
    items, cur, depth, in_class, esc = [], [], 0, False, False
    for ch in value:
        if esc:
            esc = False
        elif ch == "\\":
            esc = True
        elif in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch in "({":
            depth += 1
        elif ch in ")}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    items.append("".join(cur))
    return [i.strip() for i in items]


def origins(value: str) -> tuple[tuple[str, str], ...]:
    """(('exact', origin) | ('regex', RE) | ('any', ''), ...)."""
    parts = _split_origins(value)
    if not value.strip() or any(not p for p in parts) or len(parts) > MAX_ORIGINS:
        raise Invalid(_ORIGINS_ACCEPTED)
    out: list[tuple[str, str]] = []
    for part in parts:
        if part == "*":
            item = ("any", "")
        elif part.lower().startswith("regex:"):
            try:
                item = ("regex", regex(part[len("regex:"):]))
            except Invalid as exc:
                raise Invalid(f"{_ORIGINS_ACCEPTED}; {_short(part)} is not: use {exc.accepted}") from None
        else:
            origin = part.lower().rstrip("/")
            m = _ORIGIN.fullmatch(origin)
            port = m[6] if m else None
            if m is None or (port is not None and not 1 <= int(port[1:]) <= 65535):
                raise Invalid(f"{_ORIGINS_ACCEPTED}; {_short(part)} is not one")
            if m[2].startswith("["):
                try:
                    ipaddress.IPv6Address(m[2][1:-1])
                except ValueError:
                    raise Invalid(f"{_ORIGINS_ACCEPTED}; {_short(part)} is not one") from None
            default = {"http": ":80", "https": ":443"}[m[1]]
            if port == default:  # a browser's Origin leaves the scheme's default port out
                origin = origin[: -len(default)]
            item = ("exact", origin)
        if item in out:
            raise Invalid(f"{_ORIGINS_ACCEPTED}, each once ({_short(part)} is repeated)")
        out.append(item)
    if ("any", "") in out and len(out) > 1:
        raise Invalid(f"{_ORIGINS_ACCEPTED}; '*' already allows every origin, so list nothing else with it")
    return tuple(out)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def http_method(value: str) -> str:
    v = value.strip().upper()
    if v not in HTTP_METHODS:
        raise Invalid("one of " + ", ".join(HTTP_METHODS))
    return v


http_methods = list_of(http_method, what="HTTP methods")


def whole_seconds(*, max_s: int) -> Parser:
    """A duration of whole seconds (e.g. '10m', '3600s'), 0 allowed."""
    parse_ms = duration(max_ms=max_s * 1000)

    def parse(value: str) -> int:
        try:
            ms = parse_ms(value)
        except Invalid as exc:
            raise Invalid(f"{exc.accepted}, in whole seconds") from None
        if ms % 1000:
            raise Invalid(f"a duration in whole seconds, at most {_fmt_ms(max_s * 1000)} (e.g. '10m', '3600s')")
        return ms // 1000

    return parse
# --- edge TLS --------------------------------------------------------------------------------

# The TLS 1.2 cipher suites a client may be offered: Envoy's own default server list (forward secret, AEAD).
# Others that BoringSSL knows (CBC, static RSA key exchange, 3DES) are refused. TLS 1.3 suites are not
# configurable in BoringSSL.
TLS12_CIPHER_SUITES = ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-AES128-GCM-SHA256",
                       "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384")
MAX_HSTS_MAX_AGE_S = 2 * 365 * 86400


def tls_version(value: str) -> str:
    v = value.strip()
    if v not in ("1.2", "1.3"):
        raise Invalid("1.2 or 1.3 (TLS 1.0 and 1.1 are deprecated, RFC 8996, and never offered)")
    return v


def cipher_suites(value: str) -> tuple[str, ...]:
    """TLS 1.2 cipher suites in order of preference, from TLS12_CIPHER_SUITES (BoringSSL's names)."""
    accepted = ("a comma-separated list of TLS 1.2 cipher suites in order of preference, each once, from "
                + ", ".join(TLS12_CIPHER_SUITES))
    parts = [x.strip().upper() for x in value.split(",")]
    if not value.strip() or any(x not in TLS12_CIPHER_SUITES for x in parts) or len(set(parts)) != len(parts):
        raise Invalid(accepted)
    return tuple(parts)


def alpn(value: str) -> tuple[str, ...]:
    """The application protocols offered in TLS ALPN, in order of preference; http/1.1 always among them."""
    parts = [x.strip().lower() for x in value.split(",")]
    if any(x not in ("h2", "http/1.1") for x in parts) or len(set(parts)) != len(parts) or "http/1.1" not in parts:
        raise Invalid("'h2,http/1.1' (the default), 'http/1.1,h2' or 'http/1.1' (no HTTP/2)")
    return tuple(parts)


def hsts_max_age(value: str) -> int:
    """HSTS max-age in seconds: a number of seconds (31536000) or a duration in whole seconds (8760h)."""
    v = value.strip()
    accepted = (f"a max-age from 0 to {MAX_HSTS_MAX_AGE_S} seconds (two years): seconds ('31536000') or a duration "
                "in whole seconds ('8760h', '30m'); 0 tells browsers to forget the policy")
    if re.fullmatch(r"\d{1,10}", v):
        seconds = int(v)
    else:
        try:
            ms = duration(max_ms=MAX_HSTS_MAX_AGE_S * 1000)(v)
        except Invalid:
            raise Invalid(accepted) from None
        if ms % 1000:
            raise Invalid(accepted)
        seconds = ms // 1000
    if seconds > MAX_HSTS_MAX_AGE_S:
        raise Invalid(accepted)
    return seconds


def own_secret_name(value: str) -> str:
    """The name of a Secret of the object's own namespace; a 'namespace/name' reference is refused."""
    v = value.strip()
    if "/" in v:
        raise Invalid("the name of a Secret of this object's own namespace (a Secret of another namespace is never "
                      "read: copy it into this namespace)")
    return secret_name(v)


# --- request bodies, cookies -----------------------------------------------------------------

# Envoy buffers a body it limits (its buffer filter) in memory before the request goes upstream: so limits are
# bounded, or a few large requests in flight would take the proxy's memory.
MAX_REQUEST_BODY_BYTES = 64 * 1024 * 1024
_SIZE = re.compile(r"(\d{1,11})(Ki|Mi|Gi)?")
_SIZE_UNITS = {None: 1, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3}


def byte_size(*, max_bytes: int) -> Parser:
    """A size in bytes ('1048576') or with a binary suffix ('512Ki', '8Mi'), from 1 byte to `max_bytes`."""
    accepted = f"a size from 1 byte to {max_bytes // (1024 * 1024)}Mi: bytes ('1048576') or Ki, Mi ('512Ki', '8Mi')"

    def parse(value: str) -> int:
        m = _SIZE.fullmatch(value.strip())
        if m is None:
            raise Invalid(accepted)
        n = int(m[1]) * _SIZE_UNITS[m[2]]
        if not 1 <= n <= max_bytes:
            raise Invalid(accepted)
        return n

    return parse


def same_site(value: str) -> str:
    """A cookie's SameSite attribute: Strict, Lax or None (as browsers write it)."""
    v = value.strip().lower()
    if v not in ("strict", "lax", "none"):
        raise Invalid("Strict, Lax or None")
    return v.capitalize()
