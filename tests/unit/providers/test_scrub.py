"""Provider keys echoed in upstream error bodies are masked before a client reads them."""

from __future__ import annotations

from tollway.providers.masking import scrub


def test_a_real_key_is_masked_wherever_it_occurs() -> None:
    key = "sk-proj-abc123XYZ"
    body = f'{{"message": "Incorrect API key provided: {key}. Also {key}_suffix"}}'.encode()
    assert key.encode() not in scrub(body, key)
    assert scrub(body, key).count(b"***") == 2


def test_a_short_key_is_masked_only_where_it_stands_alone() -> None:
    # Local servers (vLLM, Ollama, LM Studio) take any key, so deployments often send "x".
    body = b'{"error": {"code": "rate_limit_exceeded", "param": "max_tokens", "key": "x"}}'
    assert scrub(body, "x") == (
        b'{"error": {"code": "rate_limit_exceeded", "param": "max_tokens", "key": "***"}}'
    )
    assert scrub(b"invalid key: none.", "none") == b"invalid key: ***."


def test_every_part_of_a_credential_is_masked_longest_first() -> None:
    token = "IQoJsessionTOKEN-AKIDEXAMPLE00001-tail"
    body = b"Credential=AKIDEXAMPLE00001/us-east-1; X-Amz-Security-Token: " + token.encode()
    masked = scrub(body, ("secret-key-0123456789", "AKIDEXAMPLE00001", token))
    assert masked == b"Credential=***/us-east-1; X-Amz-Security-Token: ***"


def test_a_key_is_masked_however_a_json_writer_escaped_it() -> None:
    # PHP writes '/' as '\/', .NET '+' as '\u002B': the client's parser reads the key back.
    key = "ABSKQmVkcm9ja0FQSUtleS1/dGVzdDo+c2VjcmV0=="
    for spelled in (
        key.replace("/", "\\/"),
        key.replace("+", "\\u002B"),
        key.replace("+", "\\u002b").replace("/", "\\u002F").replace("=", "\\u003d"),
    ):
        body = f'{{"message": "Incorrect API key provided: {spelled}."}}'.encode()
        assert scrub(body, key) == b'{"message": "Incorrect API key provided: ***."}', spelled


def test_a_key_of_plain_characters_is_never_looked_for_escaped() -> None:
    key = "sk-proj-abc123XYZ"
    body = b'{"message": "a \\"quoted\\" word, \\/ and sk-proj-abc123XYZ"}'
    assert scrub(body, key) == b'{"message": "a \\"quoted\\" word, \\/ and ***"}'
