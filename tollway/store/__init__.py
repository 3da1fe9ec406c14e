"""The durable store: teams, users, virtual keys, provider credentials and the audit trail.

``Store`` is the entry point; ``migrate`` brings a database to the schema this code needs.
docs/store.md describes the tables, the backends and how to add a migration.
"""

from tollway.store.crypto import VAULT_KEY_ENV, SecretBox, generate_vault_key
from tollway.store.engine import DEFAULT_URL
from tollway.store.errors import (
    InvalidRecord,
    RecordConflict,
    RecordNotFound,
    ReencryptionInterrupted,
    SchemaMismatch,
    StoreBusy,
    StoreError,
    VaultKeyError,
)
from tollway.store.keys import GeneratedKey, generate_key, hash_key, key_prefix, verify
from tollway.store.migration import downgrade, head_revision, migrate
from tollway.store.records import (
    OWNER_LEFT_CLAIMED_TEAM,
    OWNER_LEFT_TEAM,
    UNSET,
    AuditEntry,
    AuditPage,
    AuditRecord,
    BudgetRecord,
    CredentialRecord,
    KeyAuthority,
    KeyRecord,
    KeyStatus,
    MemberRemoval,
    MembershipRecord,
    NewKey,
    ProvisionedTeam,
    RateLimitRecord,
    Reencryption,
    SpendTally,
    TeamRecord,
    TeamRole,
    UserKind,
    UserRecord,
    UserRole,
)
from tollway.store.request_log import (
    RequestLogFilter,
    RequestLogPage,
    RequestLogRecord,
    RequestLogRepository,
)
from tollway.store.store import Store

__all__ = [
    "DEFAULT_URL",
    "OWNER_LEFT_CLAIMED_TEAM",
    "OWNER_LEFT_TEAM",
    "UNSET",
    "VAULT_KEY_ENV",
    "AuditEntry",
    "AuditPage",
    "AuditRecord",
    "BudgetRecord",
    "CredentialRecord",
    "GeneratedKey",
    "InvalidRecord",
    "KeyAuthority",
    "KeyRecord",
    "KeyStatus",
    "MemberRemoval",
    "MembershipRecord",
    "NewKey",
    "ProvisionedTeam",
    "RateLimitRecord",
    "RecordConflict",
    "RecordNotFound",
    "Reencryption",
    "ReencryptionInterrupted",
    "RequestLogFilter",
    "RequestLogPage",
    "RequestLogRecord",
    "RequestLogRepository",
    "SchemaMismatch",
    "SecretBox",
    "SpendTally",
    "Store",
    "StoreBusy",
    "StoreError",
    "TeamRecord",
    "TeamRole",
    "UserKind",
    "UserRecord",
    "UserRole",
    "VaultKeyError",
    "downgrade",
    "generate_key",
    "generate_vault_key",
    "hash_key",
    "head_revision",
    "key_prefix",
    "migrate",
    "verify",
]
