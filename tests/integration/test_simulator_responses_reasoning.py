"""The simulator's encrypted reasoning on its Responses API, read by the real ``openai`` SDK:
what it sealed goes back in ``input``; what it did not (another provider's, a gateway's, one
altered) is OpenAI's 400 ``invalid_encrypted_content``; a reasoning item without encrypted
content whose id no stored response gave is OpenAI's 400 "Item with id ... not found"."""

from __future__ import annotations

from typing import Any

import openai
import pytest

REASON = "Reason: Encrypted content could not be decrypted or parsed."


async def first_turn(oai: openai.AsyncOpenAI) -> list[Any]:
    """A reasoning model's answer with its encrypted reasoning, as the input of the next."""
    first = await oai.responses.create(
        model="o4-mini", input="think first", include=["reasoning.encrypted_content"], store=False
    )
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert reasoning.encrypted_content.startswith("gAAAAA")  # the look of OpenAI's own
    return [{"role": "user", "content": "think first"}] + [
        item.model_dump(exclude_none=True) for item in first.output
    ]


async def test_its_own_encrypted_reasoning_goes_back(oai: openai.AsyncOpenAI) -> None:
    history = await first_turn(oai)
    history.append({"role": "user", "content": "and again"})
    second = await oai.responses.create(model="o4-mini", input=history, store=False)
    assert second.status == "completed"


@pytest.mark.parametrize(
    "foreign",
    ["tollway.reasoning:W10=", "tollway.gemini-signatures.v1:e30=", "gAAAAAnot-ours", "altered"],
)
async def test_encrypted_reasoning_it_did_not_seal_is_openais_400(
    oai: openai.AsyncOpenAI, foreign: str
) -> None:
    history = await first_turn(oai)
    reasoning = history[1]
    if foreign == "altered":
        foreign = reasoning["encrypted_content"][:-8] + "AAAAAAA="
    reasoning["encrypted_content"] = foreign
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.responses.create(model="o4-mini", input=history, store=False)
    error: Any = caught.value.body
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_encrypted_content" and error["param"] is None
    assert error["message"] == (
        f"The encrypted content for item {reasoning['id']} could not be verified. {REASON}"
    )


async def test_without_an_id_the_error_names_the_contents_ends(oai: openai.AsyncOpenAI) -> None:
    item = {"type": "reasoning", "summary": [], "encrypted_content": "tollway.reasoning:W10="}
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.responses.create(model="o4-mini", input=[item, {"role": "user", "content": "x"}])
    error: Any = caught.value.body
    assert error["message"] == f"The encrypted content toll...W10= could not be verified. {REASON}"


@pytest.mark.parametrize("store", [True, False])
async def test_reasoning_sent_back_by_id_alone_must_have_been_stored(
    oai: openai.AsyncOpenAI, store: bool
) -> None:
    first = await oai.responses.create(model="o4-mini", input="think first", store=store)
    reasoning = first.output[0].model_dump(exclude_none=True)
    assert reasoning["type"] == "reasoning" and "encrypted_content" not in reasoning
    history = [reasoning, {"role": "user", "content": "and again"}]
    if store:  # OpenAI kept the item: the id is enough
        assert (await oai.responses.create(model="o4-mini", input=history)).status == "completed"
        history[0] = {**reasoning, "id": "rs_tw0123abcd"}  # an id it never gave
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.responses.create(model="o4-mini", input=history, store=False)
    error: Any = caught.value.body
    assert error["type"] == "invalid_request_error"
    assert error["code"] is None and error["param"] == "input"
    assert error["message"] == (
        f"Item with id '{history[0]['id']}' not found. Items are not persisted when `store` is "
        "set to false. Try again with `store` set to true, or remove this item from your input."
    )
