"""The JSON Schema pieces of the API (``/api/v1/``) and the one validator of request
bodies and query strings.  The OpenAPI document is made of these, so what is checked
is what is documented.

Only the part of JSON Schema the API uses is understood: ``type`` (one or a list),
``properties``, ``required``, ``additionalProperties`` (false or a schema), ``items``,
``enum``, ``minLength``/``maxLength``, ``minimum``/``maximum``, ``maxItems``,
``minProperties``.  An
error names the field (``aliases[2]``, ``template.mailboxes``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SchemaError", "validate", "S", "ERROR", "PAGE"]


class SchemaError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_TYPES: dict[str, Any] = {"string": str, "boolean": bool, "object": dict, "array": list, "null": type(None)}


def _is(value: Any, t: str) -> bool:
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[t])


def validate(value: Any, schema: dict[str, Any], field: str = "body") -> None:
    """Raise ``SchemaError`` naming the first field that does not match ``schema``."""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is(value, t) for t in names):
            raise SchemaError(field, f"expected {' or '.join(names)}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(field, f"expected one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        # JSON may carry U+0000 and lone surrogates: PostgreSQL stores no NUL in TEXT,
        # and neither engine encodes half a surrogate pair.
        if "\x00" in value:
            raise SchemaError(field, "contains U+0000")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SchemaError(field, "not valid Unicode (a lone surrogate)") from None
        if len(value) < schema.get("minLength", 0):
            raise SchemaError(field, "empty" if not value else "too short")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise SchemaError(field, f"longer than {schema['maxLength']} characters")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(field, f"less than {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(field, f"more than {schema['maximum']}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise SchemaError(field, f"more than {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                validate(item, schema["items"], f"{field}[{i}]")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        prefix = "" if field == "body" else f"{field}."
        if len(value) < schema.get("minProperties", 0):
            raise SchemaError(field, "nothing given")
        for name in schema.get("required", []):
            if name not in value:
                raise SchemaError(prefix + name, "required")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in props:
                validate(item, props[name], prefix + name)
            elif extra is False:
                raise SchemaError(prefix + name, "unknown field")
            elif isinstance(extra, dict):
                validate(item, extra, prefix + name)


# -- the schemas ------------------------------------------------------------------------

_STR = {"type": "string", "minLength": 1, "maxLength": 1024}
_STRS = {"type": "array", "items": _STR, "maxItems": 1000}
_ADDRESS = {"type": "string", "minLength": 1, "maxLength": 320}

ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "field": {"type": "string"},
                       "lines": {"type": "array", "items": {
                           "type": "object", "required": ["line", "reason", "text"],
                           "properties": {"line": {"type": "integer"}, "reason": {"type": "string"},
                                          "text": {"type": "string"}}}}}}},
}


def PAGE(item: dict[str, Any]) -> dict[str, Any]:
    """A page of a list: ``items`` and where it is in the whole."""
    return {"type": "object", "required": ["items", "total", "limit", "offset"],
            "properties": {"items": {"type": "array", "items": item}, "total": {"type": "integer"},
                           "limit": {"type": "integer"}, "offset": {"type": "integer"}}}


class S:
    """Named schemas (``components/schemas`` of the document)."""

    Domain = {"type": "object", "required": ["name", "main", "aliases", "ips", "mail_to_unknown", "objects"],
              "properties": {"name": {"type": "string"}, "main": {"type": "boolean"},
                             "aliases": {"type": "array", "items": {"type": "string"}},
                             "ips": {"type": "array", "items": {"type": "string"}},
                             "mail_to_unknown": {"type": "string"}, "objects": {"type": "integer"},
                             "settings": {"type": "object"}}}
    DomainAdd = {"type": "object", "required": ["name"], "additionalProperties": False,
                 "properties": {"name": _STR, "aliases": _STRS, "ips": _STRS}}
    DomainSet = {"type": "object", "additionalProperties": False, "minProperties": 1,
                 "properties": {"aliases": _STRS, "ips": _STRS, "mail_to_unknown": _STR,
                                "send_as": {"type": "string", "enum": ["own", "domain", "any"]},
                                "dmarc_reject": {"type": ["string", "null"], "enum": ["reject", "junk", None]},
                                "quota_storage": {"type": ["integer", "string", "null"], "minimum": 0,
                                                  "maxLength": 16},
                                "quota_messages": {"type": ["integer", "string", "null"], "minimum": 0,
                                                   "maxLength": 16}}}
    Template = {"type": "object", "additionalProperties": False,
                "properties": {"mailboxes": _STRS, "subscriptions": _STRS,
                               "aliases": {"type": "object", "additionalProperties": _STR}}}
    Object = {"type": "object", "required": ["address", "kind", "created"],
              "properties": {"address": {"type": "string"}, "kind": {"type": "string"},
                             "created": {"type": "string"}, "real_name": {"type": "string"},
                             "enabled": {"type": "boolean"}, "has_password": {"type": "boolean"},
                             "forward": {"type": "string"}, "keep_copy": {"type": "boolean"},
                             "send_as": {"type": "array", "items": {"type": "string"}},
                             "rights": {"type": "array", "items": {"type": "string"}},
                             "admin_domains": {"type": "array", "items": {"type": "string"}},
                             "target": {"type": "string"},
                             "members": {"type": "array", "items": {"type": "string"}},
                             "shared": {"type": "boolean"}}}
    AccountAdd = {"type": "object", "required": ["address"], "additionalProperties": False,
                  "properties": {"address": _ADDRESS, "password": {"type": ["string", "null"], "minLength": 1,
                                                                   "maxLength": 1024},
                                 "real_name": {"type": "string", "maxLength": 1024},
                                 "force": {"type": "boolean"}}}
    AccountSet = {"type": "object", "additionalProperties": False, "minProperties": 1,
                  "properties": {"real_name": {"type": "string", "maxLength": 1024}, "enabled": {"type": "boolean"},
                                 "forward": {"type": ["string", "null"], "maxLength": 320},
                                 "keep_copy": {"type": ["boolean", "null"]},
                                 "rights": {"type": ["array", "null"], "items": {"type": "string",
                                            "enum": ["AllUsers", "CanAccessMailboxes"]}},
                                 "admin_domains": {"type": ["array", "null"], "items": _STR, "maxItems": 1000},
                                 "send_as": {"type": ["array", "null"], "items": _ADDRESS, "maxItems": 1000},
                                 "atrn_domains": {"type": ["array", "null"], "items": _STR, "maxItems": 1000},
                                 "quota_storage": {"type": ["integer", "string", "null"], "minimum": 0, "maxLength": 16},
                                 "quota_messages": {"type": ["integer", "string", "null"], "minimum": 0,
                                                    "maxLength": 16}}}
    Password = {"type": "object", "required": ["password"], "additionalProperties": False,
                "properties": {"password": {"type": "string", "minLength": 1, "maxLength": 1024},
                               "cram_md5": {"type": "boolean"}}}
    AliasAdd = {"type": "object", "required": ["address", "account"], "additionalProperties": False,
                "properties": {"address": _ADDRESS, "account": _ADDRESS}}
    ForwarderAdd = {"type": "object", "required": ["address", "target"], "additionalProperties": False,
                    "properties": {"address": _ADDRESS, "target": _ADDRESS}}
    ForwarderSet = {"type": "object", "required": ["target"], "additionalProperties": False,
                    "properties": {"target": _ADDRESS}}
    GroupAdd = {"type": "object", "required": ["address"], "additionalProperties": False,
                "properties": {"address": _ADDRESS, "members": {"type": "array", "items": _ADDRESS, "maxItems": 10000},
                               "real_name": {"type": "string", "maxLength": 1024}, "shared": {"type": "boolean"}}}
    GroupSet = {"type": "object", "additionalProperties": False,
                "properties": {"add": {"type": "array", "items": _ADDRESS, "maxItems": 10000},
                               "remove": {"type": "array", "items": _ADDRESS, "maxItems": 10000}}}
    Router = {"type": "object", "required": ["text", "version", "records"],
              "properties": {"text": {"type": "string"}, "version": {"type": "integer"},
                             "records": {"type": "array", "items": {
                                 "type": "object", "required": ["line", "prefix", "left", "right"],
                                 "properties": {"line": {"type": "integer"}, "prefix": {"type": "string"},
                                                "left": {"type": "string"}, "right": {"type": "string"}}}}}}
    RouterSet = {"type": "object", "required": ["text"], "additionalProperties": False,
                 "properties": {"text": {"type": "string", "maxLength": 8 * 1024 * 1024}}}
    RouteAsk = {"type": "object", "required": ["address"], "additionalProperties": False,
                "properties": {"address": _ADDRESS, "kind": {"type": "string", "enum": ["mail", "access", "http"]},
                               "client_ip": {"type": "string", "maxLength": 64},
                               "server_ip": {"type": "string", "maxLength": 64},
                               "authenticated": {"type": "string", "maxLength": 320}}}
    Route = {"type": "object", "required": ["input", "kind", "trace"],
             "properties": {"input": {"type": "string"}, "kind": {"type": "string"},
                            "trace": {"type": "array", "items": {"type": "string"}},
                            "account": {"type": ["string", "null"]}, "route": {"type": "object"},
                            "target": {"type": "string"},
                            "deliveries": {"type": "array", "items": {"type": "object"}}}}
    QueueEntry = {"type": "object",
                  "required": ["id", "sender", "size", "created", "recipients", "targets", "held", "attempts",
                               "next_attempt", "last_reply"],
                  "properties": {"id": {"type": "string"}, "sender": {"type": "string"}, "size": {"type": "integer"},
                                 "created": {"type": "number"},
                                 "recipients": {"type": "array", "items": {"type": "string"}},
                                 "targets": {"type": "array", "items": {"type": "string"}},
                                 "held": {"type": "boolean"}, "attempts": {"type": "integer"},
                                 "next_attempt": {"type": "number"}, "last_reply": {"type": "string"}}}
    QueueMessage = {"type": "object", "required": ["id", "sender", "size", "created", "recipients"],
                    "properties": {"id": {"type": "string"}, "sender": {"type": "string"},
                                   "size": {"type": "integer"}, "created": {"type": "number"},
                                   "params": {"type": "object"},
                                   "recipients": {"type": "array", "items": {
                                       "type": "object", "required": ["address", "target", "status", "held"],
                                       "properties": {"address": {"type": "string"}, "target": {"type": "string"},
                                                      "status": {"type": "string"}, "attempts": {"type": "integer"},
                                                      "next_attempt": {"type": "number"},
                                                      "last_reply": {"type": "string"},
                                                      "held": {"type": "boolean"}}}}}}
    QueueFlush = {"type": "object", "additionalProperties": False,
                  "properties": {"domain": _STR, "target": _STR, "sender": {"type": "string", "maxLength": 320},
                                 "recipient": _ADDRESS,
                                 "state": {"type": "string", "enum": ["queued", "held", "deferred", "active"]}}}
    Count = {"type": "object", "required": ["recipients"], "properties": {"recipients": {"type": "integer"}}}
    Hold = {"type": "object", "required": ["domain", "messages"],
            "properties": {"domain": {"type": "string"}, "messages": {"type": "integer"}}}
    Whoami = {"type": "object", "required": ["actor", "server_admin", "domains"],
              "properties": {"actor": {"type": "string"}, "server_admin": {"type": "boolean"},
                             "domains": {"type": ["array", "null"], "items": {"type": "string"}},
                             "csrf": {"type": "string"}}}
    Text = {"type": "object", "required": ["text"], "additionalProperties": False,
            "properties": {"text": {"type": "string", "maxLength": 8 * 1024 * 1024}}}
    Rules = {"type": "object", "required": ["text", "rules"],
             "properties": {"text": {"type": "string"}, "rules": {"type": "array", "items": {
                 "type": "object", "required": ["position", "name", "rule", "at_rcpt"],
                 "properties": {"position": {"type": "integer"}, "name": {"type": "string"},
                                "rule": {"type": "string"}, "at_rcpt": {"type": "boolean"}}}}}}
    RuleAdd = {"type": "object", "required": ["text"], "additionalProperties": False,
               "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 64 * 1024},
                              "position": {"type": "integer", "minimum": 1}}}
    RuleMove = {"type": "object", "required": ["position"], "additionalProperties": False,
                "properties": {"position": {"type": "integer", "minimum": 1}}}
    Gateway = {"type": "object", "required": ["text", "rules"],
               "properties": {"text": {"type": "string"}, "rules": {"type": "array", "items": {
                   "type": "object", "required": ["line", "match", "destination", "port", "rewrite"],
                   "properties": {"line": {"type": "integer"}, "match": {"type": "string"},
                                  "destination": {"type": "string"}, "port": {"type": ["integer", "null"]},
                                  "rewrite": {"type": "string"}}}}}}
    Credentials = {"type": "object", "required": ["for", "user"],
                   "properties": {"for": {"type": "string"}, "user": {"type": "string"}}}
    CredentialsSet = {"type": "object", "required": ["user", "password"], "additionalProperties": False,
                      "properties": {"user": {"type": "string", "minLength": 1, "maxLength": 320},
                                     "password": {"type": "string", "minLength": 1, "maxLength": 1024}}}
    Peer = {"type": "object", "required": ["host", "addresses", "smtp_port", "minger_port", "secret", "domains"],
            "properties": {"host": {"type": "string"}, "addresses": {"type": "array", "items": {"type": "string"}},
                           "smtp_port": {"type": "integer"}, "minger_port": {"type": "integer"},
                           "secret": {"type": "boolean"}, "domains": {"type": "array", "items": {"type": "string"}}}}
    PeerAdd = {"type": "object", "required": ["host"], "additionalProperties": False,
               "properties": {"host": {"type": "string", "minLength": 1, "maxLength": 255},
                              "smtp_port": {"type": "integer", "minimum": 1, "maximum": 65535},
                              "minger_port": {"type": "integer", "minimum": 1, "maximum": 65535},
                              "secret": {"type": "string", "maxLength": 50},
                              "domains": {"type": "array", "items": _STR, "maxItems": 1000}}}
    CacheEntry = {"type": "object", "required": ["address", "peer", "expires"],
                  "properties": {"address": {"type": "string"}, "peer": {"type": "string"},
                                 "expires": {"type": "number"}}}
    Cleared = {"type": "object", "required": ["answers"], "properties": {"answers": {"type": "integer"}}}
    LookupAsk = {"type": "object", "required": ["address"], "additionalProperties": False,
                 "properties": {"address": _ADDRESS}}
    Lookup = {"type": "object", "required": ["address", "answers"], "properties": {
        "address": {"type": "string"},
        "answers": {"type": "array", "items": {
            "type": "object", "required": ["peer", "minger_port", "answer", "code"],
            "properties": {"peer": {"type": "string"}, "minger_port": {"type": "integer"},
                           "answer": {"type": "string"}, "code": {"type": ["integer", "null"]}}}}}}
    Acl = {"type": "object", "required": ["mailbox", "entries"],
           "properties": {"mailbox": {"type": "string"}, "entries": {"type": "array", "items": {
               "type": "object", "required": ["identifier", "rights", "note"],
               "properties": {"identifier": {"type": "string"}, "rights": {"type": "string"},
                              "note": {"type": "string"}}}}}}
    AclSet = {"type": "object", "required": ["mailbox", "identifier", "rights"], "additionalProperties": False,
              "properties": {"mailbox": {"type": "string", "minLength": 3, "maxLength": 1024},
                             "identifier": _ADDRESS, "rights": {"type": "string", "minLength": 1, "maxLength": 32}}}
    Mailboxes = {"type": "object", "required": ["mailboxes"],
                 "properties": {"mailboxes": {"type": "array", "items": {"type": "string"}}}}
    Deleted = {"type": "object", "required": ["messages"], "properties": {"messages": {"type": "integer"}}}
    MailboxCreate = {"type": "object", "required": ["name"], "additionalProperties": False,
                     "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 1024}}}
    DkimKey = {"type": "object", "required": ["domain", "selector", "algorithm", "created", "state", "name", "type",
                                              "value"],
               "properties": {"domain": {"type": "string"}, "selector": {"type": "string"},
                              "algorithm": {"type": "string", "enum": ["rsa", "ed25519"]},
                              "created": {"type": "string"},
                              "state": {"type": "string", "enum": ["signing", "active", "inactive"]},
                              "name": {"type": "string"}, "type": {"type": "string"}, "value": {"type": "string"}}}
    DkimGenerate = {"type": "object", "additionalProperties": False,
                    "properties": {"selector": {"type": "string", "minLength": 1, "maxLength": 253},
                                   "algorithm": {"type": "string", "enum": ["rsa", "ed25519"]},
                                   "inactive": {"type": "boolean"}}}
    DkimSet = {"type": "object", "required": ["active"], "additionalProperties": False,
               "properties": {"active": {"type": "boolean"}}}
    DnsRecord = {"type": "object", "required": ["name", "type", "expected", "purpose"],
                 "properties": {"name": {"type": "string"}, "type": {"type": "string"},
                                "expected": {"type": "string"}, "purpose": {"type": "string"},
                                "status": {"type": "string", "enum": ["ok", "missing", "different", "error"]},
                                "found": {"type": "array", "items": {"type": "string"}}}}
    Quota = {"type": "object", "required": ["account", "storage", "storage_limit", "messages", "message_limit",
                                            "percent"],
             "properties": {"account": {"type": "string"}, "storage": {"type": "integer"},
                            "storage_limit": {"type": ["integer", "null"]}, "messages": {"type": "integer"},
                            "message_limit": {"type": ["integer", "null"]}, "percent": {"type": "integer"}}}
    SieveScript = {"type": "object", "required": ["name", "active"],
                   "properties": {"name": {"type": "string"}, "active": {"type": "boolean"},
                                  "script": {"type": "string"}}}
    SieveList = {"type": "object", "required": ["items"],
                 "properties": {"items": {"type": "array", "items": {
                     "type": "object", "required": ["name", "active"],
                     "properties": {"name": {"type": "string"}, "active": {"type": "boolean"}}}}}}
    SievePut = {"type": "object", "required": ["script"], "additionalProperties": False,
                "properties": {"script": {"type": "string", "maxLength": 1024 * 1024},
                               "activate": {"type": "boolean"}}}
    SieveActivate = {"type": "object", "required": ["name"], "additionalProperties": False,
                     "properties": {"name": {"type": ["string", "null"], "minLength": 1, "maxLength": 1024}}}
    FileArea = {"type": "object", "required": ["account", "used", "limit", "limit_from", "percent", "listing"],
                "properties": {"account": {"type": "string"}, "used": {"type": "integer"}, "limit": {"type": "integer"},
                               "limit_from": {"type": "string", "enum": ["account", "domain", "default"]},
                               "percent": {"type": "number"}, "listing": {"type": "boolean"}}}
    FileAreaSet = {"type": "object", "additionalProperties": False, "minProperties": 1,
                   "properties": {"limit": {"type": ["integer", "string", "null"], "minimum": 0, "maxLength": 24},
                                  "listing": {"type": "boolean"}}}
    FileEntries = {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {
        "type": "object", "required": ["name", "folder", "size", "modified"],
        "properties": {"name": {"type": "string"}, "folder": {"type": "boolean"}, "size": {"type": "integer"},
                       "modified": {"type": "number"}}}}}}
    DomainFiles = {"type": "object", "required": ["limit"], "additionalProperties": False,
                   "properties": {"limit": {"type": ["integer", "string", "null"], "minimum": 0, "maxLength": 24}}}
    DomainFilesView = {"type": "object", "required": ["domain", "limit"],
                       "properties": {"domain": {"type": "string"}, "limit": {"type": ["integer", "null"]}}}
    MailboxAlias = {"type": "object", "required": ["alias", "target"],
                    "properties": {"alias": {"type": "string"}, "target": {"type": "string"}}}
    MailboxAliases = {"type": "object", "required": ["items"],
                      "properties": {"items": {"type": "array", "items": MailboxAlias}}}
    MailboxAliasSet = {"type": "object", "required": ["target"], "additionalProperties": False,
                       "properties": {"target": {"type": "string", "minLength": 1, "maxLength": 1024}}}
    LoginFailures = {"type": "object", "required": ["key", "failures", "last_failure", "blocked_until"],
                     "properties": {"key": {"type": "string"}, "failures": {"type": "integer"},
                                    "last_failure": {"type": "number"}, "blocked_until": {"type": "number"}}}
    Unblocked = {"type": "object", "required": ["key", "cleared"],
                 "properties": {"key": {"type": "string"}, "cleared": {"type": "boolean"}}}
    GatewayAsk = {"type": "object", "required": ["address"], "additionalProperties": False,
                  "properties": {"address": {"type": "string", "minLength": 1, "maxLength": 320}}}
    GatewayAnswer = {"type": "object", "required": ["address", "rule", "envelope"],
                     "properties": {"address": {"type": "string"}, "envelope": {"type": "string"},
                                    "rule": {"type": ["object", "null"]}}}
