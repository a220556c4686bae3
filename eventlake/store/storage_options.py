"""Storage options for lakes on object storage: where they come from, and keeping secrets out
of output. No heavy imports here: the CLI resolves options before it loads anything else.

For an `s3://` (or `s3a://`) root the options that reach deltalake, Polars and the maintenance
writer are, from weakest to strongest:

1. the standard AWS environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, ...);
2. explicit options: `Lake.open(root, storage_options={...})`; the CLI and the flows build
   them from `$EVENTLAKE_STORAGE_OPTIONS` (a JSON object) overlaid with
   `--storage-option KEY=VALUE` (or a flow's `storage_options`).

Keys are object_store configuration keys; for S3 every alias (`AWS_ENDPOINT_URL`,
`endpoint_url`, `endpoint`, ...) is folded into one canonical lowercase key
(`aws_endpoint_url`), which deltalake and Polars both accept. Two defaults apply to S3:
`aws_conditional_put=etag` (commits use conditional PUTs, so concurrent writers never
overwrite each other's commit without a lock service; never use `AWS_S3_ALLOW_UNSAFE_RENAME`)
and `aws_allow_http=true` when the endpoint is a plain `http://` URL.

Values of keys that look like credentials (`*secret*`, `*key*`, `*token*`, `*password*`, ...)
are secrets: `redacted()` masks them for display, and every secret value a `Storage` was built
with is remembered so `redact(text)` can scrub it from error messages before they are shown.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from eventlake._settings import Origin, Spec
from eventlake.errors import StorageOptionError

__all__ = [
    "AWS_ENVIRONMENT",
    "ENV_STORAGE_OPTIONS",
    "MASK",
    "STORAGE_OPTIONS",
    "StorageOptionError",
    "is_s3",
    "is_secret_key",
    "parse_pairs",
    "redact",
    "redacted",
    "remember_secrets",
    "resolve_options",
]

ENV_STORAGE_OPTIONS = "EVENTLAKE_STORAGE_OPTIONS"
MASK = "***"

# Environment variable -> canonical key, strongest first for keys named twice.
AWS_ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
    ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    ("AWS_SESSION_TOKEN", "aws_session_token"),
    ("AWS_REGION", "aws_region"),
    ("AWS_DEFAULT_REGION", "aws_region"),
    ("AWS_ENDPOINT_URL_S3", "aws_endpoint_url"),
    ("AWS_ENDPOINT_URL", "aws_endpoint_url"),
    ("AWS_ENDPOINT", "aws_endpoint_url"),
    ("AWS_ALLOW_HTTP", "aws_allow_http"),
    ("AWS_CONDITIONAL_PUT", "aws_conditional_put"),
    ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "aws_virtual_hosted_style_request"),
    ("AWS_SKIP_SIGNATURE", "aws_skip_signature"),
)

# object_store's aliases of the S3 keys (lowercase) -> the canonical key.
_S3_ALIASES = {
    "access_key_id": "aws_access_key_id",
    "secret_access_key": "aws_secret_access_key",
    "aws_token": "aws_session_token",
    "session_token": "aws_session_token",
    "token": "aws_session_token",
    "region": "aws_region",
    "aws_default_region": "aws_region",
    "default_region": "aws_region",
    "aws_endpoint": "aws_endpoint_url",
    "endpoint_url": "aws_endpoint_url",
    "endpoint": "aws_endpoint_url",
    "aws_endpoint_url_s3": "aws_endpoint_url",
    "allow_http": "aws_allow_http",
    "conditional_put": "aws_conditional_put",
    "virtual_hosted_style_request": "aws_virtual_hosted_style_request",
    "skip_signature": "aws_skip_signature",
}

_SECRET_KEY = re.compile(r"secret|key|token|password|credential|signature|sas|auth",
                         re.IGNORECASE)
_SECRETS: set[str] = set()
_MIN_SECRET_CHARS = 4


def is_s3(root: str) -> bool:
    return root.lower().startswith(("s3://", "s3a://"))


def is_secret_key(key: str) -> bool:
    """Whether the value of option `key` is a credential (never shown)."""
    return bool(_SECRET_KEY.search(key))


def _canonical(key: str) -> str:
    lower = key.strip().lower()
    return _S3_ALIASES.get(lower, lower)


def _text(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise StorageOptionError(f"storage option {key!r} must be a string, number or boolean, "
                             f"not {type(value).__name__}")


def resolve_options(root: str, explicit: Mapping[str, object] | None = None, *,
                    environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The options a lake at `root` is opened with (see the module doc).

    Local roots get the explicit options unchanged (none are needed); other object stores
    than S3 get them unchanged too, and their libraries read their own environment.
    """
    given = {str(k): _text(str(k), v) for k, v in (explicit or {}).items()}
    if not is_s3(root):
        remember_secrets(given)
        return given
    env = os.environ if environ is None else environ
    options: dict[str, str] = {}
    for variable, key in AWS_ENVIRONMENT:
        value = env.get(variable)
        if value and key not in options:
            options[key] = value
    for key, value in given.items():
        options[_canonical(key)] = value
    options.setdefault("aws_conditional_put", "etag")
    endpoint = options.get("aws_endpoint_url", "")
    if endpoint.lower().startswith("http://"):
        options.setdefault("aws_allow_http", "true")
    remember_secrets(options)
    return options


def _options_json(raw: Any, origin: Origin) -> dict[str, str]:
    """The options in a JSON object (the text of `$EVENTLAKE_STORAGE_OPTIONS`)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        # The text may hold secrets: say where it broke, never what it says.
        raise StorageOptionError(
            f"{origin.label} is not valid JSON ({exc.msg} at character {exc.pos}); "
            'expected an object like {"AWS_REGION": "eu-west-1"}') from None
    if not isinstance(data, dict):
        raise StorageOptionError(f"{origin.label} must be a JSON object of option "
                                 f"names to values, not a {type(data).__name__}")
    options = {str(k): _text(str(k), v) for k, v in data.items()}
    remember_secrets(options)
    return options


# No pyproject.toml key: that file is committed, and storage options carry credentials.
STORAGE_OPTIONS: Spec[dict[str, str]] = Spec(
    name="storage_options", flag="--storage-option", env=ENV_STORAGE_OPTIONS, key=None,
    parse=_options_json, default=dict)


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` strings (from `--storage-option`) as a dict; later pairs win."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            # Never echo the argument: it may be a secret typed without its key.
            problem = "an empty KEY" if sep else "an argument without '='"
            raise StorageOptionError(f"--storage-option takes KEY=VALUE, got {problem}")
        options[key.strip()] = value
    remember_secrets(options)
    return options


def remember_secrets(options: Mapping[str, str]) -> None:
    """Note the secret values of `options`, so `redact` scrubs them from any text."""
    for key, value in options.items():
        if is_secret_key(key) and len(value) >= _MIN_SECRET_CHARS:
            _SECRETS.add(value)


def redacted(options: Mapping[str, str]) -> dict[str, str]:
    """`options` for display: secret values masked."""
    return {k: (MASK if is_secret_key(k) else v) for k, v in options.items()}


def redact(text: str) -> str:
    """`text` with every secret value seen in storage options replaced by `***`."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text
