"""Client authentication: JWT verification with rotating keys, issuing tokens, and the
entitlements a token carries. The edge uses it through ``tickgate.edge.auth``."""

from tickgate.auth.entitlements import EntitlementError, Entitlements
from tickgate.auth.keys import ALGORITHMS, KeyError_, KeyRing, generate_jwk, public_set, rotate
from tickgate.auth.tokens import AuthFailure, Identity, Verifier, issue

__all__ = [
    "ALGORITHMS",
    "AuthFailure",
    "EntitlementError",
    "Entitlements",
    "Identity",
    "KeyError_",
    "KeyRing",
    "Verifier",
    "generate_jwk",
    "issue",
    "public_set",
    "rotate",
]
