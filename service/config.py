"""Service configuration, read once from environment variables (prefix ``LOAN_``).

Every setting is documented in README.md with its default. A bad value stops start-up with a
message naming the variable, never a traceback deep inside the app.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

# Development keys, documented in README.md. Only their SHA-256 hashes live here.
DEV_CLIENT_KEY = "dev-client-key-change-me"
DEV_ADMIN_KEY = "dev-admin-key-change-me"
# Two reviewers, so that a newcomer can try the four-eyes rule.
DEV_REVIEWER_KEYS = ("dev-reviewer-a-key-change-me", "dev-reviewer-b-key-change-me")
DEV_API_KEYS = (
    f"client:dev-client:{hashlib.sha256(DEV_CLIENT_KEY.encode()).hexdigest()},"
    f"admin:dev-admin:{hashlib.sha256(DEV_ADMIN_KEY.encode()).hexdigest()},"
    + ",".join(f"reviewer:dev-reviewer-{who}:{hashlib.sha256(key.encode()).hexdigest()}"
               for who, key in zip("ab", DEV_REVIEWER_KEYS))
)
ROLES = ("client", "admin", "reviewer")
PROVIDERS = ("identity", "face", "sms", "business")  # the verification checks a product may require
# The development secret for keyed hashes of ID numbers and phones (README.md). Anything hashed
# with it is as good as plain text: production sets LOAN_PII_KEY.
DEV_PII_KEY = "dev-pii-key-change-me-0123456789abcdef"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOAN_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    data_dir: Path = REPO_ROOT / "var"
    # Empty: every store is an SQLite file under data_dir (one host). postgresql://…: every
    # store is in that database, shared by all replicas (a secret: it may carry a password).
    database_url: SecretStr = SecretStr("")
    rules_dir: Path = REPO_ROOT / "rules"
    models_dir: Path = REPO_ROOT / "models"
    # "role:sha256hex" pairs, comma separated. Hashes only: a leaked config leaks no key.
    api_keys: str = DEV_API_KEYS
    # Secret for the keyed hashes (HMAC-SHA256) under which ID numbers and phones are stored.
    pii_key: str = Field(DEV_PII_KEY, min_length=32)
    # How often a worker checks whether a new whitelist version was imported.
    whitelist_poll_s: float = Field(1.0, gt=0, le=60)
    # Verification providers: one base URL for all four (the simulator), or one each. Empty:
    # no provider, so every required check is an error and nothing is approved.
    providers_url: str = ""
    identity_url: str = ""
    face_url: str = ""
    sms_url: str = ""
    business_url: str = ""  # the market-regulation registry (merchant products)
    # Credentials: a JSON file {"identity": key, "face": key, …}, else one key for all.
    provider_credentials_file: Path | None = None
    provider_key: SecretStr = SecretStr("")
    provider_timeout_ms: float = Field(800.0, gt=0, le=60000)
    provider_concurrency: int = Field(32, ge=1, le=4096)
    provider_retries: int = Field(1, ge=0, le=5)
    # Per-provider changes to the three above, JSON: {"face": {"timeout_ms": 1500, "concurrency": 8}}
    provider_overrides: str = ""
    # A request must arrive whole within this from its connection (or the previous answer).
    request_timeout_s: float = Field(10.0, gt=0, le=300)
    # Requests in flight in one worker; beyond: 503 with Retry-After (probes are always answered).
    max_in_flight: int = Field(512, ge=1, le=100_000)
    # Per API key and endpoint class, per worker: {"decisions": {"rate": 1000, "burst": 2000}, …}
    rate_limits: str = ""
    breaker_open_s: float = Field(5.0, gt=0, le=600)
    breaker_slow_ms: float = Field(1000.0, gt=0, le=60000)
    # One deadline bounds a whole decision, provider calls and retries included.
    deadline_ms: float = Field(3000.0, gt=0, le=60000)
    # Group commit: how long the writer lingers for more decisions before a commit (0 = commit
    # whatever is queued at once; batches then form while the previous fsync runs).
    commit_linger_ms: float = Field(0.0, ge=0, le=50)
    commit_max_batch: int = Field(512, ge=1, le=10000)
    log_level: str = "INFO"
    access_log: bool = False
    # The manual-review channel: how long a reviewer's claim on a case lasts unless renewed.
    review_lease_s: float = Field(300.0, ge=10, le=3600)
    # The applicant's right to a human decision (PIPL art. 24): days after an automatic decision
    # in which a review may be requested, and the hours a reviewer then has to answer.
    review_request_days: int = Field(30, ge=1, le=3650)
    review_request_hours: float = Field(72.0, gt=0, le=24 * 90)
    # Final decisions of reviewed cases are pushed here (POST, signed with callback_secret);
    # empty: not pushed (the bank's backend polls GET /v1/decisions/{id}).
    callback_url: str = ""
    callback_secret: SecretStr = SecretStr("")
    callback_timeout_s: float = Field(5.0, gt=0, le=60)
    # Seconds an in-flight request may take to finish after SIGTERM before the worker exits.
    shutdown_grace_s: float = Field(10.0, ge=0, le=300)

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: str) -> str:
        parse_api_keys(value)
        return value

    @field_validator("rate_limits")
    @classmethod
    def _check_rate_limits(cls, value: str) -> str:
        parse_rate_limits(value)
        return value

    @field_validator("provider_overrides")
    @classmethod
    def _check_overrides(cls, value: str) -> str:
        parse_provider_overrides(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be empty (SQLite) or a postgresql:// URL")
        return value

    @field_validator("callback_url")
    @classmethod
    def _check_callback(cls, value: str) -> str:
        if value and not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", value):
            raise ValueError("must be empty or an http(s):// URL")
        return value

    @model_validator(mode="after")
    def _callback_secret(self) -> Settings:
        if self.callback_url and len(self.callback_secret.get_secret_value()) < 32:
            raise ValueError("LOAN_CALLBACK_SECRET: at least 32 characters when LOAN_CALLBACK_URL is set")
        return self

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @property
    def database_path(self) -> Path:
        return self.data_dir / "decisions.sqlite3"

    def provider_urls(self) -> dict[str, str]:
        """The configured providers and their base URLs."""
        urls = {"identity": self.identity_url, "face": self.face_url, "sms": self.sms_url,
                "business": self.business_url}
        return {name: (url or self.providers_url).rstrip("/") for name, url in urls.items()
                if url or self.providers_url}

    def provider_options(self, name: str) -> tuple[float, int, int]:
        """(timeout in seconds, concurrency, retries) for one provider."""
        own = parse_provider_overrides(self.provider_overrides).get(name, {})
        return (own.get("timeout_ms", self.provider_timeout_ms) / 1000,
                int(own.get("concurrency", self.provider_concurrency)),
                int(own.get("retries", self.provider_retries)))

    def provider_credentials(self) -> dict[str, str]:
        """Raises ValueError (naming the file, never a key) if the file is unusable."""
        if self.provider_credentials_file is None:
            key = self.provider_key.get_secret_value()
            return dict.fromkeys(PROVIDERS, key)
        try:
            data = json.loads(self.provider_credentials_file.read_text())
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise ValueError
        except (OSError, ValueError):
            raise ValueError(f"{self.provider_credentials_file}: expected a JSON object of provider: key") from None
        return data

    @property
    def whitelist_dir(self) -> Path:
        return self.data_dir / "whitelist"

    @property
    def uses_dev_pii_key(self) -> bool:
        return self.pii_key == DEV_PII_KEY

    @property
    def uses_dev_keys(self) -> bool:
        return self.api_keys == DEV_API_KEYS


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its role, a name for audit trails and logs, its SHA-256, an expiry."""

    role: str
    name: str
    digest: bytes
    expires: dt.date | None = None  # the last day it works, Beijing time; None: no expiry


