"""Rules: what happens to a message besides its plain route.  Today: the gateway
forwarding table (seed 003).  Server-wide rules and account forwarding are to come."""

from .gateway import (
    CREDENTIALS_KEY,
    RULES_KEY,
    GatewayError,
    GatewayRule,
    gateway_store,
    GatewayTable,
    credentials_for,
    parse_gateway,
    remove_credentials,
    set_credentials,
    store_rules,
)

from .server import Envelope, Outcome, ServerRules, rules_store, format_rule, header_fields, parse_rules

__all__ = ["Envelope", "Outcome", "ServerRules", "rules_store", "format_rule", "header_fields", "parse_rules",
           "CREDENTIALS_KEY", "RULES_KEY", "GatewayError", "GatewayRule", "gateway_store", "GatewayTable",
           "credentials_for", "parse_gateway", "remove_credentials", "set_credentials", "store_rules"]
