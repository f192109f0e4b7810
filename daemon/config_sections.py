"""The configuration's shape: one frozen dataclass per section of config.toml, the `Config`
that holds them. Values only; daemon/config_read.py reads and checks the files (the
defaults of an [[imap]] account are there) and daemon/config.py builds these."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from daemon.config_read import database_url


@dataclass(frozen=True, kw_only=True)
class OAuth2Keys:
    """The OAuth 2.0 config keys of one account (a base of ImapAccount and OutboundSection;
    their defaults are daemon.oauth2_config.OAUTH2_DEFAULTS, tested equal)."""

    auth: str = "password"
    oauth2_token_url: str = ""
    oauth2_client_id: str = ""
    oauth2_client_secret_env: str = ""
    oauth2_client_secret_credential: str = ""
    oauth2_scope: str = ""
    oauth2_refresh_token_env: str = ""
    oauth2_refresh_token_credential: str = ""
    oauth2_device_url: str = ""


@dataclass(frozen=True)
class DigestSection:
    """[digest]: the daily agent digest (daemon/digest_config.py says its keys and checks them)."""

    enabled: bool = False
    hour: int = 8
    timezone: str = "UTC"
    risk_percent: float = 75.0


@dataclass(frozen=True)
class HelpdeskSection:
    address: str
    name: str
    ticket_prefix: str
    state_dir: Path
    default_type: str
    default_queue: str
    default_priority: str
    key_env: str = ""
    key_credential: str = ""


@dataclass(frozen=True)
class DatabaseSection:
    url: str
    echo: bool


@dataclass(frozen=True)
class QueueSection:
    backend: str
    url: str
    workers: int = 2
    lease_seconds: float = 120.0
    sweep_seconds: float = 30.0


@dataclass(frozen=True)
class SmtpSection:
    enabled: bool
    host: str
    port: int
    domains: tuple[str, ...]
    max_message_bytes: int
    max_recipients: int
    max_connections_per_ip: int
    command_timeout_seconds: int
    data_budget_seconds: float
    max_sessions: int = 500
    max_messages_per_ip_minute: int = 1200
    recipients: tuple[str, ...] = ()
    hostname: str = ""
    tls_cert: str = ""
    tls_key: str = ""


@dataclass(frozen=True)
class OutboundSection(OAuth2Keys):
    host: str
    port: int
    security: str = "none"
    username: str = ""
    password_env: str = ""
    password_credential: str = ""
    verify_tls: bool = True
    ca_file: str = ""
    timeout: float = 30.0
    helo: str = ""
    retry_first_seconds: float = 300.0
    retry_max_seconds: float = 3600.0
    retry_days: float = 5.0
    bounce_suppress_days: int = 7
    max_per_minute: int = 600


@dataclass(frozen=True)
class LoopsSection:
    max_per_recipient_hour: int = 5
    max_per_recipient_day: int = 20
    max_new_tickets_per_sender_hour: int = 20
    max_agent_mails_per_hour: int = 200
    same_notice_days: int = 7


@dataclass(frozen=True)
class AgentsSection:
    """[agents]: how agents' mail is authenticated and what their reply addresses allow."""

    auth: str = "dkim"
    domains: dict = field(default_factory=dict)
    authserv_ids: tuple[str, ...] = ()
    authres_count: int = 1
    dkim_min_key_bits: int = 1024
    dkim_keys_file: str = ""
    dns_timeout_seconds: float = 5.0
    dns_retry_seconds: float = 60.0
    defer_hours: float = 24.0
    token_days: int = 30
    requester_commands: tuple[str, ...] = ("resolve",)
    max_warnings_per_hour: int = 5
    max_bad_tokens_per_hour: int = 20
    dkim_relaxed_domains: tuple[str, ...] = ()
    arc_trusted_forwarders: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportsSection:
    """[reports]: the continual improvement report mailed to managers (daemon.report.mailing)."""

    to: tuple[str, ...] = ()
    schedule: str = "weekly"
    hour: int = 7


@dataclass(frozen=True)
class PathsSection:
    rules: Path
    templates: Path


@dataclass(frozen=True)
class WorkerSection:
    max_attempts: int
    retry_seconds: int
    idle_poll_seconds: float
    ingest_processes: int = 2
    parse_processes: int = 2


@dataclass(frozen=True)
class LimitsSection:
    max_parts: int
    max_depth: int
    max_headers: int
    parse_seconds: float = 10.0


@dataclass(frozen=True)
class LogSection:
    level: str
    format: str = "text"


@dataclass(frozen=True)
class LmtpSection:
    """[lmtp]: LMTP intake (RFC 2033) for a local MTA; a UNIX socket when `socket` is set."""

    enabled: bool = False
    socket: str = ""
    host: str = "127.0.0.1"
    port: int = 2424


@dataclass(frozen=True)
class HttpSection:
    """[http]: GET /metrics (Prometheus) and /healthz in serve and worker."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9425


@dataclass(frozen=True)
class HealthSection:
    status_seconds: int
    log_minutes: int
    alert_failing_minutes: int
    alert_silent_hours: int
    node: str = ""                  # this node's name in `helpdesk status` ("" = host:state_dir)
    node_silent_seconds: int = 60   # ALERT when a node with mail in its spool was not seen this long


@dataclass(frozen=True)
class DebugSection:
    clock_file: str = ""            # tests only: see daemon.clock.FileClock; "" = the wall clock


@dataclass(frozen=True)
class ImapAccount(OAuth2Keys):
    name: str
    host: str
    port: int
    security: str
    username: str
    password_env: str
    password_credential: str
    folder: str
    move_to: str
    idle: bool
    poll_seconds: int
    verify_tls: bool
    ca_file: str


@dataclass(frozen=True)
class Config:
    helpdesk: HelpdeskSection
    database: DatabaseSection
    queue: QueueSection
    smtp: SmtpSection
    outbound: OutboundSection
    paths: PathsSection
    worker: WorkerSection
    limits: LimitsSection
    log: LogSection
    health: HealthSection
    loops: LoopsSection
    agents: AgentsSection = field(default_factory=AgentsSection)
    reports: ReportsSection = field(default_factory=ReportsSection)
    lmtp: LmtpSection = field(default_factory=LmtpSection)
    http: HttpSection = field(default_factory=HttpSection)
    debug: DebugSection = field(default_factory=DebugSection)
    digest: DigestSection = field(default_factory=DigestSection)
    imap: tuple[ImapAccount, ...] = ()
    sources: tuple[Path, ...] = field(default=())

    @property
    def state_dir(self) -> Path:
        return self.helpdesk.state_dir

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL: the configured one, else SQLite in the state directory."""
        return database_url(self.database.url, self.state_dir)


# section name -> its class (the annotations are strings: resolved here, where the classes are)
SECTIONS = {f.name: globals()[f.type] if isinstance(f.type, str) else f.type
            for f in fields(Config) if f.name not in ("imap", "sources")}
