"""The zstd dictionary ``tickgate.v1.proto+zstd`` frames are compressed with.

The package ships one (``tickgate/data/zstd-v1.dict``, trained by
``tools/train_zstd_dictionary.py`` on the core's own update encodings): single updates are too
small for zstd to gain anything without one. Its id is in every frame's header and clients fetch
the bytes from ``GET /v1/zstd-dictionary`` (or take them from the package). The setting
``zstd_dictionary`` picks it: ``builtin`` (the default), ``none`` (plain zstd frames, no id), or
the path of another dictionary file.
"""

from __future__ import annotations

from importlib import resources

from tickgate.config import ConfigError

__all__ = ["BUILTIN", "NONE", "builtin_dictionary", "load_zstd_dictionary"]

BUILTIN = "builtin"
NONE = "none"
#: Where the dictionary is served, for clients that do not ship one.
PATH = "/v1/zstd-dictionary"
_ZSTD_DICT_MAGIC = b"\x37\xa4\x30\xec"  # a trained (non-raw) dictionary starts with this


def builtin_dictionary() -> bytes:
    return resources.files("tickgate").joinpath("data", "zstd-v1.dict").read_bytes()


def load_zstd_dictionary(setting: str) -> bytes | None:
    """The dictionary bytes for the ``zstd_dictionary`` setting, or None for plain frames."""
    if setting == NONE:
        return None
    if setting == BUILTIN:
        return builtin_dictionary()
    try:
        with open(setting, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise ConfigError(f"zstd_dictionary: cannot read {setting!r}: {e.strerror}") from None
    # A raw-content dictionary has no id, so clients could not tell which one a frame needs.
    if not data.startswith(_ZSTD_DICT_MAGIC):
        raise ConfigError(f"zstd_dictionary: {setting!r} is not a zstd dictionary (no dictionary header)")
    return data
