"""The admin API under ``/admin/``: teams, users, keys, provider credentials, the audit trail."""
