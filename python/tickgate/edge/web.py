"""The quote page the gateway serves at ``/`` (a plain GET; a WebSocket upgrade at ``/`` is a
client): static files shipped inside the package (``tickgate/web``), read once at start, with
headers that keep the page to its own origin."""

from __future__ import annotations

from importlib import resources

__all__ = ["HEADERS", "load_page"]

#: Path -> (file in tickgate/web, content type).
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/tickgate.js": ("tickgate.js", "text/javascript; charset=utf-8"),
    "/tickgate-proto.js": ("tickgate-proto.js", "text/javascript; charset=utf-8"),
}
#: Scripts and styles from this origin only; WebSockets to it (ws: or wss:).
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def load_page() -> dict[str, tuple[bytes, str]]:
    """Path -> (body, content type) for every file of the page."""
    root = resources.files("tickgate") / "web"
    return {path: ((root / name).read_bytes(), kind) for path, (name, kind) in FILES.items()}