KEY_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def parse_api_keys(value: str) -> list[ApiKey]:
    """``role:name:sha256[:YYYY-MM-DD]`` entries, comma separated (``role:sha256``, unnamed, is
    still read: its name is its fingerprint); raises ValueError naming the bad entry."""
    keys: list[ApiKey] = []
    for number, entry in enumerate(filter(None, (e.strip() for e in value.split(","))), 1):
        parts = entry.split(":")
        if len(parts) == 2:
            parts = [parts[0], "", parts[1]]
        if len(parts) not in (3, 4) or parts[0] not in ROLES:
            raise ValueError(f"entry {number}: expected 'role:name:<sha256>[:YYYY-MM-DD]' with role "
                             f"{' or '.join(ROLES)}")
        role, name, digest = parts[:3]
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ValueError(f"entry {number}: the hash must be 64 hex digits (SHA-256 of the key)")
        if name and not KEY_NAME.fullmatch(name):
            raise ValueError(f"entry {number}: a key name is lower-case letters, digits, '.', '_', '-'")
        try:
            expires = dt.date.fromisoformat(parts[3]) if len(parts) == 4 else None
        except ValueError:
            raise ValueError(f"entry {number}: the expiry must be a date, YYYY-MM-DD") from None
        if any(k.digest == raw for k in keys):
            raise ValueError(f"entry {number}: the same key twice")
        keys.append(ApiKey(role, name or f"key-{digest[:12].lower()}", raw, expires))
    if not keys:
        raise ValueError("no API keys configured")
    return keys


