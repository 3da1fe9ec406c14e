"""Which files are read: .gitignore honoured in git trees, skip lists, binaries, big files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.scan.fakes import fake_key, fake_line
from tollway.scan.files import MAX_FILE_BYTES, Skipped, candidate_files, read_source
from tollway.scan.scanner import scan_path

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _write(root: Path, relative: str, content: str | bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def _git_repo(root: Path) -> None:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    _write(root, ".gitignore", ".env\nsecrets/\n*.log\n")
    _write(root, "app.py", fake_line("openai-project-key", 1)[0] + "\n")
    _write(root, "services/billing/settings.yaml", fake_line("groq-api-key", 1)[0] + "\n")
    _write(root, ".env", fake_line("anthropic-api-key", 1)[0] + "\n")
    _write(root, "secrets/prod.txt", fake_line("mistral-api-key", 1)[0] + "\n")
    _write(root, "run.log", fake_line("xai-api-key", 1)[0] + "\n")
    subprocess.run(["git", "-C", str(root), "add", "app.py", ".gitignore"], check=True)


@needs_git
def test_a_git_tree_is_listed_by_git_without_ignored_files(tmp_path: Path) -> None:
    _git_repo(tmp_path)
    assert candidate_files(tmp_path) == [".gitignore", "app.py", "services/billing/settings.yaml"]


@needs_git
def test_include_ignored_reads_what_gitignore_excludes(tmp_path: Path) -> None:
    _git_repo(tmp_path)
    listed = candidate_files(tmp_path, include_ignored=True)
    assert {".env", "secrets/prod.txt", "run.log", "app.py"} <= set(listed)
    assert not any(path.startswith(".git/") for path in listed)


@needs_git
def test_a_scan_says_which_env_files_gitignore_kept_out(tmp_path: Path) -> None:
    _git_repo(tmp_path)
    report = scan_path(tmp_path)
    assert {f.detector.provider for f in report.findings} == {"openai", "groq"}
    assert report.ignored_env_files == (".env",)
    everything = scan_path(tmp_path, include_ignored=True)
    assert {f.detector.provider for f in everything.findings} == {
        "openai",
        "groq",
        "anthropic",
        "mistral",
        "xai",
    }
    assert everything.ignored_env_files == ()


@needs_git
def test_a_subdirectory_of_a_git_tree_is_scanned_relative_to_itself(tmp_path: Path) -> None:
    _git_repo(tmp_path)
    report = scan_path(tmp_path / "services")
    assert [f.location.path for f in report.findings] == ["billing/settings.yaml"]


@needs_git
def test_an_ignored_directory_named_on_the_command_line_is_still_scanned(tmp_path: Path) -> None:
    _git_repo(tmp_path)
    report = scan_path(tmp_path / "secrets")
    assert [(f.location.path, f.detector.provider) for f in report.findings] == [
        ("prod.txt", "mistral")
    ]


def test_outside_git_the_walk_skips_dependency_and_build_directories(tmp_path: Path) -> None:
    line = fake_line("groq-api-key")[0] + "\n"
    for directory in (".git", "node_modules/pkg", ".venv/lib", "venv", "__pycache__", "dist"):
        _write(tmp_path, f"{directory}/leak.txt", line)
    _write(tmp_path, "build/out.js", line)
    _write(tmp_path, "src/deep/er/config.toml", line)
    _write(tmp_path, ".env.local", line)
    assert candidate_files(tmp_path) == [".env.local", "src/deep/er/config.toml"]


def test_binary_files_are_skipped_by_content_and_by_name(tmp_path: Path) -> None:
    key_line = fake_line("groq-api-key")[0].encode()
    _write(tmp_path, "blob.bin", b"\x7fELF\x00\x01" + key_line)
    _write(tmp_path, "logo.png", key_line)
    assert read_source(tmp_path, "blob.bin") == Skipped("blob.bin", "binary")
    assert read_source(tmp_path, "logo.png") == Skipped("logo.png", "binary")
    report = scan_path(tmp_path)
    assert report.findings == ()
    assert report.files_scanned == 0
    assert {item.reason for item in report.skipped} == {"binary"}


def test_files_over_two_mebibytes_are_skipped(tmp_path: Path) -> None:
    line = fake_line("groq-api-key")[0] + "\n"
    _write(tmp_path, "big.sql", line + "-" * MAX_FILE_BYTES)
    _write(tmp_path, "small.sql", line)
    assert MAX_FILE_BYTES == 2 * 1024 * 1024
    report = scan_path(tmp_path)
    assert [f.location.path for f in report.findings] == ["small.sql"]
    assert report.skipped == (Skipped("big.sql", "larger than 2 MiB"),)
    assert read_source(tmp_path, "small.sql", max_bytes=10) == Skipped(
        "small.sql", "larger than 10 bytes"
    )


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges on Windows")
def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _write(outside, "keys.env", fake_line("groq-api-key")[0] + "\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "linked.env").symlink_to(outside / "keys.env")
    report = scan_path(tree)
    assert report.findings == ()
    assert report.skipped == ()


def test_a_single_file_can_be_scanned(tmp_path: Path) -> None:
    line, key = fake_line("perplexity-api-key")
    _write(tmp_path, "compose.yaml", f"services:\n  app:\n    environment:\n{line}\n")
    report = scan_path(tmp_path / "compose.yaml")
    assert [(f.location.path, f.location.line, f.secret) for f in report.findings] == [
        ("compose.yaml", 4, key)
    ]
    assert report.root == tmp_path


def test_ci_files_and_dockerfiles_are_scanned(tmp_path: Path) -> None:
    key = fake_key("openai-service-account-key")
    _write(tmp_path, ".github/workflows/ci.yml", f"env:\n  OPENAI_API_KEY: {key}\n")
    _write(tmp_path, ".gitlab-ci.yml", f"variables:\n  OPENAI_API_KEY: '{key}'\n")
    _write(tmp_path, "Dockerfile", f"FROM python:3.11\nENV OPENAI_API_KEY={key}\n")
    report = scan_path(tmp_path)
    assert [(f.location.path, f.location.line) for f in report.findings] == [
        (".github/workflows/ci.yml", 2),
        (".gitlab-ci.yml", 2),
        ("Dockerfile", 2),
    ]
