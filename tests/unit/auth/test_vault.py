"""The vault resolves references and says which cannot be resolved, without the secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tollway.auth.vault import MissingCredential, Vault
from tollway.config import SecretRef


def test_env_file_and_literal_references(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("sk-from-file\n")
    vault = Vault({"KEY": "sk-from-env"})
    assert vault.reveal(SecretRef("env:KEY")) == "sk-from-env"
    assert vault.reveal(SecretRef(f"file:{secret_file}")) == "sk-from-file"
    assert vault.reveal(SecretRef("sk-literal")) == "sk-literal"


def test_missing_references_are_named_not_revealed(tmp_path: Path) -> None:
    vault = Vault({"SET": "sk-set"})
    with pytest.raises(MissingCredential, match="env:UNSET"):
        vault.reveal(SecretRef("env:UNSET"))
    refs = [SecretRef("env:SET"), SecretRef("env:UNSET"), SecretRef(f"file:{tmp_path}/none")]
    assert vault.missing(refs) == ["env:UNSET", f"file:{tmp_path}/none"]


def test_a_secret_file_that_is_not_utf8_is_a_missing_credential(tmp_path: Path) -> None:
    # It raised UnicodeDecodeError: out of reload() (which then stopped the file watch) and
    # out of a request that needed the credential (a 500).
    (tmp_path / "key").write_bytes(b"sk-\xff\xfe")
    ref = SecretRef(f"file:{tmp_path / 'key'}")
    vault = Vault({})
    with pytest.raises(MissingCredential, match="not UTF-8"):
        vault.reveal(ref)
    assert vault.missing([ref]) == [ref.redacted()]


def test_a_file_secret_is_reread_once_its_recheck_interval_has_passed(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text("sk-before")
    ref = SecretRef(f"file:{secret_file}")
    patient, eager = Vault({}, file_recheck=3600), Vault({}, file_recheck=0)
    assert patient.reveal(ref) == eager.reveal(ref) == "sk-before"
    secret_file.write_text("sk-after")
    os.utime(secret_file, ns=(0, secret_file.stat().st_mtime_ns + 1))  # however coarse the clock
    assert patient.reveal(ref) == "sk-before"  # not looked at again within the hour
    assert eager.reveal(ref) == "sk-after"


def test_an_env_secret_is_read_without_the_whitespace_around_it() -> None:
    # A key exported from a file keeps its line end (KEY="$(cat key)" does not, KEY=`cat` of a
    # .env line may): sent in a header it failed every upstream call. As file: secrets are.
    vault = Vault({"KEY": "sk-from-env\n", "BLANK": " \n"})
    assert vault.reveal(SecretRef("env:KEY")) == "sk-from-env"
    with pytest.raises(MissingCredential, match="env:BLANK"):
        vault.reveal(SecretRef("env:BLANK"))