RATE_CLASSES = ("decisions", "admin", "reviews")
DEFAULT_RATE_LIMITS = {"decisions": (1000.0, 2000.0), "admin": (10.0, 50.0), "reviews": (20.0, 100.0)}


def parse_rate_limits(value: str) -> dict[str, tuple[float, float]]:
    """``{"admin": {"rate": 5, "burst": 20}}`` over the defaults → {class: (rate, burst)};
    ValueError names what is wrong."""
    limits = dict(DEFAULT_RATE_LIMITS)
    if not value.strip():
        return limits
    try:
        data = json.loads(value)
    except ValueError:
        raise ValueError("must be a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object of class: {rate, burst}")
    for kind, spec in data.items():
        if kind not in RATE_CLASSES or not isinstance(spec, dict) or set(spec) - {"rate", "burst"}:
            raise ValueError(f"'{kind}': classes are {', '.join(RATE_CLASSES)}, each {{rate, burst}}")
        rate, burst = spec.get("rate", limits[kind][0]), spec.get("burst", limits[kind][1])
        for name, number in (("rate", rate), ("burst", burst)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 < number <= 1e6:
                raise ValueError(f"{kind}.{name}: a number above 0, at most 1000000")
        if burst < 1:
            raise ValueError(f"{kind}.burst: at least 1")
        limits[kind] = (float(rate), float(burst))
    return limits


OVERRIDE_LIMITS = {"timeout_ms": (1, 60000), "concurrency": (1, 4096), "retries": (0, 5)}


def parse_provider_overrides(value: str) -> dict[str, dict[str, float]]:
    """``{"face": {"timeout_ms": 1500}}`` → checked dict; ValueError names what is wrong."""
    if not value.strip():
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        raise ValueError("must be a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object of provider: {setting: value}")
    for name, options in data.items():
        if name not in PROVIDERS or not isinstance(options, dict):
            raise ValueError(f"'{name}': providers are {', '.join(PROVIDERS)}, each with an object")
        for key, number in options.items():
            if key not in OVERRIDE_LIMITS:
                raise ValueError(f"{name}.{key}: settings are {', '.join(OVERRIDE_LIMITS)}")
            low, high = OVERRIDE_LIMITS[key]
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not low <= number <= high:
                raise ValueError(f"{name}.{key}: a number from {low} to {high}")
    return data
